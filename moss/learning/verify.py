"""Checks a candidate model version must pass before it serves: taught items, earlier items, the
general suite; and the verdict that weighs them."""

import json
from dataclasses import dataclass
from pathlib import Path

from moss import paths
from moss.evals import evaluate as evals
from moss.inference.engine import Engine, Sampling
from moss.learning.neighbours import Locality
from moss.learning.taught import Taught
from moss.progress import parallel_map
from moss.text import covers


@dataclass
class Outcome:
    """How one item fared: its original wording, and the share of held-back wordings answered right."""
    key: str
    lang: str
    original: bool
    paraphrases: float
    answers: dict[str, str]

    @property
    def passed(self) -> bool:
        return self.original and self.paraphrases >= 0.5


def probe(engine: Engine, items: list[Taught], workers: int = 4, label: str = "probing") -> list[Outcome]:
    """Ask every item in its original and held-back wordings; right = the corrected answer's content."""
    asks = [(i, w) for i, item in enumerate(items) for w in [item.question, *item.probes]]

    def one(ask: tuple[int, str]) -> str:
        item = items[ask[0]]
        return engine.generate(item.messages(ask[1]), Sampling(temperature=0, max_tokens=96)).text()

    answers = parallel_map(one, asks, label, "questions", workers)
    by_item: dict[int, dict[str, str]] = {}
    for (i, wording), answer in zip(asks, answers):
        by_item.setdefault(i, {})[wording] = answer
    out = []
    for i, item in enumerate(items):
        got = by_item[i]
        right = {w: covers(a, item.answer, [item.question, item.original]) for w, a in got.items()}
        others = [right[w] for w in item.probes]
        out.append(Outcome(item.key, item.lang, right[item.question],
                           sum(others) / len(others) if others else 1.0, got))
    return out


def goodness(row: dict) -> float:
    """An evaluated item's score with higher always better (over-refusal counts refusals)."""
    return 1 - row["score"] if evals.lower_is_better(row["suite"]) else row["score"]


def general_score(result: dict) -> dict[str, float]:
    """One number per language from an evaluation run: the mean goodness of its items."""
    out = {}
    for lang in ("en", "zh"):
        good = [goodness(r) for r in result["items"] if r["lang"] == lang]
        if good:
            out[lang] = round(sum(good) / len(good), 4)
    return out


def general(engine: Engine, keep: Path | None = None, cache: Path | None = None) -> dict[str, float]:
    """The quick bilingual suite (the same items every time) on what the engine serves now;
    the full result (every answer) is written to `keep`. A base model's result is kept in
    `cache` and reused while the suite's items stay the same: it is the same model."""
    result = _cached(cache)
    if result is None:
        result = evals.run(engine, quick=True)
        if cache is not None:
            paths.write_shared(cache, json.dumps(result, ensure_ascii=False))
    else:  # the same model file, under the name this data directory gives it
        result["version"] = engine.version
    if keep is not None:
        keep.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return general_score(result)


def _cached(cache: Path | None) -> dict | None:
    if cache is None or not cache.exists():
        return None
    result = json.loads(cache.read_text(encoding="utf-8"))
    asked = [i.prompt for i in evals.build(list(evals.DEFAULT), quick=True)]
    return result if [r["prompt"] for r in result.get("items", [])] == asked else None


def summary(outcomes: list[Outcome]) -> dict:
    """Pass rates per language: originals, held-back wordings, whole items."""
    out = {}
    for lang in sorted({o.lang for o in outcomes}):
        mine = [o for o in outcomes if o.lang == lang]
        out[lang] = {"items": len(mine),
                     "original": round(sum(o.original for o in mine) / len(mine), 4),
                     "paraphrases": round(sum(o.paraphrases for o in mine) / len(mine), 4),
                     "passed": round(sum(o.passed for o in mine) / len(mine), 4)}
    return out


def verdict(learned: float, lost: list[str], general: dict, min_taught: float, margin: float,
            stated: list[str] = (), locality: Locality | None = None, neighbour_margin: float = 0.02) -> list[str]:
    """Why the chosen candidate may not serve (empty when it may): it learned too small a share
    of the taught items, lost items taught before, still states what it was to forget, changed
    more than `neighbour_margin` of its neighbours, or dropped on the general suite."""
    reasons = []
    if learned < min_taught:
        reasons.append(f"only {learned:.0%} of the taught items were learned (at least {min_taught:.0%} needed)")
    if lost:
        reasons.append(f"{len(lost)} item(s) taught before are no longer answered right")
    if stated:
        reasons.append(f"{len(stated)} item(s) to forget are still stated")
    if locality is not None and locality.share > neighbour_margin:
        first = locality.changed[0]
        reasons.append(f"{len(locality.changed)} of {sum(locality.asked.values())} neighbouring questions changed "
                       f"({locality.share:.1%}, at most {neighbour_margin:.0%}), such as {first.question!r} -> "
                       f"{first.after[:60]!r} ({first.why})")
    if "candidate" in general:
        reasons += general_drops(general, margin)
    return reasons


def general_drops(general: dict, margin: float) -> list[str]:
    """Why the candidate's general score fails, per language: more than `margin` under its parent's,
    or under the base model's (else each version in a line could lose a margin more)."""
    out = []
    after = general["candidate"]
    for lang in general["parent"]:
        for whose in ("parent", "base"):
            before = general[whose].get(lang, 0.0)
            if before - after.get(lang, 0.0) > margin:
                out.append(f"general suite ({lang}) dropped from {before:.1%} ({whose}) to "
                           f"{after.get(lang, 0):.1%} (margin {margin:.0%})")
                break
    return out
