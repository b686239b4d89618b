"""Training datasets from people's feedback: SFT, DPO, KTO and ShareGPT records.

- SFT: a 👍 answer, or a person's correction, after its conversation.
- DPO: a correction over the original; the picked answer of a comparison over the other;
  a 👍 answer over a 👎 answer to the same context.
- KTO: single answers labelled good (👍) or bad (👎, flagged, or both bad in a comparison).
- ShareGPT: the SFT records in ShareGPT's {"conversations": [{"from", "value"}]} form."""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from moss.lang import detect
from moss.store import Store
from moss.store.schema import FEEDBACK_STATES, Feedback, Message

FORMATS = ("sft", "dpo", "kto", "sharegpt")


@dataclass
class Judged:
    """One piece of feedback with what it judged."""
    feedback: Feedback
    message: Message
    context: list[dict]  # the conversation before the answer

    @property
    def lang(self) -> str:
        asked = [m["content"] for m in self.context if m["role"] == "user"]
        return detect(asked[-1] if asked else self.message.content)


def judged(store: Store, since: datetime | None = None, lang: str | None = None,
           states: tuple[str, ...] = ()) -> list[Judged]:
    """Feedback with its answer and conversation (since a time, in one language, in some states)."""
    contexts: dict[str, list[dict]] = {}  # by parent id: siblings share their context
    items = []
    for feedback, message in store.all_feedback(since, states):
        if message.parent_id not in contexts:
            contexts[message.parent_id] = store.context(message)
        item = Judged(feedback, message, contexts[message.parent_id])
        if lang is None or item.lang == lang:
            items.append(item)
    return items


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def sft(items: list[Judged]) -> list[dict]:
    out = []
    for item in items:
        f = item.feedback
        if f.kind == "rating" and f.value.get("rating") == "up":
            out.append({"messages": item.context + _assistant(item.message.content)})
        elif f.kind == "correction":
            out.append({"messages": item.context + _assistant(f.value["content"])})
    return out


def dpo(store: Store, items: list[Judged]) -> list[dict]:
    out = []
    pair = lambda ctx, good, bad: {"prompt": ctx, "chosen": _assistant(good),  # noqa: E731
                                   "rejected": _assistant(bad)}
    others = store.messages_by_id({i.feedback.value["other_message_id"] for i in items
                                   if i.feedback.kind == "comparison"})
    ups: dict[tuple, list[Judged]] = {}
    downs: dict[tuple, list[Judged]] = {}
    for item in items:
        f, m = item.feedback, item.message
        if f.kind == "correction" and f.value["content"] != m.content:
            out.append(pair(item.context, f.value["content"], m.content))
        elif f.kind == "comparison" and f.value["choice"] in ("this", "other"):
            other = others[f.value["other_message_id"]].content
            good, bad = (m.content, other) if f.value["choice"] == "this" else (other, m.content)
            out.append(pair(item.context, good, bad))
        elif f.kind == "rating":
            side = ups if f.value.get("rating") == "up" else downs
            side.setdefault((f.user_id, m.parent_id), []).append(item)
    for key, liked in ups.items():
        for good in liked:
            for bad in downs.get(key, []):
                if good.message.content != bad.message.content:
                    out.append(pair(good.context, good.message.content, bad.message.content))
    return out


def kto(store: Store, items: list[Judged]) -> list[dict]:
    out = []
    record = lambda ctx, text, label: {"prompt": ctx, "completion": _assistant(text), "label": label}  # noqa: E731
    others = store.messages_by_id({i.feedback.value["other_message_id"] for i in items
                                   if i.feedback.kind == "comparison"
                                   and i.feedback.value["choice"] == "both_bad"})
    for item in items:
        f, m = item.feedback, item.message
        if f.kind == "rating":
            out.append(record(item.context, m.content, f.value.get("rating") == "up"))
        elif f.kind == "flag":
            out.append(record(item.context, m.content, False))
        elif f.kind == "comparison" and f.value["choice"] == "both_bad":
            out.append(record(item.context, m.content, False))
            out.append(record(item.context, others[f.value["other_message_id"]].content, False))
    return out


def sharegpt(items: list[Judged]) -> list[dict]:
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    return [{"conversations": [{"from": names[m["role"]], "value": m["content"]} for m in r["messages"]]}
            for r in sft(items)]


def export(store: Store, fmt: str, since: datetime | None = None, lang: str | None = None) -> list[dict]:
    """The records of one format, from all feedback not rejected (since a time, in one language)."""
    items = judged(store, since, lang, states=tuple(s for s in FEEDBACK_STATES if s != "rejected"))
    if fmt == "sft":
        return sft(items)
    if fmt == "dpo":
        return dpo(store, items)
    if fmt == "kto":
        return kto(store, items)
    if fmt == "sharegpt":
        return sharegpt(items)
    raise ValueError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}")


def stats(store: Store) -> Counter:
    """Feedback counts by (kind, language); ratings split into up and down."""
    counts: Counter = Counter()
    for item in judged(store):
        f = item.feedback
        kind = f"rating {f.value.get('rating')}" if f.kind == "rating" else f.kind
        counts[(kind, item.lang)] += 1
    return counts
