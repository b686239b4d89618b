"""One chat completion from request to store: starting its answers, streaming them as OpenAI's
chunks or collecting them, cancelling them when the client leaves, and recording the exchange
(also what a stopped stream had written)."""

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from moss.inference import toolcalls
from moss.inference.engine import Engine, EngineBusy, EngineError, Generation, Sampling
from moss.inference.prompts import extend_system
from moss.learning.memory import Recalled, with_memories
from moss.server.api_types import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    FunctionCallDelta,
    MemoryUsed,
    MossInfo,
    PromptTokensDetails,
    ToolCall,
    ToolCallDelta,
    ToolRun,
    Usage,
)
from moss.server.errors import ApiError, error_body
from moss.server.metrics import Metrics
from moss.server.structured import Structure
from moss.store import Answer, Store


@dataclass
class Exchange:
    """A request's messages and sampling, who asked, the memories its answers use, and where its
    answers and records go."""
    store: Store
    metrics: Metrics
    model: str
    user_id: int
    body: ChatRequest
    messages: list[dict]
    sampling: Sampling
    form: Structure = field(default_factory=Structure)  # a JSON answer or tool calls (structured.py)
    memories: list[Recalled] = field(default_factory=list)
    generations: list[Generation] = field(default_factory=list)
    id: str = field(default_factory=lambda: "chatcmpl-" + uuid.uuid4().hex)
    started_at: float = field(default_factory=time.perf_counter)

    def start(self, engine: Engine, user: str, owner: str) -> None:
        """Submit body.n answers (seeds differ, so samples do; each holds a place of its own in
        the owner's share); cancel them all if any is refused. Runs in a thread: rendering and
        tokenizing a long history takes milliseconds."""
        # What the model sees is stored as the answers' prompt, not as messages of the conversation.
        prompt = with_memories(toolcalls.prompt(self.messages, self.form.functions), self.memories)
        prompt = extend_system(prompt, self.form.instruction) if self.form.instruction else prompt
        try:
            for i in range(self.body.n):
                seed = None if self.sampling.seed is None else self.sampling.seed + i
                self.generations.append(engine.generate(
                    prompt, Sampling(**{**self.sampling.__dict__, "seed": seed}), user=user, owner=owner))
                self.generations[-1].result.memories = [m.id for m in self.memories]
        except EngineBusy as exc:
            self.cancel()
            raise ApiError(429, str(exc), "rate_limit_error", "server_busy", headers={"Retry-After": "1"})
        except EngineError as exc:
            self.cancel()
            raise ApiError(400, str(exc), param="messages")

    def cancel(self) -> None:
        for g in self.generations:
            g.cancel()

    async def complete(self, request: Request):
        """The whole answer as one ChatCompletion; None when the client left first (its partial
        answers are kept)."""
        watcher = asyncio.create_task(self._cancel_on_disconnect(request))
        try:
            texts = await asyncio.gather(*(_collect(g) for g in self.generations))
        finally:
            watcher.cancel()
        if await request.is_disconnected():
            self.metrics.cancelled.inc(len(self.generations))
            self.record_stopped()
            return None
        recorded = await self.record()
        self.observe("chat")
        return ChatCompletion(id=self.id, created=int(time.time()), model=self.model,
                              choices=[self._choice(i, g, text) for i, (g, text) in enumerate(zip(self.generations, texts))],
                              usage=self.usage(), moss=recorded)

    def _choice(self, index: int, generation: Generation, text: str) -> Choice:
        """An answer as OpenAI gives it: its text, or (with tools) the text before its calls and the calls."""
        if not self.form.functions:
            return Choice(index=index, message=AssistantMessage(content=text), finish_reason=_reason(generation))
        content, calls = toolcalls.parse(text)
        return Choice(index=index, message=AssistantMessage(
            content=content or (None if calls else ""),
            tool_calls=[ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments)) for c in calls]
            or None), finish_reason=_reason(generation, bool(calls)))

    async def _cancel_on_disconnect(self, request: Request) -> None:
        while not all(g.done for g in self.generations):
            if await request.is_disconnected():
                self.cancel()
                return
            await asyncio.sleep(0.25)

    def usage(self) -> Usage:
        first = self.generations[0].result
        completion = sum(g.result.completion_tokens for g in self.generations)
        return Usage(prompt_tokens=first.prompt_tokens, completion_tokens=completion,
                     total_tokens=first.prompt_tokens + completion,
                     prompt_tokens_details=PromptTokensDetails(cached_tokens=first.cached_tokens))

    def answers(self, generations: list[Generation]) -> list[Answer]:
        return [Answer.of(g.result, self.sampling.__dict__) for g in generations]

    async def record(self) -> MossInfo:
        answers = self.answers(self.generations)
        try:
            recorded = await run_in_threadpool(self.store.record, self.user_id, self.messages, answers,
                                               self.body.conversation_id, self.generations[0].result.dropped_messages)
        except LookupError as exc:
            raise ApiError(404, str(exc), param="conversation_id", code="conversation_not_found")
        return MossInfo(conversation_id=recorded.conversation_id, message_ids=recorded.message_ids[-len(answers):],
                        memories=[MemoryUsed(id=m.id, question=m.question, answer=m.answer, scope=m.scope)
                                  for m in self.memories],
                        tool_runs=[ToolRun(**r) for r in answers[0].tool_runs])

    def record_stopped(self) -> None:
        """Keep what a stopped answer had written (as ChatGPT does), once the engine has let go of
        it. Runs in a thread: the request's task is being cancelled and cannot wait."""
        def save():
            for g in self.generations:
                g.wait(60)
            written = [g for g in self.generations if g.result.text]
            if written:
                try:
                    self.store.record(self.user_id, self.messages, self.answers(written), self.body.conversation_id,
                                      written[0].result.dropped_messages)
                except LookupError:
                    pass  # the conversation was deleted meanwhile
        threading.Thread(target=save, name="moss-save-stopped", daemon=True).start()

    def observe(self, route: str) -> None:
        self.metrics.latency.labels(route).observe(time.perf_counter() - self.started_at)
        for g in self.generations:
            self.metrics.ttft.observe(g.result.time_to_first_token)
            self.metrics.tokens.labels("completion").inc(g.result.completion_tokens)
        self.metrics.tokens.labels("prompt").inc(self.generations[0].result.prompt_tokens)

    async def stream(self) -> AsyncIterator[str]:
        """Server-sent events in OpenAI's chunk format; the exchange is stored before [DONE]."""
        created, generations = int(time.time()), self.generations
        chunk = lambda **kw: "data: " + ChatCompletionChunk(  # noqa: E731
            id=self.id, created=created, model=self.model, **kw).model_dump_json(exclude_none=True) + "\n\n"
        # Content chunks are the hot path (one per token, on the cores that decode): a prebuilt frame
        # with the same JSON as the model above, filled in with json.dumps.
        head = (f'data: {{"id":"{self.id}","object":"chat.completion.chunk","created":{created},'
                f'"model":{json.dumps(self.model)},"choices":[{{"index":')
        try:
            for i in range(len(generations)):
                yield chunk(choices=[ChunkChoice(index=i, delta=Delta(role="assistant", content=""))])
            splitters = [toolcalls.Splitter() for _ in generations] if self.form.functions else None
            async for index, piece in _pieces(generations):
                if splitters:  # text until a call starts; each call once it is whole
                    shown, calls = splitters[index].feed(piece)
                    for out in _call_deltas(index, splitters[index], calls):
                        yield chunk(choices=[out])
                    if not shown:
                        continue
                    piece = shown
                yield f'{head}{index},"delta":{{"content":{json.dumps(piece, ensure_ascii=False)}}}}}]}}\n\n'
            for index, splitter in enumerate(splitters or []):
                rest, calls = splitter.finish()
                if rest:
                    yield chunk(choices=[ChunkChoice(index=index, delta=Delta(content=rest))])
                for out in _call_deltas(index, splitter, calls):
                    yield chunk(choices=[out])
            if any(g.result.finish_reason == "error" for g in generations):
                yield "data: " + json.dumps({"error": {"message": "generation failed", "type": "server_error"}}) + "\n\n"
                return
            recorded = await self.record()
            self.observe("chat_stream")
            for i, g in enumerate(generations):
                called = bool(splitters and splitters[i].calls)
                yield chunk(choices=[ChunkChoice(index=i, delta=Delta(), finish_reason=_reason(g, called))],
                            moss=recorded if i == len(generations) - 1 else None)
            if self.body.stream_options and self.body.stream_options.include_usage:
                yield chunk(choices=[], usage=self.usage())
            yield "data: [DONE]\n\n"
        except ApiError as exc:
            yield "data: " + json.dumps(error_body(exc)) + "\n\n"
        finally:
            stopped = [g for g in generations if not g.done]
            for g in stopped:
                g.cancel()
                self.metrics.cancelled.inc()
            if stopped:
                self.record_stopped()


