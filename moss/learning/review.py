"""People's view of feedback and an admin's decisions: each item with its state, why, what it
judged and what the base model and the teacher answered, for the page, the API and
`moss feedback review`; accept and reject."""

from dataclasses import dataclass, field
from datetime import datetime

from moss.store import Store
from moss.store.database import Judgment
from moss.store.schema import FEEDBACK_STATES

ATTENTION = ("held", "parked", "pending")  # what an admin's review lists by default


@dataclass
class Entry:
    """One piece of feedback as its author and admins see it."""
    id: int
    kind: str
    state: str
    reason: str
    author: str
    message_id: str
    conversation_id: str
    question: str  # what was asked
    answer: str  # what Moss answered
    value: dict  # the judgment itself (a correction's content, a rating...)
    checks: dict = field(default_factory=dict)  # the base model's and the teacher's answers
    learned_in: str | None = None
    unlearned_in: str | None = None
    updated_at: datetime | None = None


def states(text: str) -> tuple[str, ...]:
    """States named comma-separated ("held,parked"), or () for "all"; ValueError naming the valid ones."""
    chosen = () if text == "all" else tuple(s.strip() for s in text.split(","))
    if set(chosen) - set(FEEDBACK_STATES):
        raise ValueError(f"takes {', '.join(FEEDBACK_STATES)} (comma-separated) or all, got '{text}'")
    return chosen


def entries(store: Store, states: tuple[str, ...] = (), user_id: int | None = None,
            ids: set[int] | None = None) -> list[Entry]:
    """Feedback as entries, newest first: in some states, by one author, or by id."""
    found = store.judgments(states, user_id, ids)
    asked = store.messages_by_id({j.message.parent_id for j in found if j.message.parent_id})
    return [_entry(j, asked.get(j.message.parent_id)) for j in reversed(found)]


def _entry(j: Judgment, question) -> Entry:
    f = j.feedback
    return Entry(f.id, f.kind, f.state, f.reason, j.author.name, j.message.id, j.message.conversation_id,
                 question.content if question is not None and question.role == "user" else "", j.message.content,
                 f.value, f.checks or {}, f.learned_in, f.unlearned_in, f.updated_at)


def accept(store: Store, feedback_id: int, who: str) -> Entry:
    """Learn it: an admin's review overrules every automatic check (and a park)."""
    store.decide(feedback_id, "accepted", f"accepted by {who}", who, attempts=0)
    return entries(store, ids={feedback_id})[0]


def reject(store: Store, feedback_id: int, who: str, why: str = "") -> Entry:
    """Never learn it; a serving version that learned it unlearns it in the next cycle."""
    reason = f"rejected by {who}" + (f": {why}" if why else "")
    store.decide(feedback_id, "rejected", reason, who)
    return entries(store, ids={feedback_id})[0]
