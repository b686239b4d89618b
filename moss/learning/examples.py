"""What training is made of, as plain data: tokenized sequences, preference pairs, labelled
answers, and the hyperparameters. Free of torch, so the learning cycle and the server can name
them without loading the training stack."""

from dataclasses import dataclass, field


@dataclass(eq=False)
class Sequence:
    """One tokenized conversation; the loss covers tokens[answer_from:] (answer and end of turn)."""
    tokens: list[int]
    answer_from: int
    reference: float | None = None  # DPO/KTO: the answer's log-probability when its pair joined (computed once)


@dataclass
class Pair:
    """A preference: chosen and rejected answers to the same prompt (DPO)."""
    chosen: Sequence
    rejected: Sequence


@dataclass
class Labelled:
    """One answer marked desirable or not (KTO)."""
    sequence: Sequence
    good: bool


@dataclass
class Data:
    sft: list[Sequence] = field(default_factory=list)
    dpo: list[Pair] = field(default_factory=list)
    kto: list[Labelled] = field(default_factory=list)
    # The model's own answers to varied requests, mixed into every SFT batch: they hold its
    # behaviour elsewhere (formats, refusals, language) while the new items are learned.
    anchors: list[Sequence] = field(default_factory=list)
    # The base model's answers to well-known questions shaped like the taught ones: a few in
    # every SFT batch too, taken in turn from this smaller set, so each is seen every epoch.
    near: list[Sequence] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sft) + len(self.dpo) + len(self.kto) + len(self.anchors) + len(self.near)


@dataclass
class HyperParams:
    rank: int = 16
    alpha: int = 32
    learning_rate: float = 5e-4  # 1e-3 learned as well but cost general knowledge and code
    epochs: int = 4
    batch_size: int = 8
    anchors_per_batch: int = 6
    near_per_batch: int = 3  # of Data.near
    min_batches: int = 10  # per epoch: a handful of items is repeated, or a fact gets too few updates
    beta: float = 0.1  # DPO / KTO temperature
    seed: int = 0

    def label(self) -> str:
        return f"r{self.rank} lr{self.learning_rate:g} e{self.epochs}"