async def _collect(generation: Generation) -> str:
    async for _ in generation:
        pass
    if generation.result.finish_reason == "error":
        raise ApiError(500, "generation failed", "server_error")
    return generation.result.text


def _reason(generation: Generation, called: bool = False) -> str:
    if generation.result.finish_reason == "length":
        return "length"
    return "tool_calls" if called else "stop"


def _call_deltas(index: int, splitter: "toolcalls.Splitter", calls: list) -> list[ChunkChoice]:
    """Calls as OpenAI streams them: a first delta that names each (id, type, name), then its
    arguments; `index` within a choice counts its calls."""
    out = []
    for call in calls:
        n = splitter.calls.index(call)
        out.append(ChunkChoice(index=index, delta=Delta(tool_calls=[ToolCallDelta(
            index=n, id=call.id, type="function", function=FunctionCallDelta(name=call.name))])))
        out.append(ChunkChoice(index=index, delta=Delta(tool_calls=[ToolCallDelta(
            index=n, function=FunctionCallDelta(arguments=call.arguments))])))
    return out


async def _pieces(generations: list[Generation]) -> AsyncIterator[tuple[int, str]]:
    """(choice index, text) as they come from one or several generations."""
    if len(generations) == 1:
        async for piece in generations[0]:
            yield 0, piece
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, generation: Generation) -> None:
        try:
            async for piece in generation:
                await queue.put((index, piece))
        finally:
            await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(generations)]
    try:
        open_streams = len(generations)
        while open_streams:
            index, piece = await queue.get()
            if piece is None:
                open_streams -= 1
            else:
                yield index, piece
    finally:
        for t in tasks:
            t.cancel()
