"""What the serving version holds: the feedback its lineage learned and unlearned, what it must
forget next (rejected, withdrawn, edited or superseded items), rolling back, and every piece of
feedback's state kept in step with all of it.

A version's details list the keys it learned and those it unlearned; its taught.json holds the
corrections it learned, as taught. Walking the lineage from the base model forward gives what
the serving model holds now."""

import json
from dataclasses import dataclass

from moss.learning import versions
from moss.learning.taught import Taught, feedback_id, key, normal
from moss.learning.versions import LearnError, versions_dir
from moss.store import Store
from moss.store.schema import ModelVersion
from moss.text import covers, normalize


@dataclass
class Ledger:
    learned: dict[str, str]  # key -> the version that learned it and still holds it
    unlearned: dict[str, str]  # key -> the version that removed it


def of(store: Store, version: ModelVersion) -> Ledger:
    """What `version` holds, walking its lineage from the base model forward."""
    learned: dict[str, str] = {}
    unlearned: dict[str, str] = {}
    for v in reversed(versions.lineage(store, version)):
        for k in map(normal, v.details.get("learned", [])):
            learned[k] = v.id
            unlearned.pop(k, None)
        for k in map(normal, v.details.get("unlearned", {})):
            learned.pop(k, None)
            unlearned[k] = v.id
    return Ledger(learned, unlearned)


def earlier(store: Store, version: ModelVersion, ledger: Ledger) -> list[Taught]:
    """The corrections `version` holds, as taught: the regression set, replayed in training."""
    out = []
    for v in versions.lineage(store, version):
        data = versions_dir() / v.id / "taught.json"
        if data.exists():
            for t in json.loads(data.read_text(encoding="utf-8")):
                item = Taught(**{**t, "key": normal(t["key"])})
                if item.key in ledger.learned:
                    out.append(item)
    return out


def to_forget(store: Store, ledger: Ledger, earlier: list[Taught], new: list[Taught]) -> dict[str, str]:
    """Keys the serving version holds but must not, with why: rejected, withdrawn (the feedback
    or its conversation deleted), edited since, or superseded by a new correction of the same
    question (replay and the regression set would otherwise defend the old answer against it)."""
    rows = {j.feedback.id: j.feedback for j in store.judgments(ids={feedback_id(k) for k in ledger.learned})}
    out = {}
    for k in ledger.learned:
        row = rows.get(feedback_id(k))
        if row is None:
            out[k] = "withdrawn: the feedback or its conversation was deleted"
        elif key(row) != k:
            out[k] = "replaced by its author's edit"
        elif row.state == "rejected":
            out[k] = row.reason
    for old in earlier:
        for t in new:
            if old.key not in out and _same_question(old, t) and not covers(t.answer, old.answer, [old.question]):
                out[old.key] = f"superseded by a later correction: {t.answer[:80]}"
    return out


def _same_question(old: Taught, new: Taught) -> bool:
    asked = normalize(new.question)
    return old.context == new.context and asked in {normalize(w) for w in [old.question, *old.train, *old.probes]}


def reconcile(store: Store, serving: ModelVersion) -> None:
    """Every piece of feedback's state as the serving lineage says: learned in vX; rejected and
    unlearned in vY; or held for review when the version that learned it was rolled back (an
    admin decides whether it is taught again, so a rollback sticks)."""
    ledger = of(store, serving)
    for j in store.judgments():
        f, k = j.feedback, key(j.feedback)
        if k in ledger.learned and f.state != "rejected":
            v = ledger.learned[k]
            if f.state != "learned" or f.learned_in != v:
                store.decide(f.id, "learned", f"learned in {v}", v, learned_in=v, unlearned_in=None)
        elif k in ledger.unlearned:
            v = ledger.unlearned[k]
            if f.unlearned_in != v:
                why = f.reason if f.state == "rejected" else _unlearned_reason(store, v, k)
                store.decide(f.id, "rejected", f"{why}; unlearned in {v}", v, unlearned_in=v)
        elif f.state == "learned":
            store.decide(f.id, "held", f"learned in {f.learned_in}, which was rolled back: an admin decides "
                                       "whether it is taught again", "rollback", learned_in=None)


def _unlearned_reason(store: Store, version_id: str, k: str) -> str:
    reasons = store.version(version_id).details.get("unlearned", {})
    return next((why for stored, why in reasons.items() if normal(stored) == k), "unlearned")


def rollback(store: Store, base: str, version_id: str | None = None) -> ModelVersion:
    """Serve an earlier version at once (the named one, or the serving version's parent); what
    the versions rolled back had learned is held for review instead of being taught again."""
    if version_id is None:
        current = store.serving_version(base)
        if current is None or not current.parent_id:
            raise LearnError(f"{base} serves its base model: there is nothing to roll back")
        version_id = current.parent_id
    version = store.promote(version_id)
    reconcile(store, version)
    return version
