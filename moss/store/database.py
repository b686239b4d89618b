"""The store: users, keys, conversations and every answer, in SQLite (default) or PostgreSQL."""

import hashlib
import os
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, time, timezone
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from moss import paths
from moss.store.memories import MemoryStore, remember
from moss.store.schema import (FEEDBACK_STATES, ApiKey, Conversation, Feedback, FeedbackEvent, Message, ModelVersion,
                               TrainingRecord, User, now)

LOCAL_USER = "local"  # the single user of a server running without --auth
# What one message may add to the database. A client can send megabytes of history with every
# request; what the model never saw (older than the context window) is kept as a short excerpt,
# and no message is kept beyond MESSAGE_CHARS. Each answer's `prompt` holds what the model saw.
MESSAGE_CHARS = 32_000
UNSEEN_CHARS = 2_000


class StoreError(Exception):
    """A store operation that cannot be done as asked (unknown user, ...)."""


@dataclass
class Answer:
    """An assistant answer and everything needed to trace and reproduce it."""
    content: str
    model_version_id: str
    prompt: list[dict]
    sampling: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    finish_reason: str
    latency_ms: int
    ttft_ms: int
    memory_ids: list[int] = field(default_factory=list)  # the memories its prompt held
    tool_runs: list[dict] = field(default_factory=list)  # calls Moss's own tools ran: name, arguments, result, ok

    @classmethod
    def of(cls, result, sampling: dict[str, Any]) -> "Answer":
        """From an engine's finished Result (read by its fields: the store imports no engine)."""
        return cls(content=result.text, model_version_id=result.model_version, prompt=result.prompt,
                   sampling={**sampling, "seed": result.seed}, prompt_tokens=result.prompt_tokens,
                   completion_tokens=result.completion_tokens, cached_tokens=result.cached_tokens,
                   finish_reason=result.finish_reason, latency_ms=int(result.total_seconds * 1000),
                   ttft_ms=int(result.time_to_first_token * 1000), memory_ids=list(result.memories),
                   tool_runs=list(result.tool_runs))


@dataclass
class Recorded:
    conversation_id: str
    message_ids: list[str] = field(default_factory=list)  # the new request messages, then the answers


def database_url() -> str:
    return os.environ.get("MOSS_DATABASE_URL") or f"sqlite:///{paths.home() / 'moss.db'}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def path_hash(parent: str, role: str, content: str) -> str:
    """Identifies a message by its whole path from the conversation's root. A system prompt
    counts by its place, not its text: clients that put the date or time in theirs still
    continue one conversation instead of storing their whole history again with every request."""
    if role == "system":
        content = ""
    return hashlib.sha256(f"{parent}\x00{role}\x00{content}".encode()).hexdigest()


def stored_text(content: str, limit: int) -> str:
    """A message's text as stored: whole up to `limit` characters, else its start and a note."""
    if len(content) <= limit:
        return content
    return content[:limit] + f"\n…[{len(content) - limit} more characters not stored]"


@dataclass
class Judgment:
    """A piece of feedback with the answer it judges and its author (for review and listings)."""
    feedback: Feedback
    message: Message
    author: User


NOT_GIVEN = "only answers Moss gave can be rated or corrected (this one was written into the history by the client)"


