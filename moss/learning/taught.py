"""Taught items: a person's correction as the model is taught it, with the wordings it trains on
and those held back for verification."""

from dataclasses import dataclass, field
from datetime import datetime, timezone

from moss.lang import detect
from moss.learning.datasets import Judged
from moss.store.schema import Feedback
from moss.text import covers, normalize


@dataclass
class Taught:
    key: str  # which feedback taught it (id and time), so it is learned once
    context: list[dict]  # the conversation before the question (usually empty)
    question: str
    answer: str
    lang: str
    original: str = ""  # the answer it corrected
    train: list[str] = field(default_factory=list)  # other wordings used in training
    probes: list[str] = field(default_factory=list)  # other wordings never trained on

    def messages(self, wording: str) -> list[dict]:
        return [*self.context, {"role": "user", "content": wording}]


def key(item: Judged | Feedback) -> str:
    """A piece of feedback as learned: its id and when it was last changed (an edited
    correction is new again)."""
    feedback = item.feedback if isinstance(item, Judged) else item
    return f"{feedback.id}@{_utc(feedback.updated_at).isoformat()}"


def normal(key: str) -> str:
    """A key as key() writes it now: keys stored before were written with the time as the
    database returned it (with or without its UTC offset)."""
    feedback, _, stamp = key.partition("@")
    try:
        return f"{feedback}@{_utc(datetime.fromisoformat(stamp)).isoformat()}"
    except ValueError:
        return key


def _utc(t: datetime) -> datetime:
    """The same instant with no offset: SQLite returns times without one, PostgreSQL with."""
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def feedback_id(key: str) -> int:
    """The feedback a key was made from."""
    return int(key.split("@", 1)[0])


# Messages before the question a correction is taught (and stored, in the version's
# taught.json) with: the exchange a follow-up question may lean on, and no more of the conversation.
CONTEXT = 2


def from_feedback(items: list[Judged]) -> list[Taught]:
    """The corrections among `items` that follow a question, as taught items."""
    out = []
    for item in items:
        if item.feedback.kind == "correction" and item.context and item.context[-1]["role"] == "user":
            question = item.context[-1]["content"]
            out.append(Taught(key(item), item.context[:-1][-CONTEXT:], question, item.feedback.value["content"],
                              "zh" if detect(question) == "zh" else "en", item.message.content))
    return out


def merged(items: list[Taught]) -> tuple[list[Taught], dict[str, list[str]]]:
    """One item per question and answer: people who gave the same correction (as the trust
    policy asks) teach it once. Returns the items kept and, by kept key, the keys merged into it."""
    kept: list[Taught] = []
    twins: dict[str, list[str]] = {}
    for t in items:
        same = next((k for k in kept if k.context == t.context and normalize(k.question) == normalize(t.question)
                     and covers(t.answer, k.answer, [k.question]) and covers(k.answer, t.answer, [k.question])), None)
        if same is None:
            kept.append(t)
        else:
            twins.setdefault(same.key, []).append(t.key)
    return kept, twins
