"""The HTTP server: OpenAI-compatible /v1 API, conversations, feedback, the chat page, health, metrics."""

import json
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from moss.inference import models, toolcalls
from moss.inference.engine import Engine, Sampling
from moss.learning import review, versions
from moss.learning.memory import Memories, latest_question
from moss.server import admin
from moss.server.access import COOKIE, Access, Exposure, Limits, is_loopback
from moss.server.api_types import (ChatCompletion, ChatMessage, ChatRequest, ConversationCreate,
                                   ConversationDetail, ConversationList, ConversationRename,
                                   ConversationSummary, Deleted, ErrorResponse, FeedbackEntries, FeedbackIn,
                                   FeedbackList, FeedbackOut, FeedbackWithdrawn, Health, MemoryDeleted, MemoryList,
                                   MemoryOut, MemoryUsed, ModelCard, ModelList, SessionIn, SessionOut, StoredMessage)
from moss.server.errors import ApiError, found, install_handlers
from moss.server.exchange import Exchange
from moss.server.metrics import Metrics
from moss.server.perimeter import MAX_BODY, BodyLimit, Perimeter
from moss.server.schedule import Plan, Schedule
from moss.server.structured import structure
from moss.store import Store
from moss.store.memories import Remembered
from moss.store.schema import User
from moss.tools import builtin
from moss.tools.turn import ToolEngine

WEB = Path(__file__).parent / "web"  # the chat page: static files, no build step
ERRORS = {400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
          404: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
          429: {"model": ErrorResponse}}


@dataclass
class Caller:
    user: User
    key: str
    admin: bool  # may use the admin API: an admin's key, or the machine's own user from loopback


