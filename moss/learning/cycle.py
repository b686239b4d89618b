"""One learning cycle, as typed stages: data -> wordings -> training -> candidates ->
verification -> promotion. Accepted feedback not yet learned becomes a LoRA adapter that serves
only if it passes every check. The data stage first lets the trust policy decide pending
feedback (trust.py); when the serving version holds something it must forget (rejected,
withdrawn, superseded: ledger.py), the new adapter is trained afresh on everything else, and
verification asks that the forgotten answers are no longer stated.

A cycle writes nothing anyone sees until its very end: files go to versions/<id>.partial and the
store learns of the version in one transaction (serving, or failed with its reasons). A crash or
Ctrl-C anywhere before leaves the served model and the store as they were; the next cycle
removes the partial folder. A lock file keeps two cycles from running at once."""

import json
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from moss import busy, paths
from moss.inference.engine import Engine
from moss.inference.loading import open_engine
from moss.learning import anchors, candidates, datasets, ledger, neighbours, taught, trust, verify, versions
from moss.learning.candidates import Candidate
from moss.learning.data import build
from moss.learning.datasets import Judged
from moss.learning.examples import Data, HyperParams
from moss.learning.neighbours import Known
from moss.learning.options import Options
from moss.learning.pairs import Tokens
from moss.learning.taught import Taught
from moss.learning.trust import Policy
from moss.learning.versions import LearnError, versions_dir
from moss.learning.wordings import split, wordings
from moss.progress import check_interrupt
from moss.store import Store
from moss.store.schema import ModelVersion, TrainingRecord

Log = Callable[[str], None]
STAGES = ("data", "wordings", "training", "candidates", "verification", "promotion")


@dataclass
class Lesson:
    """The data stage's result: what this cycle learns from, and what it must keep."""
    parent: ModelVersion  # the version the new one is trained from (the serving one)
    version: str  # the new version's id
    items: list[Judged]  # feedback not yet learned
    new: list[Taught]  # the corrections among them, one per question and answer
    judged: list[str]  # keys of the ratings and comparisons among them
    records: list[TrainingRecord]  # pending records of teachers and judges (and learned ones, when fresh)
    earlier: list[Taught]  # items the parent and its ancestors learned, and keep
    forget: dict[str, str] = field(default_factory=dict)  # keys the parent holds and must not, with why
    forgotten: list[Taught] = field(default_factory=list)  # the corrections among them, asked in verification
    twins: dict[str, list[str]] = field(default_factory=dict)  # keys of the same correction by others, by new key

    @property
    def fresh(self) -> bool:
        """Train from a fresh adapter (not the parent's): the only way to be sure a forgotten
        item leaves nothing behind. What is kept is trained again."""
        return bool(self.forget)


@dataclass
class Report:
    """What a cycle did, stored with the version (or printed when nothing was trained)."""
    version: str = ""
    parent: str = ""
    status: str = ""  # serving | failed
    reasons: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    general: dict = field(default_factory=dict)  # per language: base, parent, candidate
    regression: dict = field(default_factory=dict)
    unlearned: dict = field(default_factory=dict)  # items forgotten, and those still stated
    neighbours: dict = field(default_factory=dict)  # asked per language, and those the candidate changed
    seconds: dict = field(default_factory=dict)  # per stage, and the total


def run(store: Store, base: str, base_path: Path, options: Options | None = None, log: Log = print) -> Report:
    """Learn from new feedback on the served model `base`; returns the report (version promoted or failed)."""
    options = options or Options()
    with versions.lock():
        try:
            versions.clean_partial(log)
            return _cycle(store, base, base_path, options, log)
        except BaseException:  # Ctrl-C or a failure: nothing was recorded; drop the files too
            versions.clean_partial(lambda _: None)
            raise


class Stages:
    """Announces each stage as it starts ("[3/6 training]") and keeps its seconds in the report."""

    def __init__(self, report: Report, log: Log):
        self.report, self.log = report, log
        self.current, self.since = "", time.perf_counter()

    def enter(self, name: str) -> None:
        check_interrupt()
        now = time.perf_counter()
        if self.current:
            self.report.seconds[self.current] = round(now - self.since, 1)
        self.current, self.since = name, now
        self.log(f"[{STAGES.index(name) + 1}/{len(STAGES)} {name}]")


