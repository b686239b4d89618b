"""Engine benchmark: Moss's engine vs raw llama_cpp.Llama, and the KV-cache gain on a second turn.

Prints one comparison per line. Both sides use the same GGUF, prompt, threads and greedy
sampling, measured alternately in one run; figures are medians.
    python bench/engine.py [--model default] [--reps 3] [--tokens 128]"""

import argparse
import os
import statistics
import time

import llama_cpp

from moss.inference.engine import Sampling
from moss.inference.llama import LlamaCppEngine
from moss.inference.models import display_name, resolve
from moss.inference.prompts import with_system

ESSAY = [{"role": "user", "content": "Write a detailed essay about the history of the printing press."}]


def raw_run(llm: llama_cpp.Llama, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    """TTFT, decode tokens/s and token count for llama-cpp-python's own streaming completion."""
    llm.reset()
    start, first, count = time.perf_counter(), 0.0, 0
    for _ in llm.create_completion(prompt, max_tokens=max_tokens, temperature=0, stream=True):
        count += 1
        if count == 1:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return first, (count - 1) / (total - first), count


def moss_run(engine: LlamaCppEngine, max_tokens: int) -> tuple[float, float, int]:
    engine.clear_cache()
    # repeat_penalty 1.0 matches create_completion's default: the same sampler chain on both sides.
    generation = engine.generate(ESSAY, Sampling(temperature=0, max_tokens=max_tokens, repeat_penalty=1.0))
    generation.text()
    r = generation.result
    return r.time_to_first_token, r.tokens_per_second, r.completion_tokens


def history(engine: LlamaCppEngine, target: int) -> list[dict]:
    """A chat history of about `target` tokens, alternating questions and answers."""
    topics = ["rivers", "mountains", "deserts", "forests", "oceans", "cities", "islands", "glaciers"]
    messages, i = [], 0
    while len(engine.encode(messages + [{"role": "user", "content": "x"}])) < target:
        topic = topics[i % len(topics)]
        messages += [{"role": "user", "content": f"Tell me about {topic}, part {i}."},
                     {"role": "assistant", "content": (f"{topic.capitalize()} are fascinating. "
                                                       "They shape climate, culture and trade. ") * 6}]
        i += 1
    return messages + [{"role": "user", "content": "Which of these would you visit first?"}]


def second_turn(engine: LlamaCppEngine, reps: int) -> None:
    greedy = Sampling(temperature=0, max_tokens=48)
    chat = history(engine, 1500)
    warm, cold = [], []
    for _ in range(reps):
        engine.clear_cache()
        answer = engine.generate(chat, greedy).text()  # turn one: its prompt lands in the cache
        turn2 = chat + [{"role": "assistant", "content": answer},
                        {"role": "user", "content": "Why that one?"}]
        g = engine.generate(turn2, greedy)
        g.text()
        warm.append(g.result.time_to_first_token)
        engine.clear_cache()
        g = engine.generate(turn2, greedy)
        g.text()
        cold.append(g.result.time_to_first_token)
    w, c = statistics.median(warm), statistics.median(cold)
    print(f"second-turn time to first token on a {g.result.prompt_tokens}-token chat: "
          f"cached {w * 1000:.0f} ms vs cold prefill {c * 1000:.0f} ms -> {100 * w / c:.1f}% "
          f"(target <= 25%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    path = resolve(args.model)
    engine = LlamaCppEngine(path, display_name(args.model, path), context_size=4096, threads=args.threads)
    raw = llama_cpp.Llama(str(path), n_ctx=4096, n_threads=args.threads, n_threads_batch=args.threads,
                          n_batch=512, verbose=False)
    prompt = engine.template.render(with_system(ESSAY))
    ours, theirs = [], []
    for _ in range(args.reps):  # alternate, so drift in machine load hits both sides alike
        theirs.append(raw_run(raw, prompt, args.tokens))
        ours.append(moss_run(engine, args.tokens))
    med = lambda runs, k: statistics.median(r[k] for r in runs)  # noqa: E731
    print(f"model {display_name(args.model, path)}, {args.threads} threads, {args.reps} runs each, "
          f"{med(ours, 2):.0f} vs {med(theirs, 2):.0f} tokens generated")
    print(f"decode tokens/s: moss {med(ours, 1):.1f} vs llama_cpp.Llama {med(theirs, 1):.1f} "
          f"-> ratio {med(ours, 1) / med(theirs, 1):.3f} (target >= 0.97)")
    print(f"time to first token, cold: moss {med(ours, 0) * 1000:.0f} ms vs llama_cpp.Llama "
          f"{med(theirs, 0) * 1000:.0f} ms -> ratio {med(ours, 0) / med(theirs, 0):.3f} (lower is better)")
    second_turn(engine, args.reps)


if __name__ == "__main__":
    main()
