"""The training data of one cycle: taught items in their wordings, earlier items replayed within
a budget, the base model's anchor answers, people's ratings and comparisons, and the records of
teachers and judges, all tokenized as the served engine sees them."""

from moss.learning import datasets
from moss.learning.datasets import Judged
from moss.learning.examples import Data, Labelled
from moss.learning.pairs import Tokens, pairs, states
from moss.learning.taught import Taught
from moss.store import Store
from moss.store.schema import TrainingRecord


def build(tokens: Tokens, new: list[Taught], earlier: list[Taught], items: list[Judged],
          anchors: list[tuple[str, str]], records: list[TrainingRecord], store: Store,
          replay: int, replay_rows: int) -> Data:
    data = Data()
    for t in new:
        data.sft += [tokens.sequence(t.messages(w), t.answer) for w in [t.question, *t.train]]
    for t, asked in replayed(new, earlier, replay, replay_rows):
        data.sft += [tokens.sequence(t.messages(w), t.answer) for w in asked]
    data.anchors = [tokens.sequence([{"role": "user", "content": q}], a) for q, a in anchors]
    taught = new + earlier
    for record in datasets.sft([i for i in items if i.feedback.kind == "rating"]):
        data.sft.append(tokens.sequence(record["messages"][:-1], record["messages"][-1]["content"]))
    for record in datasets.dpo(store, items):
        data.dpo += pairs(tokens, record["prompt"], record["chosen"][0]["content"],
                          record["rejected"][0]["content"], taught)
    for record in datasets.kto(store, [i for i in items if i.feedback.kind != "correction"]):
        answer = record["completion"][0]["content"]
        if record["label"] or not any(states(answer, t) for t in taught):  # no answer to contrast it with
            data.kto.append(Labelled(tokens.sequence(record["prompt"], answer), record["label"]))
    if len(data.kto) < 4:  # KTO's reference point needs a few answers to estimate
        data.kto = []
    for r in records:  # from teachers, judges and self-instruct (moss distill)
        if r.kind == "sft":
            data.sft.append(tokens.sequence(r.prompt, r.chosen))
        else:
            data.dpo += pairs(tokens, r.prompt, r.chosen, r.rejected, taught)
    return data


def replayed(new: list[Taught], earlier: list[Taught], replay: int, rows: int) -> list[tuple[Taught, list[str]]]:
    """The earlier items replayed in training, with their wordings, within `rows`: as many
    wordings each as fit, up to `replay` (original first), and when even one each is too many,
    the items whose questions share most with the new ones (those the new facts are likeliest
    to overwrite)."""
    if not earlier:
        return []
    each = max(1, min(replay, rows // len(earlier)))
    if len(earlier) > rows:
        asked = [_bigrams(t.question) for t in new]
        near = lambda t: max((len(_bigrams(t.question) & b) for b in asked), default=0)  # noqa: E731
        earlier = sorted(earlier, key=near, reverse=True)[:rows]
    return [(t, [t.question, *t.train][:each]) for t in earlier]


def _bigrams(text: str) -> set[str]:
    """Pairs of neighbouring characters, lower-cased: a likeness that needs no word splitting."""
    text = text.lower()
    return {text[i:i + 2] for i in range(len(text) - 1)}