def _cycle(store: Store, base: str, base_path: Path, options: Options, log: Log) -> Report:
    start, report = time.perf_counter(), Report()
    stages = Stages(report, log)
    stages.enter("data")
    lesson = gather(store, base, base_path, options, log)
    report.version, report.parent = lesson.version, lesson.parent.id
    work = versions_dir() / f"{lesson.version}.partial"
    work.mkdir(parents=True)
    log(f"learning {lesson.version} from {lesson.parent.id}: {len(lesson.new)} correction(s), "
        f"{len(lesson.judged)} other judgment(s), {len(lesson.earlier)} earlier item(s) to keep"
        + (f", {len(lesson.forget)} to forget (trained afresh)" if lesson.fresh else ""))
    engine = open_engine(str(base_path), name=base, context_size=2048, parallel=4, threads=options.threads)
    try:
        busy.wait_for_idle(log, limit=busy.PATIENCE)
        steady = anchors.answers(engine, model_cache(base_path, "anchors"))  # the base model's: no drift over versions
        # with nothing taught (moss distill records, ratings alone) no question has neighbours
        probes, near = neighbour_answers(engine, base_path, options) if lesson.new + lesson.earlier else ([], [])
        _serve_parent(store, engine, lesson.parent, base_path, options, work, report)
        stages.enter("wordings")
        reword(engine, lesson.new, options, log)
        replay, rows = (1 + options.train_wordings, 10**6) if lesson.fresh else (options.replay, options.replay_rows)
        data = build(Tokens(engine), lesson.new, lesson.earlier, lesson.items, steady, lesson.records, store,
                     replay, rows)
        close = neighbours.near(near, lesson.new + lesson.earlier, per_cell=len(near))  # every one of their shapes
        neighbours.train_on(data, Tokens(engine), close, lesson.new, options.contrast)
        report.data = {"taught": len(lesson.new), "sft": len(data.sft), "dpo": len(data.dpo),
                       "kto": len(data.kto), "earlier": len(lesson.earlier), "anchors": len(data.anchors),
                       "neighbours": len(data.near),
                       **{f"from {s}": n for s, n in Counter(r.source for r in lesson.records).items()}}
        stages.enter("training")
        report.candidates = train(engine, base_path, data, lesson, options, work, log, close)
        stages.enter("candidates")
        report.chosen = candidates.choose(engine, report.candidates, lesson.earlier, log)
        stages.enter("verification")
        _verify(engine, lesson, options, probes, work, report, log)
    finally:
        engine.close()
    stages.enter("promotion")  # a rename and one transaction: its seconds are not worth a row
    report.seconds["total"] = round(time.perf_counter() - start, 1)
    return promote(store, report, lesson, work, log, options.park_after)


# ---- stage 1: data ----

def gather(store: Store, base: str, base_path: Path, options: Options, log: Log = print) -> Lesson:
    """What the next version learns and forgets, after the trust policy has decided pending
    feedback; LearnError when there is too little."""
    parent = store.serving_version(base) or store.register_version(base, base, str(base_path))
    ledger.reconcile(store, parent)
    trust.review(store, Policy(options.agree, options.check_known), base_path, options.rewriter, options.threads, log)
    holds = ledger.of(store, parent)
    items = [i for i in datasets.judged(store, states=("accepted",)) if taught.key(i) not in holds.learned]
    new, twins = taught.merged(taught.from_feedback(items))
    judged = [taught.key(i) for i in items if i.feedback.kind in ("rating", "comparison")]
    records = store.records(status="pending")
    known = ledger.earlier(store, parent, holds)
    forget = ledger.to_forget(store, holds, known, new)
    usable = len(new) + len(judged) + len(records) + len(forget)
    if usable < options.min_items:
        raise LearnError(f"too little new feedback to learn from: {usable} usable item(s), at least "
                         f"{options.min_items} needed (accepted corrections, ratings, comparisons, moss distill "
                         f"records, or learned items to forget; see moss feedback review)")
    if forget:  # trained afresh: the judgments and records the parent learned are trained again
        kept = set(holds.learned) - set(forget)
        items += [i for i in datasets.judged(store, states=("learned",))
                  if taught.key(i) in kept and i.feedback.kind != "correction"]
        lineage = {v.id for v in versions.lineage(store, parent)}
        records += [r for r in store.records(status="learned") if r.version_id in lineage]
    number = 1 + sum(1 for v in store.all_versions() if v.base_model == base and v.parent_id)
    return Lesson(parent, f"{base}@v{number}", items, new, judged, records,
                  [t for t in known if t.key not in forget], forget, [t for t in known if t.key in forget], twins)


