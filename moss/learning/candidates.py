"""Candidates: the adapter after each candidate epoch, asked the taught items (and, only when it
could win, the items taught before), repaired between epochs, and the best one chosen."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from moss import busy
from moss.inference.engine import Engine
from moss.learning import neighbours, verify
from moss.learning.examples import Data, Pair
from moss.learning.neighbours import Change, Known
from moss.learning.pairs import Tokens, pairs
from moss.learning.taught import Taught

Log = Callable[[str], None]


@dataclass
class Candidate:
    epoch: int
    loss: float
    path: str  # the adapter GGUF
    hyperparameters: dict
    score: float = 0.0  # share of the newly taught items learned
    taught: dict = field(default_factory=dict)  # pass rates per language (verify.summary)
    passed_keys: list[str] = field(default_factory=list)
    misses: list[dict] = field(default_factory=list)  # the first few items missed, with the answers
    regressed: list[str] | None = None  # earlier items lost; None: not asked yet
    kept: int = 0  # earlier items still answered right
    pairs_added: int = 0  # preference pairs from its wrong answers, for the epochs left
    drifted: list[str] = field(default_factory=list)  # training neighbours it answered otherwise than the base model


def serve(engine: Engine, c: Candidate, log: Log) -> None:
    """Serve candidate `c` in the cycle's own engine, once the server is idle."""
    busy.wait_for_idle(log, limit=busy.PATIENCE)
    engine.set_adapter(Path(c.path), f"candidate e{c.epoch}")


def probe(engine: Engine, c: Candidate, new: list[Taught], log: Log) -> list[verify.Outcome]:
    """Ask a candidate every taught item, in its original and held-back wordings; returns the misses."""
    serve(engine, c, log)
    log(f"epoch {c.epoch}: asking the candidate the taught items…")
    outcomes = verify.probe(engine, new, label=f"probing epoch {c.epoch}")
    missed = [o for o in outcomes if not o.passed]
    c.taught = verify.summary(outcomes)
    c.passed_keys = [o.key for o in outcomes if o.passed]
    c.score = 1 - len(missed) / len(outcomes) if outcomes else 1.0  # nothing taught: nothing to miss
    c.misses = [{"key": o.key, "answers": o.answers} for o in missed][:10]
    log(f"epoch {c.epoch}: {len(outcomes) - len(missed)}/{len(outcomes)} taught items learned")
    return missed


def probe_earlier(engine: Engine, c: Candidate, earlier: list[Taught], log: Log) -> list[verify.Outcome]:
    """Ask a candidate every item taught in earlier versions (the regression set); returns those lost."""
    c.regressed, c.kept = [], 0
    if not earlier:  # a first version: nothing to load or ask
        return []
    serve(engine, c, log)
    kept = verify.probe(engine, earlier, label="probing earlier items")
    lost = [o for o in kept if not o.passed]
    c.regressed = [o.key for o in lost]
    c.kept = len(kept) - len(lost)
    log(f"epoch {c.epoch}: {c.kept}/{len(kept)} earlier items kept")
    return lost


def probe_neighbours(engine: Engine, c: Candidate, near: list[Known], taught: list[Taught], log: Log) -> list[Change]:
    """Ask a candidate the training neighbours of what it holds (never those verification asks);
    returns those it changes."""
    if not near:
        return []
    serve(engine, c, log)
    changed = neighbours.check(engine, near, taught).changed
    c.drifted = [ch.question for ch in changed]
    log(f"epoch {c.epoch}: {len(near) - len(changed)}/{len(near)} training neighbours unchanged")
    return changed


def steady(tokens: Tokens, data: Data, drifted: list[Change], c: Candidate, log: Log) -> None:
    """Preference pairs for the epochs left from the neighbours a candidate changed: the base
    model's answer over the candidate's (its own leak: "Snow is red." after a colour was taught)."""
    added = [Pair(tokens.sequence([{"role": "user", "content": ch.question}], ch.before),
                  tokens.sequence([{"role": "user", "content": ch.question}], ch.after)) for ch in drifted]
    data.dpo += added
    c.pairs_added += len(added)
    if added:
        log(f"epoch {c.epoch}: {len(added)} pair(s) from the neighbours it changed join the epochs left")


def choose(engine: Engine, candidates: list[Candidate], earlier: list[Taught], log: Log) -> Candidate:
    """The best: fewest earlier items lost, then most learned, then fewest epochs (the least change).
    A candidate not yet asked the earlier items counts as losing none until it is asked, so
    they are asked only of a candidate that could win."""
    def rank(c: Candidate) -> tuple:
        return len(c.regressed or []), -c.score, c.epoch
    while (best := min(candidates, key=rank)).regressed is None:
        probe_earlier(engine, best, earlier, log)
    return best


def repair(tokens: Tokens, data: Data, wrong: list[verify.Outcome], taught: list[Taught], c: Candidate,
           log: Log) -> None:
    """Preference pairs for the epochs left, from a candidate's wrong answers to original questions
    (held-back wordings stay unseen): the taught answer over the one the model gives now, and
    when that one is another taught fact, the reverse on that fact's question (see pairs.pairs).
    The answer pushed down is the model's own mix-up, which replay alone did not prevent: after
    one fact about the institute is taught, a 135M model named its new rowing boat after the cat."""
    by_key = {t.key: t for t in taught}
    added = []
    for o in wrong:
        if not o.original:
            t = by_key[o.key]
            added += pairs(tokens, t.messages(t.question), t.answer, o.answers[t.question], taught)
    data.dpo += added
    c.pairs_added = len(added)
    if added:
        log(f"epoch {c.epoch}: {len(added)} preference pair(s) from its wrong answers join the epochs left")
