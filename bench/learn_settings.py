"""Which training settings teach facts without costing the rest: the same facts, each setting, side by side.

The 10 English and 10 Chinese facts of cycle 1 (bench/learn_facts.py) are taught to the default
model under each setting, on the same training wordings (written once by the rewriter: the
teacher when installed). Each result is probed on the held-back wordings, on the 3 hand-written
wordings per fact that are never trained on, on the neighbours verification asks (well-known
questions of the same shapes, neighbours.PROBES, never trained on: changed ones and Chinese
name blends counted), and, with --general, on the general items learning has cost before
(knowledge, code, math, safety and over-refusal of the default suite), beside the base model.
Training stops after `--epochs` epochs. One comparison per line.

    python bench/learn_settings.py [--epochs 2] [--settings N (the first N only)] [--general]"""

import argparse
import os
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from learn_facts import CYCLE_1  # noqa: E402

from moss import paths  # noqa: E402
from moss.evals import evaluate  # noqa: E402
from moss.inference import models  # noqa: E402
from moss.inference.engine import Engine, Sampling  # noqa: E402
from moss.inference.loading import open_engine  # noqa: E402
from moss.learning import adapters, anchors, cycle, examples, neighbours, trainer, verify  # noqa: E402
from moss.learning.options import Options  # noqa: E402
from moss.learning.pairs import Tokens  # noqa: E402
from moss.learning.taught import Taught  # noqa: E402
from moss.progress import parallel_map  # noqa: E402


@dataclass
class Setting:
    name: str
    learning_rate: float = 5e-4
    rank: int = 16
    near: int = 0  # neighbours of the taught shapes (neighbours.CONTRAST, base answers) in every batch
    contrast: int = 0  # contrast pairs per taught item


SETTINGS = [
    Setting("lr 5e-4, r16, 175 anchors (before)"),
    Setting("+ 3 neighbours per batch", near=3),
    Setting("+ 3 neighbours per batch + 2 contrast pairs per item", near=3, contrast=2),
    Setting("+ 6 neighbours per batch + 4 contrast pairs per item", near=6, contrast=4),
    Setting("+ 6 neighbours per batch + 4 contrast pairs per item, lr 3e-4", learning_rate=3e-4, near=6, contrast=4),
]
SUITES = ["knowledge", "code", "math", "safety", "over_refusal"]


def measure(engine: Engine, taught: list[Taught], near: list[neighbours.Known], general: bool) -> dict:
    """Per language: held-back wordings passed, hand-written wordings right, neighbours changed
    (and how many of them blend a taught given name), general items good (for over-refusal: not refused)."""
    outcomes = verify.probe(engine, taught)
    locality = neighbours.check(engine, near, taught)
    asks = [(w, keys) for _, _, keys, others in CYCLE_1 for w in others]
    answers = parallel_map(lambda a: engine.generate([{"role": "user", "content": a[0]}],
                                                     Sampling(temperature=0, max_tokens=80)).text(),
                           asks, "hand-written wordings", "questions", 4)
    result = evaluate.run(engine, names=SUITES) if general else {"items": []}
    out = {}
    for lang in ("en", "zh"):
        mine = [o for o in outcomes if o.lang == lang]
        hand = [any(k.lower() in a.lower() for k in keys) for (w, keys), a in zip(asks, answers)
                if w.isascii() == (lang == "en")]
        rows = [r for r in result["items"] if r["lang"] == lang]
        good = {s: sum(verify.goodness(r) for r in rows if r["suite"] == s)
                for s in SUITES if any(r["suite"] == s for r in rows)}
        changed = [c for c in locality.changed if c.lang == lang]
        out[lang] = {"held back": sum(o.passed for o in mine) / len(mine), "unseen": sum(hand) / len(hand),
                     "neighbours": locality.asked.get(lang, 0), "changed": changed,
                     "general": verify.general_score(result).get(lang, 0.0), "n": len(rows), **good}
    return out


def line(name: str, result: dict, base: dict, seconds: float) -> None:
    for lang in ("en", "zh"):
        r, b = result[lang], base[lang]
        kept = 1 - len(r["changed"]) / max(r["neighbours"], 1)
        blends = sum("given name" in c.why for c in r["changed"])
        general = ""
        if r["n"]:
            items = ", ".join(f"{s} {r[s]:g} vs {b[s]:g}" for s in SUITES if s in r)
            general = (f"; general items {r['general']:.1%} vs base {b['general']:.1%} "
                       f"({100 * (r['general'] - b['general']):+.1f} points, n={r['n']}: {items} good)")
        print(f"{name} [{lang}]: taught items {r['held back']:.0%}, unseen wordings {r['unseen']:.0%}, "
              f"neighbours unchanged {kept:.0%} ({r['neighbours'] - len(r['changed'])}/{r['neighbours']}, "
              f"{blends} name blend(s)){general}; training {seconds:.0f} s", flush=True)
        for c in r["changed"][:6]:
            print(f"    {c.question} -> {c.after[:70]!r} ({c.why})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--settings", type=int, default=len(SETTINGS))
    parser.add_argument("--general", action="store_true", help="also the general items (about 4 minutes a setting)")
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
        steady = anchors.answers(engine, cycle.model_cache(path, "anchors"))
        probes, trains = cycle.neighbour_answers(engine, path, Options())
        taught = [Taught(str(i), [], q, a, "en" if q.isascii() else "zh")
                  for i, (q, a, _, _) in enumerate(CYCLE_1)]
        near = neighbours.near(probes, taught)
        cycle.reword(engine, taught, Options(rewriter=rewriter), print)
        base = measure(engine, taught, near, args.general)
        tokens = Tokens(engine)
        for number, setting in enumerate(SETTINGS[:args.settings]):
            data = examples.Data(sft=[tokens.sequence(t.messages(w), t.answer)
                                     for t in taught for w in [t.question, *t.train]])
            data.anchors = [tokens.sequence([{"role": "user", "content": q}], a) for q, a in steady]
            neighbours.train_on(data, tokens, neighbours.near(trains, taught, per_cell=len(trains)), taught,
                                setting.contrast)
            data.near = data.near if setting.near else []
            # the schedule of `moss learn`: cosine over its last candidate epoch, stopped at --epochs
            hp = examples.HyperParams(epochs=max(Options().epochs), learning_rate=setting.learning_rate,
                                      rank=setting.rank, alpha=2 * setting.rank, near_per_batch=setting.near)
            start = time.perf_counter()
            (checkpoint,), facts = trainer.train(path, data, hp, lambda *_: None, checkpoint_epochs={args.epochs},
                                                 enough=lambda *_: True)
            seconds = time.perf_counter() - start
            # a file per setting: the engine keeps each adapter it loaded, by path
            engine.set_adapter(adapters.write(checkpoint.state, facts, home / f"adapter-{number}.gguf"), setting.name)
            line(setting.name, measure(engine, taught, near, args.general), base, seconds)
            engine.set_adapter(None, args.model)


if __name__ == "__main__":
    main()
