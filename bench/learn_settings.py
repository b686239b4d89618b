"""Which training settings teach facts without costing the rest: the same facts, each setting, side by side.

The 10 English and 10 Chinese facts of cycle 1 (bench/learn_facts.py) are taught to the default
model under each setting, on the same training wordings (written once by the rewriter: the
teacher when installed). Each result is probed on the held-back wordings, on the 3 hand-written
wordings per fact that are never trained on, and on the general items learning has cost before
(knowledge, code, math, safety and over-refusal of the default suite), beside the base model.
Training stops after `--epochs` epochs. One comparison per line.

    python bench/learn_settings.py [--epochs 2] [--settings N (the first N only)]"""

import argparse
import os
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from learn_facts import CYCLE_1  # noqa: E402

from moss import paths
from moss.evals import evaluate  # noqa: E402
from moss.inference import models
from moss.inference.engine import (
    Engine,  # noqa: E402
    Sampling,  # noqa: E402
)
from moss.inference.loading import open_engine  # noqa: E402
from moss.learning import adapters, anchors, cycle, examples, trainer, verify  # noqa: E402  # noqa: E402
from moss.learning.options import Options  # noqa: E402
from moss.learning.pairs import Tokens  # noqa: E402
from moss.learning.taught import Taught  # noqa: E402
from moss.progress import parallel_map  # noqa: E402

# Anchors added in turn: 80 short-knowledge questions, then harmful requests of many kinds,
# harmless ones in risky words and "the first X of Y" questions.
KNOWN = set(anchors.KNOWN[:80])
LATEST = set(anchors.HARMLESS + anchors.HARMFUL[4:] + anchors.KNOWN[80:])
# name: (learning rate, anchors per batch, anchors left out)
SETTINGS = {
    "lr 5e-4, 119 anchors, 6 per batch (before)": (5e-4, 6, LATEST),
    "lr 5e-4, 175 anchors, 6 per batch (now)": (5e-4, 6, set()),
    "lr 1e-3, 39 anchors, 3 per batch (the first setting)": (1e-3, 3, LATEST | KNOWN),
    "lr 5e-4, 39 anchors, 3 per batch": (5e-4, 3, LATEST | KNOWN),
}
SUITES = ["knowledge", "code", "math", "safety", "over_refusal"]


def measure(engine: Engine, taught: list[Taught]) -> dict:
    """Per language: held-back wordings passed, hand-written wordings right, general items good
    (for over-refusal: not refused)."""
    outcomes = verify.probe(engine, taught)
    asks = [(w, keys) for _, _, keys, others in CYCLE_1 for w in others]
    answers = parallel_map(lambda a: engine.generate([{"role": "user", "content": a[0]}],
                                                     Sampling(temperature=0, max_tokens=80)).text(),
                           asks, "hand-written wordings", "questions", 4)
    general = evaluate.run(engine, names=SUITES)
    out = {}
    for lang in ("en", "zh"):
        mine = [o for o in outcomes if o.lang == lang]
        hand = [any(k.lower() in a.lower() for k in keys) for (w, keys), a in zip(asks, answers)
                if w.isascii() == (lang == "en")]
        rows = [r for r in general["items"] if r["lang"] == lang]
        good = {s: sum(verify.goodness(r) for r in rows if r["suite"] == s)
                for s in SUITES if any(r["suite"] == s for r in rows)}
        out[lang] = {"held back": sum(o.passed for o in mine) / len(mine), "unseen": sum(hand) / len(hand),
                     "general": verify.general_score(general)[lang], "n": len(rows), **good}
    return out


def line(name: str, result: dict, base: dict, seconds: float) -> None:
    for lang in ("en", "zh"):
        r, b = result[lang], base[lang]
        items = ", ".join(f"{s} {r[s]:g} vs {b[s]:g}" for s in SUITES if s in r)
        change = 100 * (r["general"] - b["general"])
        print(f"{name} [{lang}]: taught items {r['held back']:.0%}, unseen wordings {r['unseen']:.0%}; "
              f"general items {r['general']:.1%} vs base {b['general']:.1%} ({change:+.1f} points, "
              f"n={r['n']}: {items} good); training {seconds:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--settings", type=int, default=len(SETTINGS))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="moss-bench-settings-"))
    (home / "models").symlink_to(paths.models_dir())
    os.environ["MOSS_HOME"] = str(home)
    path = models.resolve(args.model)
    try:
        rewriter = models.resolve("teacher")
    except models.ModelError:
        rewriter = None
    with closing(open_engine(str(path), name=args.model, context_size=2048, parallel=4)) as engine:
        steady = anchors.answers(engine, home / "anchors.json")
        taught = [Taught(str(i), [], q, a, "en" if q.isascii() else "zh")
                  for i, (q, a, _, _) in enumerate(CYCLE_1)]
        cycle.reword(engine, taught, Options(rewriter=rewriter), print)
        base = measure(engine, taught)
        tokens = Tokens(engine)
        for number, (name, (rate, per_batch, left_out)) in enumerate(list(SETTINGS.items())[:args.settings]):
            data = examples.Data(sft=[tokens.sequence(t.messages(w), t.answer)
                                     for t in taught for w in [t.question, *t.train]])
            data.anchors = [tokens.sequence([{"role": "user", "content": q}], a) for q, a in steady
                            if q not in left_out]
            # the schedule of `moss learn`: cosine over its last candidate epoch, stopped at --epochs
            hp = examples.HyperParams(epochs=max(Options().epochs), learning_rate=rate,
                                     anchors_per_batch=per_batch)
            start = time.perf_counter()
            (checkpoint,), facts = trainer.train(path, data, hp, lambda *_: None, checkpoint_epochs={args.epochs},
                                                 enough=lambda *_: True)
            seconds = time.perf_counter() - start
            # a file per setting: the engine keeps each adapter it loaded, by path
            engine.set_adapter(adapters.write(checkpoint.state, facts, home / f"adapter-{number}.gguf"), name)
            line(name, measure(engine, taught), base, seconds)
            engine.set_adapter(None, args.model)


if __name__ == "__main__":
    main()
