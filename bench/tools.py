"""Benchmark of Moss's own tools (issue 22): the default model with the calculator and the equation
solver, side by side with the same model without them, in one run. One comparison per line.

1. The math suite (reasoning-gym: gsm_symbolic and basic_arithmetic in English, basic_arithmetic
   in Chinese), tools off vs on (--tools, default all three), per language.
2. Call validity on those items: calls that parse, name a tool, and run without error.
3. Plain chat that needs no tool (the knowledge suite's questions and everyday messages, English
   and Chinese): the share of answers that called a tool anyway.
4. Speed, one client: time to first token and tokens/s with the tools declared vs not (the same
   prompts, alternating), and the end-to-end time of a calculator turn.

    python bench/tools.py [--model default] [--n 10] [--tools calculator,solver,python]"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))
from moss.evals.evaluate import score  # noqa: E402
from moss.evals.suites import SUITES  # noqa: E402
from moss.inference import toolcalls  # noqa: E402
from moss.inference.engine import Sampling  # noqa: E402
from moss.inference.loading import open_engine  # noqa: E402
from moss.progress import parallel_map  # noqa: E402
from moss.tools.builtin import pick  # noqa: E402
from moss.tools.turn import ToolEngine  # noqa: E402

CHAT = ["Hello! How are you today?", "Tell me a fun fact about octopuses.", "What should I name my new cat?",
        "Write a haiku about autumn rain.", "Who wrote Romeo and Juliet?", "What is the capital of Japan?",
        "你好！今天过得怎么样？", "给我讲一个关于熊猫的有趣事实。", "推荐一本适合周末读的书。", "写一句关于春天的诗。",
        "《红楼梦》的作者是谁？", "中国的首都是哪里？"]


def answers(engine, items, workers: int) -> list[tuple[str, list]]:
    def one(item):
        generation = engine.generate([{"role": "user", "content": item.prompt}],
                                     Sampling(temperature=0, max_tokens=item.max_tokens))
        return generation.text(), getattr(generation, "runs", [])
    return parallel_map(one, items, "answering", "items", workers)


def math(engine, tooled, n: int, workers: int) -> list:
    import random
    items = [i for i in SUITES["math"].build(False, random.Random("2026-math"))]
    items = [i for lang in ("en", "zh") for i in [x for x in items if x.lang == lang][:n * (2 if lang == "en" else 1)]]
    plain, with_tools = answers(engine, items, workers), answers(tooled, items, workers)
    for lang, name in (("en", "English"), ("zh", "Chinese")):
        rows = [(i, a, b) for i, a, b in zip(items, plain, with_tools) if i.lang == lang]
        off = sum(score(i, a[0]) for i, a, _ in rows) / len(rows)
        on = sum(score(i, b[0]) for i, _, b in rows) / len(rows)
        print(f"math suite [{lang}] (n={len(rows)}): tools off {off:.0%} vs tools on {on:.0%}", flush=True)
    runs = [r for _, (_, rs) in zip(items, with_tools) for r in rs]
    valid = sum(r.ok for r in runs)
    used = sum(bool(rs) for _, rs in with_tools)
    print(f"tool calls on math items: {used}/{len(items)} items called a tool; {valid}/{len(runs)} calls valid "
          f"({valid / max(len(runs), 1):.0%}: parsed, named a tool, ran without error)", flush=True)
    for r in [r for r in runs if not r.ok][:3]:
        print(f"  invalid: {r.call.name}({r.call.arguments}) -> {r.result}", flush=True)
    return runs


def plain_chat(tooled, workers: int) -> None:
    import random
    items = [i for i in SUITES["knowledge"].build(False, random.Random("2026-knowledge"))][:24]
    prompts = [i.prompt for i in items] + CHAT
    got = parallel_map(lambda p: tooled.generate([{"role": "user", "content": p}],
                                                 Sampling(temperature=0, max_tokens=96)), prompts, "chatting",
                       "prompts", workers)
    for g in got:
        g.text()
    called = [p for p, g in zip(prompts, got) if g.runs]
    print(f"tool calls on plain chat: {len(called)}/{len(prompts)} ({len(called) / len(prompts):.0%}) answers "
          f"called a tool", flush=True)
    for p in called[:3]:
        print(f"  called on: {p[:70]!r}", flush=True)


def speed(engine, tools: list[str], rounds: int = 3) -> None:
    functions = [t.function for t in pick(tools)]
    rules, triggers = toolcalls.grammar(functions, toolcalls.Choice("auto"))
    declared = Sampling(temperature=0, max_tokens=64, grammar=rules, grammar_triggers=triggers, special=True)
    ttft, tps = {"off": [], "on": []}, {"off": [], "on": []}
    for _ in range(rounds):
        for prompt in CHAT[:6]:
            asked = [{"role": "user", "content": prompt}]
            for side in ("off", "on"):
                messages = toolcalls.prompt(asked, functions) if side == "on" else asked
                g = engine.generate(messages, declared if side == "on" else Sampling(temperature=0, max_tokens=64))
                g.text()
                ttft[side].append(g.result.time_to_first_token)
                tps[side].append(g.result.tokens_per_second)
    med = {k: statistics.median(v) for k, v in ttft.items()}
    print(f"time to first token, one client: tools off {med['off'] * 1000:.0f} ms vs tools declared "
          f"{med['on'] * 1000:.0f} ms (median, x{med['on'] / med['off']:.2f})", flush=True)
    rate = {k: statistics.median(v) for k, v in tps.items()}
    print(f"tokens/s, one client: tools off {rate['off']:.1f} vs tools declared {rate['on']:.1f} "
          f"(median, x{rate['on'] / rate['off']:.2f})", flush=True)
    tooled, took = ToolEngine(engine, pick(["calculator"])), []
    for a, b in ((1234, 5678), (987, 654), (4321, 8765)):
        start = time.perf_counter()
        g = tooled.generate([{"role": "user", "content": f"What is {a} * {b}?"}], Sampling(temperature=0, max_tokens=96))
        text = g.text()
        took.append((time.perf_counter() - start, str(a * b) in text.replace(",", ""), len(g.runs)))
    print(f"calculator turn end to end: median {statistics.median(t for t, _, _ in took):.1f} s, "
          f"right {sum(r for _, r, _ in took)}/{len(took)}, calls {[c for _, _, c in took]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--n", type=int, default=10, help="items per dataset and language")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--tools", default="calculator,solver,python", help="the tools that are on")
    args = parser.parse_args()
    engine = open_engine(args.model, parallel=args.parallel, max_queue=1000)
    tooled = ToolEngine(engine, pick(args.tools.split(",")))
    print(f"tools on: {args.tools}", flush=True)
    try:
        math(engine, tooled, args.n, args.parallel)
        plain_chat(tooled, args.parallel)
        speed(engine, args.tools.split(","))
    finally:
        engine.close()


if __name__ == "__main__":
    main()
