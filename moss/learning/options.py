"""A learning cycle's settings, each with its one default: the cycle, the CLI and the admin API
all take theirs from here. Light to import (no torch, no evaluation data)."""

from dataclasses import dataclass
from pathlib import Path

from moss.learning.examples import HyperParams


@dataclass
class Options:
    """Every setting of a cycle, with its default: the CLI and the admin API take theirs from here."""
    train_wordings: int = 3  # other wordings of each taught question used in training
    rewriter: Path | None = None  # the model that writes them (the teacher when installed); None: the served one
    probe_wordings: int = 2  # held back, asked only in verification
    epochs: tuple[int, ...] = (2, 3)  # candidate versions: the adapter after each of these epochs
    learning_rate: float = HyperParams.learning_rate
    min_items: int = 1  # fewer taught/rated items than this: nothing is trained
    min_taught: float = 0.8  # share of newly taught items that must be learned
    # Share learned at which training stops early (below it the next candidate epoch runs). At
    # 0.95 one of 20 facts went unlearned and its unseen wordings fell under 90%; another epoch
    # costs about a minute since batches are grouped by length.
    enough_taught: float = 1.0
    margin: float = 0.05  # largest drop allowed on the general suite, per language
    replay: int = 4  # wordings replayed per item taught in earlier versions (all that were trained)
    # Replayed rows at most: past it each earlier item gets fewer wordings, then only the items
    # nearest the new questions are replayed (every one of them is still asked in verification).
    # Unbounded, replay grew by 80 rows (10 batches an epoch) with each cycle.
    replay_rows: int = 160
    threads: int | None = None
    general_check: bool = True
    # Locality (neighbours.py): well-known questions shaped like the taught ones must keep the
    # base model's right answers; a candidate that changes more than this share is not promoted.
    neighbour_check: bool = True
    neighbour_margin: float = 0.02
    # Contrast pairs per taught item ("the taught name is not the answer here", neighbours.py):
    # tried at 2 and 4 per item, they cost learning (taught items 100% -> 80-90%, unseen wordings
    # 100% -> 70-83%) and kept no more neighbours (bench/learn_settings.py): off by default.
    contrast: int = 0
    # The trust policy (trust.py): people who must give the same correction when none is
    # trusted, and whether corrections are checked against what the base model and teacher know.
    agree: int = 2
    check_known: bool = True
    park_after: int = 2  # cycles an accepted item may go unlearned before it is parked for review
    # Training's guaranteed share of the time while the server is busy (busy.Turns): training
    # otherwise waits for idle moments, and under steady traffic a cycle would never end.
    share: float = 0.25


def rising(epochs: list[int] | tuple[int, ...]) -> bool:
    """Whether candidate epochs are usable: whole numbers from 1, each above the one before."""
    return bool(epochs) and epochs[0] >= 1 and list(epochs) == sorted(set(epochs))
