"""Inference engine: one interface for generating chat answers, streamed token by token.

`LlamaCppEngine` runs a GGUF file in-process with llama-cpp-python. Everything else in Moss
talks to `Engine`, so a remote OpenAI-compatible backend (vLLM) or LoRA adapters can sit
behind the same interface later."""

import codecs
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

import llama_cpp

from moss.chat import ChatTemplate, Fitted, Message, fit, with_system


class EngineError(Exception):
    """A request the engine cannot serve; the message says why."""


@dataclass
class Sampling:
    temperature: float = 0.7  # 0 means greedy, and so deterministic
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.0
    repeat_penalty: float = 1.05
    max_tokens: int = 1024
    seed: int | None = None  # fixed seed: the same answer for the same prompt
    stop: list[str] = field(default_factory=list)

    def check(self) -> None:
        if self.temperature < 0 or self.temperature > 5:
            raise EngineError(f"temperature must be between 0 and 5, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise EngineError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise EngineError(f"top_k must be >= 0, got {self.top_k}")
        if self.max_tokens < 1:
            raise EngineError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.repeat_penalty <= 0:
            raise EngineError(f"repeat_penalty must be > 0, got {self.repeat_penalty}")


@dataclass
class Result:
    """What a finished generation reports: why it stopped, token counts and timings."""
    text: str = ""
    finish_reason: str = ""  # "stop" (end of turn or stop string), "length", "cancelled"
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV cache was reused from the previous request
    completion_tokens: int = 0
    dropped_messages: int = 0  # oldest messages left out to fit the context window
    time_to_first_token: float = 0.0
    total_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        decode = self.total_seconds - self.time_to_first_token
        return (self.completion_tokens - 1) / decode if self.completion_tokens > 1 and decode > 0 else 0.0


class Generation:
    """A streaming answer: iterate for text pieces; `result` is filled when it ends."""

    def __init__(self, pieces: Iterator[str], result: Result, cancel: threading.Event):
        self._pieces, self.result, self._cancel = pieces, result, cancel

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def cancel(self) -> None:
        """Stop after the current token; safe from another thread or a signal handler."""
        self._cancel.set()

    def text(self) -> str:
        """Run to the end and return the whole answer."""
        for _ in self._pieces:
            pass
        return self.result.text


class Engine(Protocol):
    model: str
    context_size: int

    def generate(self, messages: list[Message], sampling: Sampling | None = None,
                 system: str | None = None) -> Generation: ...

    def close(self) -> None: ...


class StopScanner:
    """Finds stop strings in streamed text, holding back only what could start one."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Text safe to emit now, and whether a stop string was reached."""
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[:min(hits)], ""
            return out, True
        hold = max((k for s in self.stops for k in range(1, len(s))
                    if self.pending.endswith(s[:k])), default=0)
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class LlamaCppEngine:
    """A GGUF model served in-process by llama.cpp, one generation at a time.

    The KV cache of the previous request stays loaded and the longest common token prefix is
    reused, so the next turn of a chat only prefills the new messages."""

    def __init__(self, model_path: str | Path, model: str | None = None, context_size: int = 4096,
                 threads: int | None = None, batch_size: int = 512):
        self.model = model or Path(model_path).stem
        self.path = Path(model_path)
        threads = threads or os.cpu_count() or 1
        try:
            self._llm = llama_cpp.Llama(
                str(model_path), n_ctx=context_size, n_threads=threads, n_threads_batch=threads,
                n_batch=batch_size, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"cannot load model {model_path}: {exc}") from None
        self.context_size = self._llm.n_ctx()
        meta = self._llm.metadata
        vocab = self._llm._model.vocab
        self._vocab = vocab
        self._bos, eos = self._llm.token_bos(), self._llm.token_eos()
        self._add_bos = self._bos >= 0 and llama_cpp.llama_vocab_get_add_bos(vocab)
        piece = lambda t: self._llm._model.token_get_text(t) if t >= 0 else ""  # noqa: E731
        self.template = ChatTemplate(meta.get("tokenizer.chat_template"), piece(self._bos), piece(eos))
        self._lock = threading.Lock()

    # ---- tokens ----

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a rendered prompt, with BOS where the model wants one, but never twice
        (some templates write it themselves)."""
        tokens = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if self._add_bos and tokens[:1] != [self._bos]:
            tokens.insert(0, self._bos)
        return tokens

    def encode(self, messages: list[Message]) -> list[int]:
        return self.tokenize(self.template.render(messages))

    def _shorten(self, text: str, n: int) -> str:
        tokens = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return self._llm.detokenize(tokens[n:]).decode("utf-8", errors="ignore")

    def fit(self, messages: list[Message], max_tokens: int) -> Fitted:
        """The messages that fit the context with room for the answer (at least half the window)."""
        budget = self.context_size - min(max_tokens, self.context_size // 2)
        fitted = fit(messages, budget, self.encode, self._shorten)
        if len(fitted.tokens) > budget:
            raise EngineError(f"the system prompt alone does not fit the context window of "
                              f"{self.context_size} tokens; shorten it or raise the context size")
        return fitted

    # ---- generation ----

    def generate(self, messages: list[Message], sampling: Sampling | None = None,
                 system: str | None = None) -> Generation:
        sampling = sampling or Sampling()
        sampling.check()
        if not messages or any(m.get("role") not in ("system", "user", "assistant")
                               or not isinstance(m.get("content"), str) for m in messages):
            raise EngineError("messages must be a non-empty list of {role, content} with role "
                              "system, user or assistant")
        fitted = self.fit(with_system(messages, system), sampling.max_tokens)
        result = Result(prompt_tokens=len(fitted.tokens), dropped_messages=fitted.dropped)
        cancel = threading.Event()
        return Generation(self._stream(fitted.tokens, sampling, result, cancel), result, cancel)

    def _stream(self, prompt: list[int], s: Sampling, result: Result,
                cancel: threading.Event) -> Iterator[str]:
        with self._lock:
            llm, start = self._llm, time.perf_counter()
            llm.set_seed(s.seed if s.seed is not None else random.getrandbits(31))
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            stops = StopScanner(s.stop)
            pieces: list[str] = []
            room = self.context_size - len(prompt)
            tokens = self._sample(prompt, s, result)
            try:
                for token in tokens:
                    if result.completion_tokens == 0:
                        result.time_to_first_token = time.perf_counter() - start
                    result.completion_tokens += 1
                    if self._ends_turn(token):
                        result.finish_reason = "stop"
                        break
                    text, stopped = stops.feed(decoder.decode(llm.detokenize([token])))
                    if text:
                        pieces.append(text)
                        yield text
                    if stopped:
                        result.finish_reason = "stop"
                        break
                    if result.completion_tokens >= min(s.max_tokens, room):
                        result.finish_reason = "length"
                        break
                    if cancel.is_set():
                        result.finish_reason = "cancelled"
                        break
                tail = stops.flush() + decoder.decode(b"", final=True)  # held-back text, if any
                if tail:
                    pieces.append(tail)
                    yield tail
            finally:
                tokens.close()
                result.text = "".join(pieces)
                result.total_seconds = time.perf_counter() - start

    def _sample(self, prompt: list[int], s: Sampling, result: Result) -> Iterator[int]:
        """Prefill what the KV cache lacks, then sample token after token.

        The last prompt token is always decoded on its own: its logits then come from the same
        kernels whether the rest was cached or not, so temperature 0 gives the same answer on
        a cold and a warm cache (batched and single-token matmuls round differently)."""
        llm = self._llm
        reuse = min(_common_prefix(llm.input_ids[:llm.n_tokens].tolist(), prompt), len(prompt) - 1)
        result.cached_tokens = reuse
        llm.n_tokens = reuse  # eval() drops the cache beyond n_tokens before decoding
        if len(prompt) - 1 > reuse:
            llm.eval(prompt[reuse:-1])
        llm.eval(prompt[-1:])
        sampler = llm._init_sampler(temp=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                    min_p=s.min_p, repeat_penalty=s.repeat_penalty)
        while True:
            token = sampler.sample(llm._ctx, -1)
            yield token
            llm.eval([token])

    def _ends_turn(self, token: int) -> bool:
        # Control tokens such as <|im_start|> also end the turn: text after one is template debris.
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token)
                    or llama_cpp.llama_vocab_is_control(self._vocab, token))

    def clear_cache(self) -> None:
        """Forget the cached prompt, so the next request prefills from scratch."""
        with self._lock:
            self._llm.n_tokens = 0

    def close(self) -> None:
        with self._lock:
            self._llm.close()

    def __enter__(self) -> "LlamaCppEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def load(model: str | None = None, context_size: int = 4096, threads: int | None = None) -> LlamaCppEngine:
    """An engine for a model reference (registry name, alias, .gguf path or hf:...)."""
    from moss import models
    path = models.resolve(model)
    return LlamaCppEngine(path, model=models.display_name(model, path),
                          context_size=context_size, threads=threads)
