"""Where `moss chat` and `moss ask` get answers and send feedback: a model run here, logging every
exchange to the local store (as the server does), or a running Moss server (`--url`), which
logs them itself. Either way an answer can then be rated or corrected, and `moss learn` learns
from it."""

import os
from typing import Protocol

import httpx
from pydantic import TypeAdapter, ValidationError

from moss.inference.engine import Engine, Generation, Sampling
from moss.inference.prompts import Message
from moss.inference.remote import RemoteEngine, api_base
from moss.learning.memory import Memories, latest_question, with_memories
from moss.server.api_types import FeedbackIn
from moss.store import Answer, Store, StoreError

FEEDBACK: TypeAdapter = TypeAdapter(FeedbackIn)


class FeedbackError(Exception):
    """Feedback that could not be given; the message says why."""


class Backend(Protocol):
    engine: Engine

    def answer(self, messages: list[Message], sampling: Sampling) -> Generation: ...

    def keep(self, messages: list[Message], generation: Generation, sampling: Sampling) -> str | None:
        """Log a finished exchange; the stored answer's id (None when nothing was written)."""
        ...

    def feedback(self, message_id: str, kind: str, **value) -> None: ...

    def close(self) -> None: ...


def checked(kind: str, value: dict) -> dict:
    """Feedback as the API takes it (the same model checks both): its stored value."""
    try:
        return FEEDBACK.validate_python({"kind": kind, **value}).model_dump(exclude={"kind"})
    except ValidationError as exc:
        raise FeedbackError(exc.errors()[0]["msg"]) from None


class Local:
    """An engine here; exchanges and feedback go to this machine's store as its local user, and
    what people taught (memories) goes into its prompts, as the server's does."""

    def __init__(self, engine: Engine, store: Store):
        self.engine, self.store = engine, store
        self.user = store.local_user()
        self.memories = Memories(store, engine.model)

    def answer(self, messages: list[Message], sampling: Sampling) -> Generation:
        used = self.memories.recall(latest_question(messages), self.user.id)
        generation = self.engine.generate(with_memories(messages, used), sampling)
        generation.result.memories = [m.id for m in used]
        return generation

    def keep(self, messages: list[Message], generation: Generation, sampling: Sampling) -> str | None:
        r = generation.result
        if not r.text:
            return None
        recorded = self.store.record(self.user.id, messages, [Answer.of(r, sampling.__dict__)], None,
                                     r.dropped_messages)
        return recorded.message_ids[-1]

    def feedback(self, message_id: str, kind: str, **value) -> None:
        try:
            self.store.set_feedback(self.user.id, message_id, kind, checked(kind, value))
        except (StoreError, LookupError, ValueError) as exc:
            raise FeedbackError(str(exc)) from None
        self.memories.changed()  # a correction applies to the very next question

    def close(self) -> None:
        self.engine.close()
        self.store.close()


class Server:
    """A running Moss server: it answers, logs and learns; the key is MOSS_API_KEY (if it needs one)."""

    def __init__(self, url: str, api_key: str | None = None):
        key = api_key if api_key is not None else os.environ.get("MOSS_API_KEY", "")
        self.engine = RemoteEngine(url, "moss", key)
        self.url = url
        self._client = httpx.Client(base_url=api_base(url), timeout=30,
                                    headers={"Authorization": f"Bearer {key}"} if key else {})

    def answer(self, messages: list[Message], sampling: Sampling) -> Generation:
        return self.engine.generate(messages, sampling)

    def keep(self, messages: list[Message], generation: Generation, sampling: Sampling) -> str | None:
        return generation.result.message_id or None  # the server logged it already

    def feedback(self, message_id: str, kind: str, **value) -> None:
        try:
            r = self._client.post(f"/messages/{message_id}/feedback", json={"kind": kind, **checked(kind, value)})
        except httpx.HTTPError as exc:
            raise FeedbackError(f"{self.url}: {exc}") from None
        if r.status_code != 200:
            raise FeedbackError(r.json().get("error", {}).get("message", r.text[:200]))

    def close(self) -> None:
        self.engine.close()
        self._client.close()


