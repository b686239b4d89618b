"""Continuous batching on llama.cpp: many sequences decoded together, joining and leaving between steps.

One thread owns the llama.cpp context. Each step it makes one `llama_decode` call holding the
next token of every answering sequence plus a chunk of any prompt still being read, samples
each sequence that produced logits, and streams the text out. Decoding reads the weights once
per step for all sequences, so aggregate throughput rises with the number of streams.

Each sequence lives in a slot (a llama.cpp sequence id with its own KV cache). A finished slot
keeps its cache: a new request goes to the free slot sharing the longest token prefix with it,
so the next turn of a conversation only prefills the new messages."""

import codecs
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import llama_cpp
from llama_cpp._internals import LlamaBatch, LlamaContext, LlamaModel, LlamaSampler

from moss.inference.engine import EngineBusy, EngineError, Generation, Sampling, StopScanner, wake_all
from moss.inference.grammars import grammar_sampler


@dataclass
class Job:
    """One request: its prompt, how to sample, and where its text goes."""
    prompt: list[int]
    sampling: Sampling
    user: str  # waiting requests are taken round-robin across these
    generation: Generation
    pending: list[int] = field(default_factory=list)  # prompt tokens not decoded yet
    next_token: int | None = None  # sampled, to be decoded in the next step
    sampler: LlamaSampler | None = None
    decoder: codecs.IncrementalDecoder | None = None
    stops: StopScanner | None = None
    pieces: list[str] = field(default_factory=list)
    start: float = 0.0
    owner: str = ""  # the account whose share of slots and queue places this request uses


@dataclass
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # what this sequence's KV cache holds
    job: Job | None = None
    last_used: float = 0.0


