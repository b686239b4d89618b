"""The HTTP server: OpenAI-compatible /v1 API, conversations, feedback, the chat page, health, metrics."""

import asyncio
import json
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from moss import admin, models
from moss.access import COOKIE, Access, ApiError, Exposure, Limits, is_loopback
from moss.api_types import (ChatCompletion, ChatCompletionChunk, ChatMessage, ChatRequest, Choice,
                            ChunkChoice, ConversationCreate, ConversationDetail, ConversationList,
                            ConversationRename, ConversationSummary, Deleted, Delta, ErrorResponse,
                            FeedbackIn, FeedbackList, FeedbackOut, FeedbackWithdrawn, Health, ModelCard,
                            ModelList, MossInfo, PromptTokensDetails, SessionIn, SessionOut,
                            StoredMessage, Usage)
from moss.engine import Engine, EngineBusy, EngineError, Generation, Sampling
from moss.metrics import Metrics
from moss.schema import User
from moss.store import Answer, Store

WEB = Path(__file__).parent / "web"  # the chat page: static files, no build step
MAX_BODY = 4 << 20  # bytes; a full 32k-token history is well under this
ERRORS = {400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
          404: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
          429: {"model": ErrorResponse}}
# The page loads only its own files and talks only to its own server; no inline script runs, so
# a model's answer that slips markup past the sanitizer still cannot run code or send data out.
# Styles may be inline: KaTeX positions math with style attributes.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                 b"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
                                 b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


@dataclass
class Caller:
    user: User
    key: str
    admin: bool  # may use the admin API: an admin's key, or the machine's own user from loopback