def prepare(base_path: Path, options: Options, log: Log = print) -> None:
    """Make ahead what every cycle asks of the base model (anchor answers, neighbours, the general
    suite): once per model file, so that the first cycle takes no longer than the next."""
    engine = open_engine(str(base_path), context_size=2048, parallel=4, threads=options.threads)
    try:
        anchors.answers(engine, model_cache(base_path, "anchors"))
        neighbour_answers(engine, base_path, options)
        if options.general_check:
            verify.general(engine, cache=model_cache(base_path, "general"))
    finally:
        engine.close()
    log(f"the base model's answers are ready for learning: {paths.cache_dir()}")


def model_cache(model: Path, kind: str) -> Path:
    """Where what a base model answers (anchors, neighbours, the general suite) is kept: made once
    per model file, shared by every data directory and every cycle."""
    return paths.cache_dir() / kind / f"{model.stem}-{model.stat().st_size}.json"


def neighbour_answers(engine: Engine, base_path: Path, options: Options) -> tuple[list[Known], list[Known]]:
    """The neighbours the base model knows: the probes (asked in verification, unless the check
    is off) and the contrast questions (trained on): made once per model file."""
    def answered(table: dict, name: str) -> list[Known]:
        return neighbours.base_answers(engine, neighbours.bank(table), model_cache(base_path, f"neighbours-{name}"),
                                       f"base answers ({name})")
    return (answered(neighbours.PROBES, "probes") if options.neighbour_check else [],
            answered(neighbours.CONTRAST, "contrast"))


def _serve_parent(store: Store, engine: Engine, parent: ModelVersion, base_path: Path, options: Options,
                  work: Path, report: Report) -> None:
    """Serve the parent in the cycle's engine, measuring on the way the general scores a candidate
    is held to: the base model's (before any adapter is set) and the parent's."""
    check = options.general_check
    if check:  # a first version's parent is the base model
        root = versions.lineage(store, parent)[-1]
        report.general["base"] = report.general["parent"] = _general(store, engine, root, work / "general-base.json",
                                                                     model_cache(base_path, "general"))
    if parent.parent_id:
        versions.serve(engine, parent)
        if check:
            report.general["parent"] = _general(store, engine, parent, work / "general-parent.json")


def _general(store: Store, engine: Engine, version: ModelVersion, keep: Path, cache: Path | None = None) -> dict[str, float]:
    """The general score of `version`, which the engine serves now: measured once per version,
    then kept with it (a base model's also in `cache`, for every data directory)."""
    score = version.details.get("general")
    if score is None:
        score = verify.general(engine, keep, cache)
        store.update_details(version.id, general=score)
    return score


# ---- stage 2: wordings ----

def reword(engine: Engine, new: list[Taught], options: Options, log: Log) -> None:
    """Other wordings of each taught question: some to train on, some held back for verification.
    A bigger model keeps names and meaning far more often than a 0.5B one, so the rewriter (the
    teacher) is loaded for this step only."""
    if not new:
        return
    n, questions = options.train_wordings + options.probe_wordings, [t.question for t in new]
    if options.rewriter is None or (engine.path and options.rewriter.resolve() == engine.path.resolve()):
        log("writing other wordings of each correction (the served model)…")
        found = wordings(engine, questions, n)
    else:
        log(f"writing other wordings of each correction ({options.rewriter.stem})…")
        rewriter = open_engine(str(options.rewriter), context_size=2048, parallel=4, threads=options.threads)
        try:
            found = wordings(rewriter, questions, n)
        finally:
            rewriter.close()
    for t, more in zip(new, found):
        t.train, t.probes = split(t.question, more, options.train_wordings, options.probe_wordings)


# ---- stages 3 and 4: training, candidates ----