class FeedbackStore:
    """Judgments of answers (mixed into Store below): one of each kind per person and message,
    each with its state and the history of how it got there."""

    def set_feedback(self, user_id: int, message_id: str, kind: str, value: dict) -> Feedback:
        """Record or change a judgment of an answer Moss gave; it is pending until checked."""
        with self.session.begin() as s:
            message = _owned_message(s, user_id, message_id)
            if message.role != "assistant":
                raise ValueError("feedback applies to assistant messages only")
            if message.model_version_id is None:  # a client can write any "assistant" turn it likes
                raise ValueError(NOT_GIVEN)
            if kind == "comparison":
                other = s.get(Message, value["other_message_id"])
                if other is None or other.user_id != user_id or other.parent_id != message.parent_id \
                        or other.role != "assistant" or other.id == message.id or other.model_version_id is None:
                    raise ValueError("a comparison needs another answer Moss gave to the same question")
            row = _feedback_row(s, user_id, message_id, kind)
            if row is None:
                row = Feedback(message_id=message_id, user_id=user_id, kind=kind)
                s.add(row)
            elif row.value == value:
                return row  # the same judgment again: nothing changes, not even its place in the queue
            row.value, row.updated_at, row.attempts, row.checks = value, now(), 0, {}
            s.flush()
            remember(s, row, message)
            _step(s, row, "pending", "new: checked before the next learning cycle", s.get(User, user_id).name)
            return row

    def decide(self, feedback_id: int, state: str, reason: str, actor: str, **fields) -> Feedback:
        """Move feedback to `state`, saying why and who decided (a user, "policy" or a version);
        `fields` sets learned_in, unlearned_in, attempts or checks on the way."""
        if state not in FEEDBACK_STATES:
            raise ValueError(f"unknown feedback state '{state}'")
        with self.session.begin() as s:
            row = s.get(Feedback, feedback_id)
            if row is None:
                raise LookupError(f"no feedback {feedback_id}")
            for name, value in fields.items():
                setattr(row, name, value)
            if (row.state, row.reason) != (state, reason):
                _step(s, row, state, reason, actor)
            return row

    def judgments(self, states: tuple[str, ...] = (), user_id: int | None = None,
                  ids: set[int] | None = None) -> list[Judgment]:
        """Feedback with its answer and author, oldest first: in some states, by one author, or by id."""
        with self.session() as s:
            stmt = (select(Feedback, Message, User).join(Message, Feedback.message_id == Message.id)
                    .join(User, Feedback.user_id == User.id))
            if states:
                stmt = stmt.where(Feedback.state.in_(states))
            if user_id is not None:
                stmt = stmt.where(Feedback.user_id == user_id)
            if ids is not None:
                stmt = stmt.where(Feedback.id.in_(ids))
            return [Judgment(f, m, u) for f, m, u in s.execute(stmt.order_by(Feedback.updated_at, Feedback.id))]

    def history(self, feedback_id: int) -> list[FeedbackEvent]:
        with self.session() as s:
            return list(s.scalars(select(FeedbackEvent).where(FeedbackEvent.feedback_id == feedback_id)
                                  .order_by(FeedbackEvent.id)))

    def withdraw_feedback(self, user_id: int, message_id: str, kind: str) -> None:
        with self.session.begin() as s:
            row = _feedback_row(s, user_id, message_id, kind)
            if row is None:
                raise LookupError(f"no {kind} feedback on message '{message_id}'")
            s.delete(row)

    def feedback_on(self, user_id: int, message_ids: list[str]) -> dict[str, list[Feedback]]:
        """A user's feedback on these messages, by message id."""
        out: dict[str, list[Feedback]] = {}
        with self.session() as s:
            for row in s.scalars(select(Feedback).where(Feedback.user_id == user_id,
                                                        Feedback.message_id.in_(message_ids))
                                 .order_by(Feedback.created_at, Feedback.id)):
                out.setdefault(row.message_id, []).append(row)
        return out

    def all_feedback(self, since: datetime | None = None,
                     states: tuple[str, ...] = ()) -> list[tuple[Feedback, Message]]:
        """Every user's feedback with its message, oldest first (for datasets); only in `states` if given."""
        with self.session() as s:
            stmt = select(Feedback, Message).join(Message, Feedback.message_id == Message.id)
            if since is not None:
                stmt = stmt.where(Feedback.updated_at >= since)
            if states:
                stmt = stmt.where(Feedback.state.in_(states))
            return [(f, m) for f, m in s.execute(stmt.order_by(Feedback.updated_at, Feedback.id))]

    def messages_by_id(self, ids: set[str]) -> dict[str, Message]:
        with self.session() as s:
            return {m.id: m for m in s.scalars(select(Message).where(Message.id.in_(ids)))}

    def context(self, message: Message) -> list[dict]:
        """The conversation up to (not including) a message: its ancestors, oldest first."""
        chain, parent_id = [], message.parent_id
        with self.session() as s:
            while parent_id:
                parent = s.get(Message, parent_id)
                chain.append({"role": parent.role, "content": parent.content})
                parent_id = parent.parent_id
        return chain[::-1]


