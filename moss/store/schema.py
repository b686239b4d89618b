"""The database tables: users, API keys, conversations, messages, feedback and its history,
model versions, training records, memories."""

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)  # may start learning, switch versions
    trusted: Mapped[bool] = mapped_column(Boolean, default=False)  # corrections need no second person
    rate_limit: Mapped[int | None] = mapped_column(Integer)  # requests per minute; None: server default
    daily_tokens: Mapped[int | None] = mapped_column(Integer)  # None: server default
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the key; the key itself is never stored
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to tell keys apart
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    user: Mapped[User] = relationship()


class ModelVersion(Base):
    """A servable model: a base GGUF, or later a base plus a trained adapter."""
    __tablename__ = "model_versions"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    base_model: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    path: Mapped[str] = mapped_column(Text)  # the GGUF (or adapter) file it serves from
    sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="serving")  # serving | retired | failed
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)  # dataset, hyper-parameters, metrics
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Conversation(Base):
    __tablename__ = "conversations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)


class Message(Base):
    """A node in a conversation tree. `path_hash` identifies the whole path from the root, so a
    client that resends the history (as OpenAI clients do) continues the same conversation, and an
    edited earlier message starts a branch beside the old one."""
    __tablename__ = "messages"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    path_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)
    # For assistant messages: what produced it, exactly.
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    prompt: Mapped[list[Any] | None] = mapped_column()  # the messages the model saw (system, trimmed history)
    sampling: Mapped[dict[str, Any] | None] = mapped_column()
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    cached_tokens: Mapped[int | None] = mapped_column(Integer)
    finish_reason: Mapped[str | None] = mapped_column(String(20))
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    memory_ids: Mapped[list[Any] | None] = mapped_column()  # the memories its prompt held (learning/memory.py)
    tool_runs: Mapped[list[Any] | None] = mapped_column()  # calls Moss's tools ran for it (tools/turn.py)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)

    __table_args__ = (Index("ix_messages_user_path", "user_id", "path_hash"),
                      Index("ix_messages_user_created", "user_id", "created_at"))


FEEDBACK_STATES = ("pending", "accepted", "held", "rejected", "learned", "parked")


class Feedback(Base):
    """A person's judgment of an assistant message: rating, correction, comparison or flag, and
    where it stands: pending -> accepted / held for review / rejected -> learned in a version
    (-> unlearned in a later one, once rejected). Parked: not learned in repeated cycles."""
    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # rating | correction | comparison | flag
    value: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # FEEDBACK_STATES
    reason: Mapped[str] = mapped_column(Text, default="")  # why it is in its state, for its author and admins
    learned_in: Mapped[str | None] = mapped_column(String(200))  # the serving lineage's version that learned it
    unlearned_in: Mapped[str | None] = mapped_column(String(200))  # the version that removed it again
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # cycles that tried and did not learn it
    checks: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the base model's and teacher's answers
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)

    # One judgment of each kind per person and message: changing it updates the row.
    __table_args__ = (UniqueConstraint("message_id", "user_id", "kind", name="uq_feedback_once"),)


class FeedbackEvent(Base):
    """One step in a piece of feedback's history: its new state, why, and who or what decided."""
    __tablename__ = "feedback_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(200), default="")  # a user's name, "policy" or a version id
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class TrainingRecord(Base):
    """Training data that did not come from a person's feedback: a teacher's answer to a real
    prompt, a judge's preference between two answers, or a self-instructed prompt and answer."""
    __tablename__ = "training_records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(20), index=True)  # teacher | judge | self-instruct
    kind: Mapped[str] = mapped_column(String(10))  # sft | dpo
    lang: Mapped[str] = mapped_column(String(10))
    prompt: Mapped[list[Any]] = mapped_column()  # the conversation the answer follows
    chosen: Mapped[str] = mapped_column(Text)
    rejected: Mapped[str | None] = mapped_column(Text)  # dpo only
    origin: Mapped[str] = mapped_column(String(200), index=True)  # what it came from (message id, seed), to do it once
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | learned | dropped
    reason: Mapped[str] = mapped_column(Text, default="")  # why it was dropped
    teacher: Mapped[str] = mapped_column(String(200), default="")
    version_id: Mapped[str | None] = mapped_column(String(200))  # the version that learned it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Memory(Base):
    """What a correction teaches, kept for retrieval at answer time: the question it answers and
    the corrected answer. Who may see it follows its feedback's state (learning/memory.py)."""
    __tablename__ = "memories"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id", ondelete="CASCADE"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    lang: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
