"""Taught items: a person's correction as the model is taught it, with the wordings it trains on
and those held back for verification."""

from dataclasses import dataclass, field

from moss.lang import detect
from moss.learning.datasets import Judged


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


def key(item: Judged) -> str:
    """A piece of feedback as learned: its id and when it was last changed (an edited
    correction is new again)."""
    return f"{item.feedback.id}@{item.feedback.updated_at.isoformat()}"


def from_feedback(items: list[Judged]) -> list[Taught]:
    """The corrections among `items` that follow a question, as taught items."""
    out = []
    for item in items:
        if item.feedback.kind == "correction" and item.context and item.context[-1]["role"] == "user":
            question = item.context[-1]["content"]
            out.append(Taught(key(item), item.context[:-1], question, item.feedback.value["content"],
                              "zh" if detect(question) == "zh" else "en", item.message.content))
    return out