class Store(FeedbackStore, MemoryStore):
    def __init__(self, url: str | None = None):
        self.url = url or database_url()
        sqlite = self.url.startswith("sqlite")
        self.engine = create_engine(self.url, pool_pre_ping=not sqlite,
                                    connect_args={"timeout": 30} if sqlite else {})
        if sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.migrate()
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest version (Alembic), in one transaction."""
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    # ---- users and keys ----

    def add_user(self, name: str, rate_limit: int | None = None, daily_tokens: int | None = None,
                 admin: bool = False, trusted: bool = False) -> tuple[User, str]:
        """A new user and their first API key (shown once: only its hash is kept)."""
        with self.session.begin() as s:
            if s.scalar(select(User).where(User.name == name)):
                raise StoreError(f"user '{name}' already exists")
            user = User(name=name, rate_limit=rate_limit, daily_tokens=daily_tokens, admin=admin, trusted=trusted)
            s.add(user)
            s.flush()
            key = self._new_key(s, user)
        return user, key

    def new_key(self, name: str) -> str:
        with self.session.begin() as s:
            return self._new_key(s, self._user(s, name))

    @staticmethod
    def _new_key(s: Session, user: User) -> str:
        key = "moss-" + secrets.token_urlsafe(32)
        s.add(ApiKey(user_id=user.id, key_hash=hash_key(key), prefix=key[:12]))
        return key

    def users(self) -> list[tuple[User, int]]:
        """Every user with the number of their active keys."""
        with self.session() as s:
            keys = (select(func.count(ApiKey.id)).where(ApiKey.user_id == User.id, ~ApiKey.disabled)
                    .scalar_subquery())
            return [(u, n) for u, n in s.execute(select(User, keys).order_by(User.id))]

    def set_disabled(self, name: str, disabled: bool = True, reject_feedback: bool = False) -> int:
        """Disable (or enable) a user; with `reject_feedback`, reject all their feedback not yet
        learned. Returns how many were rejected."""
        with self.session.begin() as s:
            user = self._user(s, name)
            user.disabled = disabled
            if not reject_feedback:
                return 0
            rows = list(s.scalars(select(Feedback).where(Feedback.user_id == user.id,
                                                         Feedback.state.in_(("pending", "accepted", "held", "parked")))))
            for row in rows:
                _step(s, row, "rejected", "its author was disabled", "admin")
            return len(rows)

    def set_trusted(self, name: str, trusted: bool = True) -> None:
        """A trusted user's corrections need no second person's agreement (the other checks stay)."""
        with self.session.begin() as s:
            self._user(s, name).trusted = trusted

    def user(self, name: str) -> User:
        with self.session() as s:
            return self._user(s, name)

    @staticmethod
    def _user(s: Session, name: str) -> User:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise StoreError(f"no user named '{name}'")
        return user

    def user_for_key(self, key: str) -> User | None:
        """The enabled user owning an enabled key, or None."""
        with self.session() as s:
            return s.scalar(select(User).join(ApiKey).where(
                ApiKey.key_hash == hash_key(key), ~ApiKey.disabled, ~User.disabled))

    def local_user(self) -> User:
        with self.session.begin() as s:
            user = s.scalar(select(User).where(User.name == LOCAL_USER))
            if user is None:
                user = User(name=LOCAL_USER, admin=True)  # the machine's owner
                s.add(user)
            return user

    def tokens_today(self, user_id: int) -> int:
        """Prompt plus completion tokens this user spent since midnight UTC."""
        midnight = datetime.combine(now().date(), time(), tzinfo=timezone.utc)
        with self.session() as s:
            total = s.scalar(select(func.sum(func.coalesce(Message.prompt_tokens, 0)
                                             + func.coalesce(Message.completion_tokens, 0)))
                             .where(Message.user_id == user_id, Message.created_at >= midnight,
                                    Message.role == "assistant"))
            return int(total or 0)

    # ---- model versions ----

    def register_version(self, version_id: str, base_model: str, path: str,
                         sha256: str | None = None) -> ModelVersion:
        """Record a base model the first time it serves; it serves until a trained version does."""
        with self.session.begin() as s:
            version = s.get(ModelVersion, version_id)
            if version is None:
                version = ModelVersion(id=version_id, base_model=base_model, path=path, sha256=sha256)
                s.add(version)
            return version

    def add_version(self, version: ModelVersion) -> ModelVersion:
        """Record a trained version (serving or failed) in one transaction. One that was to serve
        but whose parent no longer serves (rolled back while it trained) is recorded as failed:
        it holds what the rollback took away."""
        with self.session.begin() as s:
            if version.status == "serving":
                current = s.scalar(select(ModelVersion).where(ModelVersion.base_model == version.base_model,
                                                              ModelVersion.status == "serving")
                                   .order_by(ModelVersion.created_at.desc()).limit(1))
                if current is not None and current.id != version.parent_id:
                    version.status, version.path = "failed", ""
                    version.details = {**version.details, "stale": f"its parent {version.parent_id} no longer "
                                                                   f"serves ({current.id} does): rolled back while it trained"}
                else:
                    self._retire(s, version.base_model)
            s.add(version)
            return version

    def version(self, version_id: str) -> ModelVersion:
        with self.session() as s:
            version = s.get(ModelVersion, version_id)
            if version is None:
                raise StoreError(f"no model version '{version_id}' (see moss versions)")
            return version

    def update_details(self, version_id: str, **details) -> None:
        """Add facts measured later (such as its general score) to a version's details."""
        with self.session.begin() as s:
            version = s.get(ModelVersion, version_id)
            version.details = {**version.details, **details}

    def serving_version(self, base_model: str) -> ModelVersion | None:
        """The version of a base model that answers now (the newest one marked serving)."""
        with self.session() as s:
            return s.scalar(select(ModelVersion).where(ModelVersion.base_model == base_model,
                                                       ModelVersion.status == "serving")
                            .order_by(ModelVersion.created_at.desc()).limit(1))

    def promote(self, version_id: str) -> ModelVersion:
        """Make a version (trained or the base) the one that serves; the others of its base retire."""
        with self.session.begin() as s:
            version = s.get(ModelVersion, version_id)
            if version is None:
                raise StoreError(f"no model version '{version_id}' (see moss versions)")
            if version.status == "failed":
                raise StoreError(f"version '{version_id}' failed verification and cannot serve")
            self._retire(s, version.base_model)
            version.status = "serving"
            return version

    @staticmethod
    def _retire(s: Session, base_model: str) -> None:
        for other in s.scalars(select(ModelVersion).where(ModelVersion.base_model == base_model,
                                                          ModelVersion.status == "serving")):
            other.status = "retired"

    def all_versions(self) -> list[ModelVersion]:
        with self.session() as s:
            return list(s.scalars(select(ModelVersion).order_by(ModelVersion.created_at)))

    # ---- training records from teachers, judges and self-instruct ----

    def add_records(self, records: list[TrainingRecord]) -> None:
        with self.session.begin() as s:
            s.add_all(records)

    def records(self, status: str | None = None, source: str | None = None) -> list[TrainingRecord]:
        with self.session() as s:
            stmt = select(TrainingRecord).order_by(TrainingRecord.id)
            if status:
                stmt = stmt.where(TrainingRecord.status == status)
            if source:
                stmt = stmt.where(TrainingRecord.source == source)
            return list(s.scalars(stmt))

    def record_origins(self, source: str) -> set[str]:
        """What a source already made records from (kept or dropped), so it is not done twice."""
        with self.session() as s:
            return set(s.scalars(select(TrainingRecord.origin).where(TrainingRecord.source == source)))

    def mark_learned(self, ids: list[int], version_id: str) -> None:
        with self.session.begin() as s:
            for row in s.scalars(select(TrainingRecord).where(TrainingRecord.id.in_(ids))):
                row.status, row.version_id = "learned", version_id

    def user_prompts(self) -> list[tuple[Message, list[dict]]]:
        """Every user message with the conversation before it, oldest first (for distillation)."""
        with self.session() as s:
            rows = list(s.scalars(select(Message).where(Message.role == "user").order_by(Message.created_at)))
        return [(m, self.context(m)) for m in rows]

    # ---- conversations ----

    def record(self, user_id: int, messages: list[dict], answers: list[Answer],
               conversation_id: str | None = None, unseen: int = 0) -> Recorded:
        """Store a request's messages (joining the conversation they continue) and its answers,
        in one transaction: when this returns, all of it is on disk. The first `unseen` messages
        after a leading system prompt did not fit the model's context: they are kept short."""
        hashes, parent = [], ""
        for m in messages:
            parent = path_hash(parent, m["role"], m["content"])
            hashes.append(parent)
        with self.session.begin() as s:
            query = select(Message).where(Message.user_id == user_id, Message.path_hash.in_(hashes))
            if conversation_id:
                self._conversation(s, user_id, conversation_id)
                query = query.where(Message.conversation_id == conversation_id)
            known = {m.path_hash: m for m in s.scalars(query.order_by(Message.created_at))}
            matched = 0
            while matched < len(hashes) and hashes[matched] in known:
                matched += 1
            parent_msg = known[hashes[matched - 1]] if matched else None
            if parent_msg is not None:
                conversation = s.get(Conversation, parent_msg.conversation_id)
            elif conversation_id:
                conversation = self._conversation(s, user_id, conversation_id)
            else:
                conversation = Conversation(id=uuid.uuid4().hex, user_id=user_id,
                                            title=_title(messages))
                s.add(conversation)
            recorded = Recorded(conversation.id)
            parent_id = parent_msg.id if parent_msg else None
            cut = unseen + (1 if messages and messages[0]["role"] == "system" else 0)
            for i in range(matched, len(messages)):
                m = messages[i]
                limit = UNSEEN_CHARS if i < cut and m["role"] != "system" else MESSAGE_CHARS
                parent_id = self._add(s, recorded, conversation.id, user_id, parent_id, hashes[i],
                                      role=m["role"], content=stored_text(m["content"], limit))
            base = hashes[-1] if hashes else ""
            for a in answers:
                self._add(s, recorded, conversation.id, user_id, parent_id,
                          path_hash(base, "assistant", a.content), role="assistant", **a.__dict__)
            if not conversation.title:
                conversation.title = _title(messages)
            conversation.updated_at = now()
        return recorded

    @staticmethod
    def _add(s: Session, recorded: Recorded, conversation_id: str, user_id: int,
             parent_id: str | None, hash_: str, **fields) -> str:
        message = Message(id=uuid.uuid4().hex, conversation_id=conversation_id, user_id=user_id,
                          parent_id=parent_id, path_hash=hash_, **fields)
        s.add(message)
        recorded.message_ids.append(message.id)
        return message.id

    @staticmethod
    def _conversation(s: Session, user_id: int, conversation_id: str) -> Conversation:
        conversation = s.get(Conversation, conversation_id)
        if conversation is None or conversation.user_id != user_id:  # others' look like missing
            raise LookupError(f"no conversation '{conversation_id}'")
        return conversation

    def new_conversation(self, user_id: int, title: str = "") -> Conversation:
        with self.session.begin() as s:
            conversation = Conversation(id=uuid.uuid4().hex, user_id=user_id, title=title)
            s.add(conversation)
            return conversation

    def conversations(self, user_id: int, query: str = "", limit: int = 50,
                      offset: int = 0) -> list[Conversation]:
        """A user's conversations, newest first; `query` matches titles and message text."""
        with self.session() as s:
            stmt = select(Conversation).where(Conversation.user_id == user_id)
            if query:
                like = f"%{query}%"
                stmt = stmt.where(or_(Conversation.title.ilike(like), Conversation.id.in_(
                    select(Message.conversation_id).where(Message.user_id == user_id,
                                                          Message.content.ilike(like)))))
            stmt = stmt.order_by(Conversation.updated_at.desc()).limit(limit).offset(offset)
            return list(s.scalars(stmt))

    def conversation(self, user_id: int, conversation_id: str) -> tuple[Conversation, list[Message]]:
        """A conversation and all its messages (every branch), oldest first."""
        with self.session() as s:
            conversation = self._conversation(s, user_id, conversation_id)
            messages = s.scalars(select(Message).where(Message.conversation_id == conversation_id)
                                 .order_by(Message.created_at, Message.id))
            return conversation, list(messages)

    def message(self, user_id: int, message_id: str) -> Message:
        with self.session() as s:
            return _owned_message(s, user_id, message_id)

    def rename(self, user_id: int, conversation_id: str, title: str) -> Conversation:
        with self.session.begin() as s:
            conversation = self._conversation(s, user_id, conversation_id)
            conversation.title = title
            return conversation

    def delete(self, user_id: int, conversation_id: str) -> None:
        with self.session.begin() as s:
            s.delete(self._conversation(s, user_id, conversation_id))


def _owned_message(s: Session, user_id: int, message_id: str) -> Message:
    message = s.get(Message, message_id)
    if message is None or message.user_id != user_id:  # others' look like missing
        raise LookupError(f"no message '{message_id}'")
    return message


def _step(s: Session, row: Feedback, state: str, reason: str, actor: str) -> None:
    """A state change and its line in the feedback's history, in the caller's transaction."""
    row.state, row.reason = state, reason
    s.flush()  # a new row needs its id for the history
    s.add(FeedbackEvent(feedback_id=row.id, state=state, reason=reason, actor=actor))


def _feedback_row(s: Session, user_id: int, message_id: str, kind: str) -> Feedback | None:
    return s.scalar(select(Feedback).where(Feedback.message_id == message_id,
                                           Feedback.user_id == user_id, Feedback.kind == kind))


def _title(messages: list[dict]) -> str:
    first = next((m["content"] for m in messages if m["role"] == "user"), "")
    first = " ".join(first.split())
    return first if len(first) <= 60 else first[:57] + "..."


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers work during writes; synchronous=FULL makes each commit durable before
    # the server reports success; SQLite leaves foreign keys off unless asked.
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()