def create_app(engine: Engine, store: Store, auth: bool = False, limits: Limits | None = None,
               version_id: str | None = None, exposure: Exposure | None = None) -> FastAPI:
    access = Access(store, auth, limits or Limits())
    scheduler = getattr(engine, "scheduler", None)
    metrics = Metrics(lambda: scheduler.queued if scheduler else 0,
                      lambda: scheduler.active if scheduler else 0)
    version = version_id or engine.model
    aliases = {engine.model, "moss", "default"}
    started = int(time.time())

    stop = threading.Event()
    follows = hasattr(engine, "set_adapter")  # the embedded engine serves trained versions

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        keeper = None
        if follows:
            await run_in_threadpool(admin.follow, engine, store)
            keeper = threading.Thread(target=admin.housekeeping, args=(engine, store, stop),
                                      name="moss-housekeeping", daemon=True)
            keeper.start()
        yield
        stop.set()
        if keeper is not None:
            keeper.join()
        await run_in_threadpool(engine.close)
        store.close()

    app = FastAPI(title="Moss", version="0.1.0", lifespan=lifespan,
                  description="A self-hosted bilingual assistant with an OpenAI-compatible API.")
    _install_error_handlers(app, metrics)
    app.add_middleware(_BodyLimit, limit=MAX_BODY)
    app.add_middleware(_Perimeter, exposure=exposure or Exposure())

    def caller(request: Request) -> Caller:
        user, key = access.authenticate(request.headers.get("authorization"), request.cookies.get(COOKIE))
        # Without --auth everyone who reaches the port is the local user: the admin API is then
        # only for the machine itself (loopback), even when --insecure exposes the rest.
        admin = user.admin and (auth or is_loopback(request.client.host if request.client else None))
        return Caller(user, key, admin)

    def api_caller(request: Request) -> Caller:
        """A caller of the API's cheaper endpoints, held to the --api-rate-limit."""
        who = caller(request)
        access.admit_call(who.key)
        return who

    # ---- OpenAI-compatible API ----

    @app.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERRORS,
              summary="Create a chat completion (streaming with stream=true)")
    async def chat_completions(body: ChatRequest, request: Request, who: Caller = Depends(caller)):
        await run_in_threadpool(access.admit, who.user, who.key)
        if body.model not in aliases:
            raise ApiError(404, f"the model '{body.model}' does not exist; this server serves "
                                f"'{engine.model}' (see /v1/models)", code="model_not_found", param="model")
        messages = [_plain(m, i) for i, m in enumerate(body.messages)]
        sampling = _sampling(body, engine.context_size)
        # Rendering and tokenizing a long history takes milliseconds: keep it off the event loop.
        # The queue is fair across this key: the user, split further by OpenAI's `user` field
        # when an app sends its own end-users through one key.
        fairness = f"{who.user.name}/{body.user}" if body.user else who.user.name
        generations = await run_in_threadpool(_start, engine, messages, sampling, body.n, fairness,
                                              who.user.name)
        completion_id = "chatcmpl-" + uuid.uuid4().hex
        started_at = time.perf_counter()
        if body.stream:
            return StreamingResponse(
                _stream(generations, body, completion_id, engine.model, messages, sampling,
                        who.user.id, store, version, metrics, started_at),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        watcher = asyncio.create_task(_cancel_on_disconnect(request, generations))
        try:
            texts = await asyncio.gather(*(_collect(g) for g in generations))
        finally:
            watcher.cancel()
        if await request.is_disconnected():
            metrics.cancelled.inc(len(generations))
            _record_stopped(store, who.user.id, messages, generations, sampling, version,
                            body.conversation_id)
            return Response(status_code=499)
        recorded = await _record(store, who.user.id, messages, generations, sampling, version,
                                 body.conversation_id)
        _observe(metrics, generations, "chat", started_at)
        return ChatCompletion(
            id=completion_id, created=int(time.time()), model=engine.model,
            choices=[Choice(index=i, message={"content": text}, finish_reason=_reason(g))
                     for i, (g, text) in enumerate(zip(generations, texts))],
            usage=_usage(generations), moss=recorded)

    @app.get("/v1/models", response_model=ModelList, responses=ERRORS, summary="List the served models")
    def list_models(_who: Caller = Depends(api_caller)):
        return ModelList(data=[ModelCard(id=engine.model, created=started)])

    @app.get("/v1/models/{model_id}", response_model=ModelCard, responses=ERRORS)
    def get_model(model_id: str, _who: Caller = Depends(api_caller)):
        if model_id not in aliases:
            raise ApiError(404, f"the model '{model_id}' does not exist", code="model_not_found")
        return ModelCard(id=engine.model, created=started)

    # ---- conversations (the web page's history) ----

    @app.get("/v1/conversations", response_model=ConversationList, responses=ERRORS,
             summary="List your conversations, newest first; q searches titles and messages")
    def list_conversations(q: str = "", limit: int = 50, offset: int = 0, who: Caller = Depends(api_caller)):
        if not 1 <= limit <= 500 or offset < 0:
            raise ApiError(400, "limit must be 1..500 and offset >= 0", param="limit")
        rows = store.conversations(who.user.id, q, limit, offset)
        return ConversationList(data=[_summary(c) for c in rows])

    @app.post("/v1/conversations", response_model=ConversationSummary, responses=ERRORS,
              summary="Start an empty conversation (send its id as conversation_id)")
    def create_conversation(body: ConversationCreate, who: Caller = Depends(api_caller)):
        return _summary(store.new_conversation(who.user.id, body.title))

    @app.get("/v1/conversations/{conversation_id}", response_model=ConversationDetail, responses=ERRORS)
    def get_conversation(conversation_id: str, who: Caller = Depends(api_caller)):
        conversation, messages = _found(lambda: store.conversation(who.user.id, conversation_id))
        feedback = store.feedback_on(who.user.id, [m.id for m in messages])
        return ConversationDetail(**_summary(conversation).model_dump(), messages=[
            StoredMessage.model_validate(m, from_attributes=True).model_copy(update={"feedback": [
                FeedbackOut.model_validate(f, from_attributes=True) for f in feedback.get(m.id, [])]})
            for m in messages])

    @app.patch("/v1/conversations/{conversation_id}", response_model=ConversationSummary, responses=ERRORS)
    def rename_conversation(conversation_id: str, body: ConversationRename, who: Caller = Depends(api_caller)):
        return _summary(_found(lambda: store.rename(who.user.id, conversation_id, body.title)))

    @app.delete("/v1/conversations/{conversation_id}", response_model=Deleted, responses=ERRORS)
    def delete_conversation(conversation_id: str, who: Caller = Depends(api_caller)):
        _found(lambda: store.delete(who.user.id, conversation_id))
        return Deleted(id=conversation_id)

    # ---- feedback (what Moss learns from) ----

    @app.post("/v1/messages/{message_id}/feedback", response_model=FeedbackOut, responses=ERRORS,
              summary="Rate, correct, compare or flag an answer (replaces your earlier one of that kind)")
    def give_feedback(message_id: str, body: FeedbackIn, who: Caller = Depends(api_caller)):
        value = body.model_dump(exclude={"kind"})
        try:
            row = _found(lambda: store.set_feedback(who.user.id, message_id, body.kind, value))
        except ValueError as exc:
            raise ApiError(400, str(exc), param="kind")
        return FeedbackOut.model_validate(row, from_attributes=True)

    @app.get("/v1/messages/{message_id}/feedback", response_model=FeedbackList, responses=ERRORS)
    def list_feedback(message_id: str, who: Caller = Depends(api_caller)):
        _found(lambda: store.message(who.user.id, message_id))
        rows = store.feedback_on(who.user.id, [message_id]).get(message_id, [])
        return FeedbackList(data=[FeedbackOut.model_validate(f, from_attributes=True) for f in rows])

    @app.delete("/v1/messages/{message_id}/feedback/{kind}", response_model=FeedbackWithdrawn,
                responses=ERRORS, summary="Withdraw your feedback of one kind")
    def withdraw_feedback(message_id: str, kind: str, who: Caller = Depends(api_caller)):
        _found(lambda: store.withdraw_feedback(who.user.id, message_id, kind))
        return FeedbackWithdrawn(message_id=message_id, kind=kind)

    # ---- the page's sign-in: the key goes into an HttpOnly cookie that no script can read ----

    @app.post("/v1/session", response_model=SessionOut, responses=ERRORS,
              summary="Sign the page in: check an API key and keep it in an HttpOnly cookie")
    def sign_in(body: SessionIn, request: Request, response: Response):
        user, _ = access.authenticate(f"Bearer {body.key}")
        if auth:
            response.set_cookie(COOKIE, body.key.strip(), max_age=30 * 86400, httponly=True,
                                samesite="strict", secure=request.url.scheme == "https")
        return SessionOut(user=user.name, auth=auth)

    @app.get("/v1/session", response_model=SessionOut, responses=ERRORS, summary="Who the page is signed in as")
    def session(who: Caller = Depends(caller)):
        return SessionOut(user=who.user.name, auth=auth)

    @app.delete("/v1/session", response_model=SessionOut, summary="Sign the page out")
    def sign_out(response: Response):
        response.delete_cookie(COOKIE, samesite="strict")
        return SessionOut(user=None, auth=auth)

    if follows:
        ref = engine.model if engine.model in models.REGISTRY else str(engine.path)
        app.include_router(admin.router(engine, store, caller, admin.Learner(ref)))

    # ---- operations ----

    @app.get("/health", response_model=Health, summary="Liveness and load")
    def health():
        return Health(model=engine.model, version=getattr(engine, "version", engine.model), queued=scheduler.queued if scheduler else 0,
                      active=scheduler.active if scheduler else 0)

    @app.get("/metrics", summary="Prometheus metrics")
    def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get("/", include_in_schema=False)
    def home():
        return FileResponse(WEB / "index.html")

    return app


# ---- helpers for chat completions ----

def _plain(message: ChatMessage, index: int) -> dict:
    """OpenAI's message forms (text parts, developer role) as {role, content} text."""
    if message.role == "tool":
        raise ApiError(400, "tool messages are not supported by this server",
                       param=f"messages[{index}].role")
    content = message.content
    if isinstance(content, list):
        if any(part.type != "text" for part in content):
            raise ApiError(400, "only text content parts are supported", param=f"messages[{index}].content")
        content = "".join(part.text or "" for part in content)
    role = "system" if message.role == "developer" else message.role
    return {"role": role, "content": content or ""}


def _sampling(body: ChatRequest, context_size: int) -> Sampling:
    max_tokens = body.max_completion_tokens or body.max_tokens or min(1024, context_size // 2)
    if max_tokens > context_size:
        raise ApiError(400, f"max_tokens is too large: {max_tokens}; this model's context holds "
                            f"{context_size} tokens", param="max_tokens")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > 4 or any(len(s) > 200 for s in stop):
        raise ApiError(400, "stop takes at most 4 strings of at most 200 characters", param="stop")
    defaults = Sampling()
    return Sampling(
        temperature=defaults.temperature if body.temperature is None else body.temperature,
        top_p=body.top_p or defaults.top_p, top_k=defaults.top_k if body.top_k is None else body.top_k,
        repeat_penalty=body.repeat_penalty or defaults.repeat_penalty,
        max_tokens=max_tokens, seed=body.seed, stop=stop)


def _start(engine: Engine, messages: list[dict], sampling: Sampling, n: int, user: str,
           owner: str) -> list[Generation]:
    """Submit n answers (seeds differ, so samples do; each holds a place of its own in the
    owner's share); cancel them all if any is refused."""
    generations: list[Generation] = []
    try:
        for i in range(n):
            seed = None if sampling.seed is None else sampling.seed + i
            generations.append(engine.generate(messages, Sampling(**{**sampling.__dict__, "seed": seed}),
                                               user=user, owner=owner))
    except EngineBusy as exc:
        for g in generations:
            g.cancel()
        raise ApiError(429, str(exc), "rate_limit_error", "server_busy", headers={"Retry-After": "1"})
    except EngineError as exc:
        for g in generations:
            g.cancel()
        raise ApiError(400, str(exc), param="messages")
    return generations


async def _collect(generation: Generation) -> str:
    async for _ in generation:
        pass
    if generation.result.finish_reason == "error":
        raise ApiError(500, "generation failed", "server_error")
    return generation.result.text


async def _cancel_on_disconnect(request: Request, generations: list[Generation]) -> None:
    while not all(g.done for g in generations):
        if await request.is_disconnected():
            for g in generations:
                g.cancel()
            return
        await asyncio.sleep(0.25)


def _reason(generation: Generation) -> str:
    return "length" if generation.result.finish_reason == "length" else "stop"


def _usage(generations: list[Generation]) -> Usage:
    first = generations[0].result
    completion = sum(g.result.completion_tokens for g in generations)
    return Usage(prompt_tokens=first.prompt_tokens, completion_tokens=completion,
                 total_tokens=first.prompt_tokens + completion,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=first.cached_tokens))


def _answers(generations: list[Generation], sampling: Sampling, version: str) -> list[Answer]:
    return [Answer(content=r.text, model_version_id=r.model_version or version, prompt=r.prompt,
                   sampling={**sampling.__dict__, "seed": r.seed}, prompt_tokens=r.prompt_tokens,
                   completion_tokens=r.completion_tokens, cached_tokens=r.cached_tokens,
                   finish_reason=r.finish_reason, latency_ms=int(r.total_seconds * 1000),
                   ttft_ms=int(r.time_to_first_token * 1000))
            for r in (g.result for g in generations)]


def _record_stopped(store: Store, user_id: int, messages: list[dict], generations: list[Generation],
                    sampling: Sampling, version: str, conversation_id: str | None) -> None:
    """Keep what a stopped stream had written (as ChatGPT does), once the engine has let go of it.
    Runs in a thread: the request's task is being cancelled and cannot wait."""
    def save():
        for g in generations:
            g.wait(60)
        written = [g for g in generations if g.result.text]
        if written:
            try:
                store.record(user_id, messages, _answers(written, sampling, version), conversation_id,
                             written[0].result.dropped_messages)
            except LookupError:
                pass  # the conversation was deleted meanwhile
    threading.Thread(target=save, name="moss-save-stopped", daemon=True).start()


async def _record(store: Store, user_id: int, messages: list[dict], generations: list[Generation],
                  sampling: Sampling, version: str, conversation_id: str | None) -> MossInfo:
    answers = _answers(generations, sampling, version)
    try:
        recorded = await run_in_threadpool(store.record, user_id, messages, answers, conversation_id,
                                           generations[0].result.dropped_messages)
    except LookupError as exc:
        raise ApiError(404, str(exc), param="conversation_id", code="conversation_not_found")
    return MossInfo(conversation_id=recorded.conversation_id,
                    message_ids=recorded.message_ids[-len(answers):])


def _observe(metrics: Metrics, generations: list[Generation], route: str, started_at: float) -> None:
    metrics.latency.labels(route).observe(time.perf_counter() - started_at)
    for g in generations:
        metrics.ttft.observe(g.result.time_to_first_token)
        metrics.tokens.labels("completion").inc(g.result.completion_tokens)
    metrics.tokens.labels("prompt").inc(generations[0].result.prompt_tokens)


async def _stream(generations: list[Generation], body: ChatRequest, completion_id: str, model: str,
                  messages: list[dict], sampling: Sampling, user_id: int, store: Store, version: str,
                  metrics: Metrics, started_at: float) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format; the exchange is stored before [DONE]."""
    created = int(time.time())
    chunk = lambda **kw: "data: " + ChatCompletionChunk(  # noqa: E731
        id=completion_id, created=created, model=model, **kw).model_dump_json(exclude_none=True) + "\n\n"
    # Content chunks are the hot path (one per token, on the cores that decode): a prebuilt frame
    # with the same JSON as the model above, filled in with json.dumps.
    head = (f'data: {{"id":"{completion_id}","object":"chat.completion.chunk","created":{created},'
            f'"model":{json.dumps(model)},"choices":[{{"index":')
    try:
        for i in range(len(generations)):
            yield chunk(choices=[ChunkChoice(index=i, delta=Delta(role="assistant", content=""))])
        async for index, piece in _pieces(generations):
            yield f'{head}{index},"delta":{{"content":{json.dumps(piece, ensure_ascii=False)}}}}}]}}\n\n'
        if any(g.result.finish_reason == "error" for g in generations):
            yield "data: " + json.dumps({"error": {"message": "generation failed", "type": "server_error"}}) + "\n\n"
            return
        recorded = await _record(store, user_id, messages, generations, sampling, version,
                                 body.conversation_id)
        _observe(metrics, generations, "chat_stream", started_at)
        for i, g in enumerate(generations):
            yield chunk(choices=[ChunkChoice(index=i, delta=Delta(), finish_reason=_reason(g))],
                        moss=recorded if i == len(generations) - 1 else None)
        if body.stream_options and body.stream_options.include_usage:
            yield chunk(choices=[], usage=_usage(generations))
        yield "data: [DONE]\n\n"
    except ApiError as exc:
        yield "data: " + json.dumps(_error_body(exc)) + "\n\n"
    finally:
        stopped = [g for g in generations if not g.done]
        for g in stopped:
            g.cancel()
            metrics.cancelled.inc()
        if stopped:
            _record_stopped(store, user_id, messages, generations, sampling, version,
                            body.conversation_id)


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


# ---- small helpers ----

def _summary(conversation) -> ConversationSummary:
    return ConversationSummary.model_validate(conversation, from_attributes=True)


def _found(fn):
    try:
        return fn()
    except LookupError as exc:
        raise ApiError(404, str(exc), code="not_found")


def _error_body(exc: ApiError) -> dict:
    return {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}}


def _install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """Every error leaves as OpenAI's error JSON; nothing a client sends becomes a 500."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse(_error_body(exc), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return JSONResponse(_error_body(ApiError(422, "the request body is not valid JSON")),
                                status_code=422)
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg", "invalid request"))
        return JSONResponse(_error_body(ApiError(422, message, param=where)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(_error_body(ApiError(exc.status_code, str(exc.detail), code=code)),
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception):
        return JSONResponse(_error_body(ApiError(500, f"internal error: {type(exc).__name__}",
                                                 "server_error")), status_code=500)

    @app.middleware("http")
    async def count(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.requests.labels(getattr(route, "path", "other"), str(response.status_code)).inc()
        return response


class _Perimeter:
    """Refuse requests for a foreign Host or from a foreign page (403, before any work is done),
    and add the security headers to every response."""

    def __init__(self, app, exposure: Exposure):
        self.app, self.exposure = app, exposure

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self.exposure.refusal(scope["method"], headers)
        if refusal is not None:
            return await _send_error(send, ApiError(403, refusal, "invalid_request_error", "forbidden"))

        async def secured(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)
        await self.app(scope, receive, secured)


class _BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, whether or not Content-Length is sent."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.limit:
                return await _too_large(send, self.limit)
            return await self.app(scope, receive, send)
        # No length given (chunked): read up to the limit first, then replay it to the app.
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.limit:
                return await _too_large(send, self.limit)
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _too_large(send, limit: int) -> None:
    await _send_error(send, ApiError(413, f"request body over {limit} bytes", code="request_too_large"))


async def _send_error(send, error: ApiError) -> None:
    """An error answered from ASGI middleware, before FastAPI's handlers are reached."""
    body = json.dumps(_error_body(error)).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