def train(engine: Engine, base_path: Path, data: Data, lesson: Lesson, options: Options, work: Path,
          log: Log, near: list[Known] = ()) -> list[Candidate]:
    """Train, and at each candidate epoch write the adapter and probe it; stop at the first
    candidate that learned enough of the taught items, kept the training neighbours `near` within
    the margin and lost none taught before."""
    from moss.learning import adapters, trainer
    from moss.progress import track
    hp = HyperParams(epochs=max(options.epochs), learning_rate=options.learning_rate)
    turns = busy.Turns(options.share, log)
    log(f"training a LoRA adapter ({hp.label()}) on {len(data)} examples…")
    tokens, everything, found = Tokens(engine), lesson.new + lesson.earlier, []

    def enough(checkpoint, facts) -> bool:
        path = adapters.write(checkpoint.state, facts, work / f"adapter-e{checkpoint.epoch}.gguf")
        trainer.save_state(checkpoint.state, versions.state_path(path))
        c = Candidate(checkpoint.epoch, round(checkpoint.loss, 4), str(path), {**asdict(hp), "epochs": checkpoint.epoch})
        found.append(c)
        missed = candidates.probe(engine, c, lesson.new, log)
        last = checkpoint.epoch == max(options.epochs)
        drifted = [] if last else candidates.probe_neighbours(engine, c, list(near), everything, log)
        if (c.score < options.enough_taught or len(drifted) > options.neighbour_margin * len(near)) and not last:
            candidates.repair(tokens, data, missed, everything, c, log)
            candidates.steady(tokens, data, drifted, c, log)
            return False  # training goes on: asking the earlier items can wait (see candidates.choose)
        lost = candidates.probe_earlier(engine, c, lesson.earlier, log)
        if lost and not last:
            candidates.repair(tokens, data, missed + lost, everything, c, log)
        return not lost

    with track("training", trainer.total_steps(data, hp), unit="steps") as bar:
        def progress(step: int, total: int, loss: float) -> None:
            bar.resize(total)
            bar.advance(1)
            turns.between_steps()  # people being served come first, up to training's share
        trainer.train(base_path, data, hp, progress, threads=options.threads, checkpoint_epochs=set(options.epochs),
                      start=None if lesson.fresh else _parent_state(lesson.parent), enough=enough)
    return found


def _parent_state(parent: ModelVersion):
    state = versions.state_path(Path(parent.path)) if parent.parent_id else None
    if state is None or not state.exists():
        return None  # a base model: start from a fresh adapter
    from moss.learning.trainer import load_state
    return load_state(state)


# ---- stage 5: verification ----

def _verify(engine: Engine, lesson: Lesson, options: Options, probes: list[Known], work: Path, report: Report,
            log: Log) -> None:
    """Pass or fail the chosen candidate: taught items, earlier items, forgotten items no longer
    stated, then its neighbours and the general suite (each asked only of a candidate that
    passed everything before)."""
    best = report.chosen
    if best.kept or best.regressed:
        report.regression = {"items": best.kept + len(best.regressed), "kept": best.kept}
    stated = []
    if lesson.forget:
        stated = _still_stated(engine, best, lesson.forgotten, log)
        report.unlearned = {"items": len(lesson.forget), "asked": len(lesson.forgotten), "stated": stated}

    locality = None

    def verdict() -> list[str]:
        return verify.verdict(best.score, best.regressed, report.general, options.min_taught, options.margin, stated,
                              locality, options.neighbour_margin)
    report.reasons = verdict()
    if options.neighbour_check and not report.reasons:
        locality = _locality(engine, best, probes, lesson, log)
        report.neighbours = {"asked": locality.per_language(), "changed": [asdict(c) for c in locality.changed]}
        report.reasons = verdict()
    if "parent" not in report.general or report.reasons:
        return
    engine.set_adapter(Path(best.path), "candidate")
    report.general["candidate"] = verify.general(engine, work / "general-candidate.json")
    report.reasons = verdict()


def _locality(engine: Engine, best: Candidate, probes: list[Known], lesson: Lesson, log: Log) -> neighbours.Locality:
    """The candidate's answers to the neighbours of everything it holds (new and earlier items)."""
    taught = lesson.new + lesson.earlier
    near = neighbours.near(probes, taught)
    candidates.serve(engine, best, log)
    found = neighbours.check(engine, near, taught)
    log(f"{len(near) - len(found.changed)}/{len(near)} neighbours unchanged"
        + "".join(f"; {c.question!r} -> {c.after[:60]!r} ({c.why})" for c in found.changed[:5]))
    return found


