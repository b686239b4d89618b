"""The inference engine interface: generate a chat answer, streamed piece by piece.

Everything in Moss talks to `Engine`, and engines are built in one place
(`moss.inference.loading`). `llama.LlamaCppEngine` runs a GGUF file in-process with continuous
batching and LoRA adapters; `remote.RemoteEngine` forwards to any OpenAI-compatible server."""

import asyncio
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Iterator, Protocol

from moss.inference.prompts import Message


class EngineError(Exception):
    """A request the engine cannot serve; the message says why."""


class EngineBusy(EngineError):
    """The waiting queue is full: retry later."""


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
    grammar: str | None = None  # GBNF the answer must match (grammars.py: JSON, a JSON schema, tool calls)
    # With triggers, the grammar holds only once one of these regular expressions matches all the text
    # so far, from its first group on (a tool call's start): the model may also answer in words.
    grammar_triggers: tuple[str, ...] = ()
    special: bool = False  # write special tokens into the text: Qwen's <tool_call> tags are such tokens

    def check(self) -> None:
        if not 0 <= self.temperature <= 5:
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
    finish_reason: str = ""  # "stop" (end of turn or stop string), "length", "cancelled", "error"
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV cache was reused from an earlier request
    completion_tokens: int = 0
    dropped_messages: int = 0  # oldest messages left out to fit the context window
    prompt: list[Message] = field(default_factory=list)  # exactly what the model was given
    seed: int | None = None  # the sampling seed used, so the answer can be reproduced
    model_version: str = ""  # which model version answered (base or base + adapter)
    time_to_first_token: float = 0.0  # from submission, so it includes waiting in the queue
    total_seconds: float = 0.0
    message_id: str = ""  # where a Moss server stored this answer (remote engines only)
    memories: list[int] = field(default_factory=list)  # the ids of the memories in its prompt (learning/memory.py)
    tool_runs: list[dict] = field(default_factory=list)  # calls a tool turn ran (tools/turn.py): name, arguments, result, ok

    @property
    def tokens_per_second(self) -> float:
        decode = self.total_seconds - self.time_to_first_token
        return (self.completion_tokens - 1) / decode if self.completion_tokens > 1 and decode > 0 else 0.0


_END = object()


class Generation:
    """A streaming answer. Iterate it (or `async for` it) for text pieces; `result` is complete
    once iteration ends. Leaving the loop early cancels the generation."""

    def __init__(self, result: Result):
        self.result = result
        self._cancel = threading.Event()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._done = threading.Event()
        self._waker: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    # the producer side (the engine's thread)
    def _emit(self, piece: str, wake: bool = True) -> None:
        """Queue a piece; with wake=False the producer calls wake_all for a batch of them."""
        self._queue.put(piece)
        if wake:
            self._wake()

    def _emit_end(self, error: Exception | None = None) -> None:
        self._queue.put(error if error is not None else _END)
        self._done.set()
        self._wake()

    def _wake(self) -> None:
        if self._waker is not None:
            loop, event = self._waker
            loop.call_soon_threadsafe(event.set)

    # the consumer side
    def cancel(self) -> None:
        """Stop after the current step; safe from any thread or a signal handler."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the generation has ended (without reading its pieces)."""
        return self._done.wait(timeout)

    def __iter__(self) -> Iterator[str]:
        try:
            while (piece := self._take(self._queue.get())) is not None:
                yield piece
        finally:
            self._leave()

    async def __aiter__(self) -> AsyncIterator[str]:
        event = asyncio.Event()
        self._waker = (asyncio.get_running_loop(), event)
        try:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    event.clear()
                    if self._queue.empty():
                        await event.wait()
                    continue
                if (piece := self._take(item)) is None:
                    return
                yield piece
        finally:
            self._leave()

    @staticmethod
    def _take(item) -> str | None:
        """A queued item as text; None at the end; an engine error is raised here."""
        if isinstance(item, Exception):
            raise item
        return None if item is _END else item

    def _leave(self) -> None:
        if not self.done:  # the consumer stopped reading: stop generating too
            self.cancel()

    def text(self) -> str:
        """Run to the end and return the whole answer."""
        for _ in self:
            pass
        return self.result.text


def wake_all(generations: list[Generation]) -> None:
    """Wake the async consumers of several generations with one call per event loop: one
    cross-thread wake-up per decoding step instead of one per sequence."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Event]] = {}
    for g in generations:
        if g._waker is not None:
            by_loop.setdefault(g._waker[0], []).append(g._waker[1])
    for loop, events in by_loop.items():
        loop.call_soon_threadsafe(lambda events=events: [e.set() for e in events])


@dataclass
class Activity:
    """What an engine is doing now: answers decoding, and requests waiting for a slot."""
    active: int = 0
    queued: int = 0


class Engine(Protocol):
    model: str  # the base model's name
    path: Path | None  # its file, for an engine that runs one here (None: a remote engine)
    context_size: int  # tokens each answer may use, prompt included
    parallel: int  # answers decoded together
    adapters: bool  # whether it can serve a LoRA adapter (set_adapter)

    @property
    def version(self) -> str:
        """The model version answering now: the base model, or base + adapter."""
        ...

    def generate(self, messages: list[Message], sampling: Sampling | None = None,
                 system: str | None = None, user: str = "", owner: str = "") -> Generation:
        """Start an answer; raises EngineError for a bad request, EngineBusy when full or when
        `owner` (the account; default `user`) holds its share. Waiting requests are served
        round-robin across `user` keys."""
        ...

    def set_adapter(self, path: Path | None, version: str | None = None) -> None:
        """Serve with a LoRA adapter (None: the base model) from the next answer on, as `version`;
        EngineError where `adapters` is false."""
        ...

    def encode(self, messages: list[Message]) -> list[int]:
        """The tokens of a rendered prompt (counting; training data tokenized as served)."""
        ...

    def answer_tokens(self, text: str) -> list[int]:
        """An assistant answer's tokens as the model generates them, end of turn included."""
        ...

    def activity(self) -> Activity: ...

    def clear_cache(self) -> None:
        """Forget cached prompts (a benchmark's cold start)."""
        ...

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
