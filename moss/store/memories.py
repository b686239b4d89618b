"""Memories in the store (mixed into Store): one per correction, written with it, listed with
the state of its feedback, which decides who may see it (learning/memory.py)."""

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from moss.lang import detect
from moss.store.schema import Feedback, FeedbackEvent, Memory, Message, User


@dataclass
class Remembered:
    """A memory with its feedback's state and author: what retrieval and listings need."""
    memory: Memory
    state: str
    reason: str
    learned_in: str | None
    unlearned_in: str | None
    author: str


class MemoryStore:
    def memories(self, user_id: int | None = None, ids: set[int] | None = None,
                 feedback_ids: set[int] | None = None) -> list[Remembered]:
        """Memories, oldest first: all, one author's, by id or by their feedback's id."""
        with self.session() as s:
            stmt = (select(Memory, Feedback.state, Feedback.reason, Feedback.learned_in, Feedback.unlearned_in,
                           User.name).join(Feedback, Memory.feedback_id == Feedback.id)
                    .join(User, Memory.user_id == User.id))
            if user_id is not None:
                stmt = stmt.where(Memory.user_id == user_id)
            if ids is not None:
                stmt = stmt.where(Memory.id.in_(ids))
            if feedback_ids is not None:
                stmt = stmt.where(Memory.feedback_id.in_(feedback_ids))
            return [Remembered(*row) for row in s.execute(stmt.order_by(Memory.id))]

    def memory_stamp(self) -> tuple:
        """Changes whenever a memory is added, edited or removed, or any feedback changes state:
        two equal stamps mean retrieval can keep its index."""
        with self.session() as s:
            events = s.scalar(select(func.max(FeedbackEvent.id)))
            count, newest = s.execute(select(func.count(Memory.id), func.max(Memory.id))).one()
            return events, count, newest


def remember(s: Session, feedback: Feedback, message: Message) -> None:
    """Write or update the memory of a correction, in the caller's transaction; a correction of
    an answer that follows no question of the user's teaches nothing to retrieve."""
    parent = s.get(Message, message.parent_id) if message.parent_id else None
    if feedback.kind != "correction" or parent is None or parent.role != "user":
        return
    row = s.scalar(select(Memory).where(Memory.feedback_id == feedback.id))
    if row is None:
        row = Memory(feedback_id=feedback.id, user_id=feedback.user_id)
        s.add(row)
    row.question, row.answer, row.lang = parent.content, feedback.value["content"], detect(parent.content)