def create_app(engine: Engine, store: Store, auth: bool = False, limits: Limits | None = None,
               exposure: Exposure | None = None, plan: Plan | None = None) -> FastAPI:
    access = Access(store, auth, limits or Limits())
    metrics = Metrics(lambda: engine.activity().queued, lambda: engine.activity().active)
    aliases = {engine.model, "moss", "default"}
    started = int(time.time())
    memories = Memories(store, engine.model)
    learner = None
    if engine.adapters:  # an engine here can serve trained versions: it may learn
        learner = admin.Learner(engine.model if engine.model in models.REGISTRY else str(engine.path))

    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        threads = [threading.Thread(target=memories.watch, args=(stop,), name="moss-memories", daemon=True)]
        if learner is not None:  # follow the serving version
            await run_in_threadpool(versions.follow, engine, store)
            threads.append(threading.Thread(target=admin.housekeeping, args=(engine, store, stop),
                                            name="moss-housekeeping", daemon=True))
            if plan is not None and plan.active:
                threads.append(threading.Thread(target=Schedule(plan, learner, store).run, args=(stop,),
                                                name="moss-schedule", daemon=True))
        for thread in threads:
            thread.start()
        yield
        stop.set()
        for thread in threads:
            thread.join()
        await run_in_threadpool(engine.close)
        store.close()

    app = FastAPI(title="Moss", version="0.1.0", lifespan=lifespan,
                  description="A self-hosted bilingual assistant with an OpenAI-compatible API.")
    install_handlers(app)

    @app.middleware("http")
    async def count(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.requests.labels(getattr(route, "path", "other"), str(response.status_code)).inc()
        return response

    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.add_middleware(Perimeter, exposure=exposure or Exposure())

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
        _unsupported(body)
        _answered_calls(body)
        if body.model not in aliases:
            raise ApiError(404, f"the model '{body.model}' does not exist; this server serves "
                                f"'{engine.model}' (see /v1/models)", code="model_not_found", param="model")
        messages = [_plain(m, i) for i, m in enumerate(body.messages)]
        sampling, form = _sampling(body, engine.context_size), structure(body)
        used = await run_in_threadpool(memories.recall, latest_question(messages), who.user.id) \
            if body.memories else []
        exchange = Exchange(store, metrics, engine.model, who.user.id, body, messages,
                            replace(sampling, grammar=form.grammar, grammar_triggers=form.triggers,
                                    special=bool(form.functions)), form, used)
        # The queue is fair across this key: the user, split further by OpenAI's `user` field
        # when an app sends its own end-users through one key.
        fairness = f"{who.user.name}/{body.user}" if body.user else who.user.name
        answering = ToolEngine(engine, builtin.pick(body.builtin_tools)) if body.builtin_tools else engine
        await run_in_threadpool(exchange.start, answering, fairness, who.user.name)
        if body.stream:
            return StreamingResponse(exchange.stream(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        completion = await exchange.complete(request)
        return completion if completion is not None else Response(status_code=499)

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
        conversation, messages = found(lambda: store.conversation(who.user.id, conversation_id))
        feedback = store.feedback_on(who.user.id, [m.id for m in messages])
        taught = {r.memory.feedback_id: r for r in store.memories(
            feedback_ids={f.id for rows in feedback.values() for f in rows if f.kind == "correction"})}
        used = {r.memory.id: r for r in store.memories(ids={i for m in messages for i in m.memory_ids or []})}
        return ConversationDetail(**_summary(conversation).model_dump(), messages=[
            StoredMessage.model_validate(m, from_attributes=True).model_copy(update={
                "feedback": [_feedback(f, taught.get(f.id), memories) for f in feedback.get(m.id, [])],
                "memories": [_used(used[i], memories) for i in m.memory_ids or [] if i in used]})
            for m in messages])

    @app.patch("/v1/conversations/{conversation_id}", response_model=ConversationSummary, responses=ERRORS)
    def rename_conversation(conversation_id: str, body: ConversationRename, who: Caller = Depends(api_caller)):
        return _summary(found(lambda: store.rename(who.user.id, conversation_id, body.title)))

    @app.delete("/v1/conversations/{conversation_id}", response_model=Deleted, responses=ERRORS)
    def delete_conversation(conversation_id: str, who: Caller = Depends(api_caller)):
        found(lambda: store.delete(who.user.id, conversation_id))
        return Deleted(id=conversation_id)

    # ---- feedback (what Moss learns from) ----

    @app.post("/v1/messages/{message_id}/feedback", response_model=FeedbackOut, responses=ERRORS,
              summary="Rate, correct, compare or flag an answer (replaces your earlier one of that kind)")
    def give_feedback(message_id: str, body: FeedbackIn, who: Caller = Depends(api_caller)):
        value = body.model_dump(exclude={"kind"})
        try:
            row = found(lambda: store.set_feedback(who.user.id, message_id, body.kind, value))
        except ValueError as exc:
            raise ApiError(400, str(exc), param="kind")
        if body.kind == "correction":
            memories.changed()  # its author's next question already finds it
        return _feedback(row, next(iter(store.memories(feedback_ids={row.id})), None), memories)

    @app.get("/v1/feedback", response_model=FeedbackEntries, responses=ERRORS,
             summary="Your feedback, newest first, with where each stands (pending, learned in v3...) and why")
    def my_feedback(who: Caller = Depends(api_caller)):
        return FeedbackEntries(data=review.entries(store, user_id=who.user.id))

    @app.get("/v1/messages/{message_id}/feedback", response_model=FeedbackList, responses=ERRORS)
    def list_feedback(message_id: str, who: Caller = Depends(api_caller)):
        found(lambda: store.message(who.user.id, message_id))
        rows = store.feedback_on(who.user.id, [message_id]).get(message_id, [])
        taught = {r.memory.feedback_id: r for r in store.memories(feedback_ids={f.id for f in rows})}
        return FeedbackList(data=[_feedback(f, taught.get(f.id), memories) for f in rows])

    @app.delete("/v1/messages/{message_id}/feedback/{kind}", response_model=FeedbackWithdrawn,
                responses=ERRORS, summary="Withdraw your feedback of one kind")
    def withdraw_feedback(message_id: str, kind: str, who: Caller = Depends(api_caller)):
        found(lambda: store.withdraw_feedback(who.user.id, message_id, kind))
        return FeedbackWithdrawn(message_id=message_id, kind=kind)

    # ---- memories (what corrections taught, used at once) ----

    @app.get("/v1/memories", response_model=MemoryList, responses=ERRORS,
             summary="Your memories (all=true: everyone's, for admins), with whom each reaches")
    def list_memories(all: bool = False, who: Caller = Depends(api_caller)):
        if all and not who.admin:
            raise ApiError(403, "only an admin may list everyone's memories", "permission_error", param="all")
        rows = memories.listing(None if all else who.user.id)
        return MemoryList(data=[_memory(r, reach) for r, reach in reversed(rows)])

    @app.delete("/v1/memories/{memory_id}", response_model=MemoryDeleted, responses=ERRORS,
                summary="Delete a memory: its correction is rejected, and unlearned if a version learned it")
    def delete_memory(memory_id: int, who: Caller = Depends(api_caller)):
        rows = store.memories(ids={memory_id})
        if not rows or (rows[0].memory.user_id != who.user.id and not who.admin):
            raise ApiError(404, f"no memory {memory_id}", code="memory_not_found")  # others' look like missing
        mine = rows[0].memory.user_id == who.user.id
        store.decide(rows[0].memory.feedback_id, "rejected",
                     "its author deleted it" if mine else f"deleted by the admin {who.user.name}", who.user.name)
        memories.changed()
        return MemoryDeleted(id=memory_id)

    # ---- the page's sign-in: the key goes into an HttpOnly cookie that no script can read ----

    @app.post("/v1/session", response_model=SessionOut, responses=ERRORS,
              summary="Sign the page in: check an API key and keep it in an HttpOnly cookie")
    def sign_in(body: SessionIn, request: Request, response: Response):
        user, _ = access.authenticate(f"Bearer {body.key}")
        if auth:
            response.set_cookie(COOKIE, body.key.strip(), max_age=30 * 86400, httponly=True,
                                samesite="strict", secure=request.url.scheme == "https")
        return SessionOut(user=user.name, auth=auth, admin=user.admin)

    @app.get("/v1/session", response_model=SessionOut, responses=ERRORS, summary="Who the page is signed in as")
    def session(who: Caller = Depends(caller)):
        return SessionOut(user=who.user.name, auth=auth, admin=who.admin)

    @app.delete("/v1/session", response_model=SessionOut, summary="Sign the page out")
    def sign_out(response: Response):
        response.delete_cookie(COOKIE, samesite="strict")
        return SessionOut(user=None, auth=auth)

    if learner is not None:
        app.include_router(admin.router(engine, store, caller, learner, memories.changed))

    # ---- operations ----

    @app.get("/health", response_model=Health, summary="Liveness and load")
    def health():
        activity = engine.activity()
        return Health(model=engine.model, version=engine.version, queued=activity.queued, active=activity.active)

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
    """OpenAI's message forms (text parts, developer role, an assistant's tool calls) as {role,
    content} text; a tool's result keeps its role until the prompt is made (toolcalls.prompt)."""
    content = message.content
    if isinstance(content, list):
        if any(part.type != "text" for part in content):
            raise ApiError(400, "only text content parts are supported", param=f"messages[{index}].content")
        content = "".join(part.text or "" for part in content)
    role = "system" if message.role == "developer" else message.role
    if message.tool_calls and role == "assistant":
        for call in message.tool_calls:
            try:
                ok = isinstance(json.loads(call.function.arguments or "{}"), dict)
            except json.JSONDecodeError:
                ok = False
            if not ok:
                raise ApiError(400, f"the arguments of tool call '{call.id}' are not a JSON object",
                               param=f"messages[{index}].tool_calls")
        content = toolcalls.written(content or "", [toolcalls.ToolCall(c.id, c.function.name, c.function.arguments)
                                                    for c in message.tool_calls])
    return {"role": role, "content": content or ""}


def _answered_calls(body: ChatRequest) -> None:
    """A 400 for a tool result that answers no call made before it, as OpenAI gives."""
    made: set[str] = set()
    for i, m in enumerate(body.messages):
        made |= {c.id for c in m.tool_calls or []}
        if m.role == "tool" and m.tool_call_id not in made:
            raise ApiError(400, f"a message with role 'tool' must answer a call made before it: tool_call_id "
                                f"'{m.tool_call_id}' is not the id of one", param=f"messages[{i}].tool_call_id")


def _unsupported(body: ChatRequest) -> None:
    """A 400 for what this server cannot do yet, instead of a plain-text answer the client did not ask for."""
    if body.builtin_tools and (body.tools or body.n > 1 or
                               (body.response_format or {}).get("type", "text") != "text"):
        raise ApiError(400, "builtin_tools answer one choice in words: send them without tools, "
                            "response_format or n > 1", param="builtin_tools")
    if body.logprobs:
        raise ApiError(400, "logprobs are not supported by this server yet", param="logprobs")


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


# ---- small helpers ----

def _feedback(row, remembered: Remembered | None, memories: Memories) -> FeedbackOut:
    """A piece of feedback as the API shows it; a correction's with its memory."""
    out = FeedbackOut.model_validate(row, from_attributes=True)
    if remembered is not None:
        out.memory = _memory(remembered, memories.scope_of(remembered))
    return out


def _used(r: Remembered, memories: Memories) -> MemoryUsed:
    m = r.memory
    return MemoryUsed(id=m.id, question=m.question, answer=m.answer, scope=memories.scope_of(r))


def _memory(r: Remembered, reach: str) -> MemoryOut:
    m = r.memory
    return MemoryOut(id=m.id, question=m.question, answer=m.answer, lang=m.lang, scope=reach, state=r.state,
                     reason=r.reason, learned_in=r.learned_in, author=r.author, feedback_id=m.feedback_id,
                     created_at=m.created_at)


def _summary(conversation) -> ConversationSummary:
    return ConversationSummary.model_validate(conversation, from_attributes=True)