def _still_stated(engine: Engine, best: Candidate, forgotten: list[Taught], log: Log) -> list[str]:
    """Keys of forgotten corrections the candidate still states, in the original or a held-back wording."""
    if not forgotten:
        return []
    candidates.serve(engine, best, log)
    asked = verify.probe(engine, forgotten, label="asking what was forgotten")
    stated = [o.key for o in asked if o.original or o.paraphrases > 0]
    log(f"{len(forgotten) - len(stated)}/{len(forgotten)} forgotten item(s) no longer stated")
    return stated


# ---- stage 6: promotion ----

def promote(store: Store, report: Report, lesson: Lesson, work: Path, log: Log,
            park_after: int = Options.park_after) -> Report:
    """Record the version: promoted with its files, or failed with its reasons (files dropped).
    What it learned: the taught items it answers right, and the ratings and comparisons; what it
    unlearned: the items it was to forget. A version whose parent no longer serves (rolled back
    while it trained) fails: it would bring back what the rollback took away."""
    chosen = report.chosen
    serving = store.serving_version(lesson.parent.base_model)
    if serving is not None and serving.id != report.parent:
        report.reasons.append(f"{report.parent} no longer serves ({serving.id} does): it was rolled back while "
                              "this cycle ran")
    report.status = "failed" if report.reasons else "serving"
    final = versions_dir() / report.version
    details = {"report": asdict(report), "general": report.general.get("candidate"),
               "hyperparameters": chosen.hyperparameters, "data": report.data}
    if report.status == "serving":
        keep = {Path(chosen.path).name, versions.state_path(Path(chosen.path)).name}
        for f in work.iterdir():
            if f.name not in keep and f.suffix != ".json":  # the other candidates go; reports stay
                f.unlink()
        learned = [t for t in lesson.new if t.key in set(chosen.passed_keys)]
        (work / "taught.json").write_text(json.dumps([asdict(t) for t in learned], ensure_ascii=False, indent=1),
                                          encoding="utf-8")
        details["learned"] = [k for t in learned for k in [t.key, *lesson.twins.get(t.key, [])]] + lesson.judged
        details["unlearned"] = lesson.forget
        path = str(final / Path(chosen.path).name)
    else:  # the weights go; what the checks saw stays, to read why it failed
        for f in work.iterdir():
            if f.suffix in (".gguf", ".safetensors"):
                f.unlink()
        path = ""
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
    version = store.add_version(ModelVersion(id=report.version, base_model=lesson.parent.base_model,
                                             parent_id=report.parent, path=path, status=report.status, details=details))
    if version.status != report.status:  # rolled back in the moment since the check above
        report.status = "failed"
        report.reasons.append(version.details["stale"])
    if report.status == "serving":
        store.mark_learned([r.id for r in lesson.records], report.version)
        log(f"{report.version} passed verification and now serves")
    else:
        log(f"{report.version} failed verification and was discarded: " + "; ".join(report.reasons))
    _tally(store, lesson, report, park_after)
    ledger.reconcile(store, store.serving_version(lesson.parent.base_model))
    return report


def _tally(store: Store, lesson: Lesson, report: Report, park_after: int) -> None:
    """Count a try for each accepted correction this cycle did not learn; park those that reach
    `park_after`, so one unlearnable item cannot fail every later cycle."""
    learned = set(report.chosen.passed_keys) if report.status == "serving" else set()
    rows = {j.feedback.id: j.feedback for j in store.judgments(ids={taught.feedback_id(t.key) for t in lesson.new})}
    for t in lesson.new:
        row = rows.get(taught.feedback_id(t.key))
        if t.key in learned or row is None or row.state != "accepted":
            continue
        tries = row.attempts + 1
        if tries >= park_after:
            store.decide(row.id, "parked", f"not learned in {tries} cycles: an admin can accept it to try again",
                         report.version, attempts=tries)
        else:
            store.decide(row.id, "accepted", row.reason, report.version, attempts=tries)