class Scheduler:
    def __init__(self, model: LlamaModel, ctx: LlamaContext, slots: int, slot_context: int,
                 batch_size: int, max_queue: int, ends_turn: Callable[[int], bool],
                 user_share: float = 1.0):
        self.model, self.ctx = model, ctx
        self.slots = [Slot(i) for i in range(slots)]
        self.slot_context, self.batch_size, self.max_queue = slot_context, batch_size, max_queue
        self.ends_turn = ends_turn
        # One account holds at most this many slots plus queue places, so it cannot lock others out.
        self.per_owner = max(1, int(user_share * (slots + max_queue))) if user_share < 1 else None
        self._batch = LlamaBatch(n_tokens=batch_size, embd=0, n_seq_max=1, verbose=False)
        self._waiting: dict[str, deque[Job]] = {}  # per user, served round-robin
        self._turns: deque[str] = deque()
        self._calls: deque[tuple[Callable[[], None], threading.Event]] = deque()
        self._idle_calls: deque[tuple[Callable[[], None], threading.Event]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="moss-decoder", daemon=True)
        self._thread.start()

    # ---- called from any thread ----

    @property
    def queued(self) -> int:
        with self._cond:
            return self._queued_now()

    def _queued_now(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    @property
    def active(self) -> int:
        return sum(1 for s in self.slots if s.job is not None)

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise EngineError("the engine is shut down")
            if self._queued_now() >= self.max_queue or self._over_share(job.owner):
                self._drop_cancelled()  # requests whose clients left do not hold places
            if self._queued_now() >= self.max_queue:
                raise EngineBusy(f"the server is busy ({self.max_queue} requests waiting); retry shortly")
            if self._over_share(job.owner):
                raise EngineBusy(f"you have {self.per_owner} answers running or waiting, your share "
                                 f"of this server; retry when one has finished")
            if job.user not in self._waiting or not self._waiting[job.user]:
                self._waiting.setdefault(job.user, deque())
                self._turns.append(job.user)
            self._waiting[job.user].append(job)
            self._cond.notify()

    def _over_share(self, owner: str) -> bool:
        """Whether an account already holds its share of slots plus queue places (lock held)."""
        if self.per_owner is None:
            return False
        running = sum(1 for s in self.slots if s.job is not None and s.job.owner == owner)
        return running + sum(1 for q in self._waiting.values() for j in q if j.owner == owner) >= self.per_owner

    def _drop_cancelled(self) -> None:
        for queue in self._waiting.values():
            for job in [j for j in queue if j.generation.cancelled]:
                queue.remove(job)
                job.generation.result.finish_reason = "cancelled"
                job.generation._emit_end()

    def call(self, fn: Callable[[], None], when_idle: bool = False) -> None:
        """Run fn on the decoder thread between steps, and wait for it. With when_idle, first let
        the running answers finish (admitting no new ones): for changes such as swapping the
        model's adapter, which must not happen in the middle of an answer."""
        done, failure = threading.Event(), []

        def guarded() -> None:
            try:
                fn()
            except Exception as exc:  # raised in the caller's thread, not the decoder's
                failure.append(exc)
        with self._cond:
            (self._idle_calls if when_idle else self._calls).append((guarded, done))
            self._cond.notify()
        done.wait()
        if failure:
            raise failure[0]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        self._batch.close()

    # ---- the decoder thread ----

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._closed or self._calls or self._idle_calls or self._turns or self.active):
                    self._cond.wait()
                if self._closed:
                    break
                calls, self._calls = list(self._calls), deque()
                if self._idle_calls and not self.active:
                    calls += self._idle_calls
                    self._idle_calls = deque()
                try:
                    if not self._idle_calls:
                        self._admit()
                except Exception as exc:  # a request that cannot start fails alone
                    for slot in self.slots:
                        if slot.job and slot.job.sampler is None:
                            self._finish(slot, "error", EngineError(f"cannot start: {exc}"))
            for fn, done in calls:
                try:
                    fn()
                finally:
                    done.set()
            if self.active:
                try:
                    self._step()
                except Exception as exc:  # a failed decode ends the jobs in it, not the server
                    for slot in self.slots:
                        if slot.job:
                            self._finish(slot, "error", EngineError(f"decoding failed: {exc}"))
                            self.ctx.kv_cache_seq_rm(slot.seq_id, 0, -1)
                            slot.tokens = []
        for slot in self.slots:
            if slot.job:
                self._finish(slot, "cancelled")
        with self._cond:
            for queue in self._waiting.values():
                for job in queue:
                    job.generation._emit_end(EngineError("the engine is shut down"))
            for _, done in [*self._calls, *self._idle_calls]:
                done.set()

    def _next_waiting(self) -> Job | None:
        while self._turns:
            user = self._turns.popleft()
            queue = self._waiting.get(user)
            if queue:
                job = queue.popleft()
                if queue:
                    self._turns.append(user)  # back of the line: fair across users
                return job
        return None

    def _admit(self) -> None:
        while any(s.job is None for s in self.slots):
            job = self._next_waiting()
            if job is None:
                return
            if job.generation.cancelled:
                job.generation.result.finish_reason = "cancelled"
                job.generation._emit_end()
                continue
            # Longest shared prefix, then least recently used, then lowest id (unique: no tie left).
            shared, *_, slot = max((_common_prefix(s.tokens, job.prompt), -s.last_used, -s.seq_id, s)
                                   for s in self.slots if s.job is None)
            slot.job = job
            reuse = min(shared, len(job.prompt) - 1)
            self.ctx.kv_cache_seq_rm(slot.seq_id, reuse, -1)
            slot.tokens = slot.tokens[:reuse]
            job.pending = job.prompt[reuse:]
            job.generation.result.cached_tokens = reuse
            job.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            job.stops = StopScanner(job.sampling.stop)
            job.sampler = _sampler(job.sampling, self.model)  # last: marks it started

    def _step(self) -> None:
        """One llama_decode over every active sequence, then sample those that produced logits."""
        entries: list[tuple[Slot, list[int], bool]] = []
        for slot in self.slots:
            job = slot.job
            if job is None:
                continue
            if job.generation.cancelled:
                self._finish(slot, "cancelled")
            elif job.next_token is not None:
                entries.append((slot, [job.next_token], True))
                job.next_token = None
        budget = self.batch_size - len(entries)  # prompt chunks fill the rest of the batch
        for slot in self.slots:
            job = slot.job
            if job is None or not job.pending or budget <= 0:
                continue
            # The last prompt token is decoded in a step of its own, apart from the rest of the
            # prompt, so a prompt gives the same logits whether its prefix was cached or not.
            if len(job.pending) > 1:
                chunk = job.pending[:min(budget, len(job.pending) - 1)]
            else:
                chunk = job.pending[:]
            job.pending = job.pending[len(chunk):]
            budget -= len(chunk)
            entries.append((slot, chunk, not job.pending))
        if not entries:
            return
        outputs = self._decode(entries)
        now = time.perf_counter()
        streaming = []
        for slot, index in outputs:
            job = slot.job
            token = job.sampler.sample(self.ctx, index)
            result = job.generation.result
            if result.completion_tokens == 0:
                result.time_to_first_token = now - job.start
            result.completion_tokens += 1
            streaming.append(job.generation)
            self._accept(slot, token)
        wake_all(streaming)

    def _decode(self, entries: list[tuple[Slot, list[int], bool]]) -> list[tuple[Slot, int]]:
        batch, n = self._batch.batch, 0
        outputs = []
        for slot, tokens, wants_logits in entries:
            for i, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = len(slot.tokens) + i
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = slot.seq_id
                batch.logits[n] = wants_logits and i == len(tokens) - 1
                n += 1
            if wants_logits:
                outputs.append((slot, n - 1))
        batch.n_tokens = n
        code = llama_cpp.llama_decode(self.ctx.ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")
        for slot, tokens, _ in entries:
            slot.tokens.extend(tokens)
        return outputs

    def _accept(self, slot: Slot, token: int) -> None:
        job = slot.job
        if self.ends_turn(token):
            return self._finish(slot, "stop")
        text, stopped = job.stops.feed(job.decoder.decode(self.model.detokenize([token], job.sampling.special)))
        if text:
            job.pieces.append(text)
            job.generation._emit(text, wake=False)  # _step wakes all consumers at once
        if stopped:
            return self._finish(slot, "stop")
        done = job.generation.result.completion_tokens
        if done >= job.sampling.max_tokens or len(slot.tokens) + 1 >= self.slot_context:
            return self._finish(slot, "length")
        job.next_token = token

    def _finish(self, slot: Slot, reason: str, error: Exception | None = None) -> None:
        job, slot.job, slot.last_used = slot.job, None, time.monotonic()
        if error is None and job.stops is not None:
            tail = job.stops.flush() + job.decoder.decode(b"", final=True)
            if tail:
                job.pieces.append(tail)
                job.generation._emit(tail)
        if job.pending:  # stopped while reading its prompt: drop the partial cache
            self.ctx.kv_cache_seq_rm(slot.seq_id, 0, -1)
            slot.tokens = []
        result = job.generation.result
        result.finish_reason = reason
        result.text = "".join(job.pieces)
        result.total_seconds = time.perf_counter() - job.start
        if job.sampler is not None:
            job.sampler.close()
        job.generation._emit_end(error)

    def clear_cache(self) -> None:
        """Forget every idle slot's cached prompt (runs on the decoder thread)."""
        for slot in self.slots:
            if slot.job is None:
                self.ctx.kv_cache_seq_rm(slot.seq_id, 0, -1)
                slot.tokens = []


def _sampler(s: Sampling, model: LlamaModel) -> LlamaSampler:
    """The same sampler chain llama-cpp-python's Llama builds, with this request's settings
    (a grammar first, as there: only tokens it allows are sampled from)."""
    sampler = LlamaSampler()
    sampler.add_penalties(model.n_vocab(), 64, s.repeat_penalty, 0.0, 0.0)
    if s.grammar:
        grammar = grammar_sampler(model.vocab, s.grammar, s.grammar_triggers)
        llama_cpp.llama_sampler_chain_add(sampler.sampler, grammar)
    if s.temperature == 0:
        sampler.add_greedy()
        return sampler
    sampler.add_top_k(s.top_k)
    sampler.add_typical(1.0, 1)
    sampler.add_top_p(s.top_p, 1)
    sampler.add_min_p(s.min_p, 1)
    sampler.add_temp(s.temperature)
    sampler.add_dist(s.seed)
    return sampler


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
