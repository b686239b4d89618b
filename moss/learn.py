"""One learning cycle: feedback not yet learned -> datasets -> LoRA -> adapter GGUF -> verify -> promote or discard.

A cycle writes nothing anyone sees until its very end: files go to versions/<id>.partial and the
store learns of the version in one transaction (serving, or failed with its reasons). A crash or
Ctrl-C anywhere before leaves the served model and the store as they were; the next cycle
removes the partial folder. A lock file keeps two cycles from running at once."""

import fcntl
import json
import re
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Callable

from moss import anchors, cores, datasets, paths, verify
from moss.chat import with_system
from moss.datasets import Judged
from moss.eval_scorers import covers
from moss.lang import detect
from moss.llama_engine import LlamaCppEngine
from moss.paraphrase import split, wordings
from moss.schema import ModelVersion
from moss.store import Store
from moss.verify import Taught


class LearnError(Exception):
    """A cycle that cannot run (nothing to learn, another cycle running); the message says why."""


@dataclass
class Options:
    train_wordings: int = 3  # other wordings of each taught question used in training
    rewriter: Path | None = None  # the model that writes them (the teacher when installed); None: the served one
    probe_wordings: int = 2  # held back, asked only in verification
    epochs: tuple[int, ...] = (2, 3)  # candidate versions: the adapter after each of these epochs
    learning_rate: float = 5e-4  # 1e-3 learned as well but cost general knowledge and code
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


def rising(epochs: list[int] | tuple[int, ...]) -> bool:
    """Whether candidate epochs are usable: whole numbers from 1, each above the one before."""
    return bool(epochs) and epochs[0] >= 1 and list(epochs) == sorted(set(epochs))


@dataclass
class Report:
    """What a cycle did, stored with the version (or printed when nothing was trained)."""
    version: str = ""
    parent: str = ""
    status: str = ""  # serving | failed
    reasons: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    candidates: list[dict] = field(default_factory=list)
    chosen: dict = field(default_factory=dict)
    general: dict = field(default_factory=dict)
    regression: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)


def versions_dir() -> Path:
    path = paths.home() / "versions"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _lock() -> object:
    handle = open(versions_dir() / "learn.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise LearnError("another learning cycle is running; wait for it to finish") from None
    return handle


def _clean_partial(log: Callable[[str], None]) -> None:
    for partial in versions_dir().glob("*.partial"):
        log(f"removing {partial.name}, left by an interrupted cycle")
        shutil.rmtree(partial, ignore_errors=True)


# ---- what is taught ----

def _lineage(store: Store, version: ModelVersion) -> list[ModelVersion]:
    """A version and its ancestors, newest first."""
    out = [version]
    while out[-1].parent_id:
        out.append(store.version(out[-1].parent_id))
    return out


def _learned_keys(store: Store, parent: ModelVersion) -> set[str]:
    """Feedback the served version already learned (after a rollback, the rolled-back
    version's feedback is pending again)."""
    return {key for v in _lineage(store, parent) for key in v.details.get("learned", [])}


def _key(item: Judged) -> str:
    return f"{item.feedback.id}@{item.feedback.updated_at.isoformat()}"


def _taught(items: list[Judged]) -> list[Taught]:
    out = []
    for item in items:
        if item.feedback.kind == "correction" and item.context and item.context[-1]["role"] == "user":
            question = item.context[-1]["content"]
            out.append(Taught(_key(item), item.context[:-1], question, item.feedback.value["content"],
                              "zh" if detect(question) == "zh" else "en", item.message.content))
    return out


def _earlier(store: Store, parent: ModelVersion) -> list[Taught]:
    """Items learned by the parent and its ancestors: the regression set, and replayed in training."""
    out = []
    for version in _lineage(store, parent):
        data = versions_dir() / version.id / "taught.json"
        if data.exists():
            out += [Taught(**t) for t in json.loads(data.read_text(encoding="utf-8"))]
    return out


# ---- training data ----

class Tokens:
    """Training sequences tokenized exactly as the engine will see them."""

    def __init__(self, engine: LlamaCppEngine):
        self.engine = engine

    def sequence(self, messages: list[dict], answer: str):
        from moss.trainer import Sequence
        prompt = self.engine.encode(with_system(messages))
        return Sequence(prompt + self.engine.answer_tokens(answer), len(prompt))


def _data(tokens: Tokens, new: list[Taught], earlier: list[Taught], items: list[Judged],
          anchors: list[tuple[str, str]], records: list, store: Store, options: Options):
    from moss.trainer import Data, Labelled, Pair
    data = Data()
    for t in new:
        data.sft += [tokens.sequence(t.messages(w), t.answer) for w in [t.question, *t.train]]
    for t, wordings in _replayed(new, earlier, options):
        data.sft += [tokens.sequence(t.messages(w), t.answer) for w in wordings]
    data.anchors = [tokens.sequence([{"role": "user", "content": q}], a) for q, a in anchors]
    taught = new + earlier
    for record in datasets.sft([i for i in items if i.feedback.kind == "rating"]):
        data.sft.append(tokens.sequence(record["messages"][:-1], record["messages"][-1]["content"]))
    for record in datasets.dpo(store, items):
        data.dpo += _pairs(tokens, record["prompt"], record["chosen"][0]["content"],
                           record["rejected"][0]["content"], taught)
    for record in datasets.kto(store, [i for i in items if i.feedback.kind != "correction"]):
        answer = record["completion"][0]["content"]
        if record["label"] or not any(_states(answer, t) for t in taught):  # no answer to contrast it with
            data.kto.append(Labelled(tokens.sequence(record["prompt"], answer), record["label"]))
    if len(data.kto) < 4:  # KTO's reference point needs a few answers to estimate
        data.kto = []
    for r in records:  # from teachers, judges and self-instruct (moss distill)
        if r.kind == "sft":
            data.sft.append(tokens.sequence(r.prompt, r.chosen))
        else:
            data.dpo += _pairs(tokens, r.prompt, r.chosen, r.rejected, taught)
    return data


def _replayed(new: list[Taught], earlier: list[Taught], options: Options) -> list[tuple[Taught, list[str]]]:
    """The earlier items replayed in training, with their wordings, within `options.replay_rows`:
    as many wordings each as fit (original first), and when even one each is too many, the items
    whose questions share most with the new ones (those the new facts are likeliest to overwrite)."""
    if not earlier:
        return []
    each = max(1, min(options.replay, options.replay_rows // len(earlier)))
    if len(earlier) > options.replay_rows:
        asked = [_bigrams(t.question) for t in new]
        near = lambda t: max((len(_bigrams(t.question) & b) for b in asked), default=0)  # noqa: E731
        earlier = sorted(earlier, key=near, reverse=True)[:options.replay_rows]
    return [(t, [t.question, *t.train][:each]) for t in earlier]


def _bigrams(text: str) -> set[str]:
    """Pairs of neighbouring characters, lower-cased: a likeness that needs no word splitting."""
    text = text.lower()
    return {text[i:i + 2] for i in range(len(text) - 1)}


def _states(answer: str, t: Taught) -> bool:
    """Whether an answer states what a taught item answers."""
    return covers(answer, t.answer, [t.question, t.original])


def _pairs(tokens: Tokens, prompt: list[dict], chosen: str, rejected: str, taught: list[Taught]) -> list:
    """A preference pair, and, when its rejected answer states a taught fact, the reverse on that
    fact's own question. A model that has learned facts about a place gives them to neighbouring
    questions ("现任院长是韩青禾", 韩青禾 being the first director taught a cycle before: 17 of the
    20 corrected answers in bench/learn.py's second cycle). The pair pushes that answer down, and
    with it the fact where it was taught; the reverse pair ("第一任院长是韩青禾" over "第一任院长是
    苏砚秋") teaches the model to tell the two questions apart instead of forgetting either. One
    reverse pair, on the original question: with a second on a trained wording the old fact won
    instead (bench/learn.py: the current director was never learned, answered 韩青禾)."""
    from moss.trainer import Pair
    pairs = [Pair(tokens.sequence(prompt, chosen), tokens.sequence(prompt, rejected))]
    for t in taught:
        if _states(rejected, t) and not _states(chosen, t):
            own = t.messages(t.question)
            pairs.append(Pair(tokens.sequence(own, t.answer),
                              tokens.sequence(own, _swapped(t.answer, rejected, chosen))))
    return pairs


def _swapped(answer: str, rejected: str, chosen: str) -> str:
    """`answer` with the part where `rejected` and `chosen` differ swapped for the chosen one's:
    the taught answer as the mixed-up model would give it. When that part is not in `answer`
    (the rejected answer says it in other words), the chosen answer whole."""
    a, b = _pieces(rejected), _pieces(chosen)
    ops = [op for op in SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]
    old = "".join(a[ops[0][1]:ops[-1][2]]).strip() if ops else ""
    new = "".join(b[ops[0][3]:ops[-1][4]]).strip() if ops else ""
    return answer.replace(old, new) if old and new and old in answer else chosen


def _pieces(text: str) -> list[str]:
    """Words, Chinese characters, spaces and marks, in order: what a swap is made of."""
    return re.findall(r"[A-Za-z0-9'’-]+|\s+|.", text)


# ---- the cycle ----

def run(store: Store, base: str, base_path: Path, options: Options | None = None,
        log: Callable[[str], None] = print) -> Report:
    """Learn from new feedback on the served model `base`; returns the report (version promoted or failed)."""
    options = options or Options()
    lock = _lock()
    try:
        _clean_partial(log)
        return _cycle(store, base, base_path, options, log)
    except BaseException:  # Ctrl-C or a failure: nothing was recorded; drop the files too
        _clean_partial(lambda _: None)
        raise
    finally:
        lock.close()


def _cycle(store: Store, base: str, base_path: Path, options: Options, log: Callable[[str], None]) -> Report:
    clock = time.perf_counter()
    report = Report()
    parent = store.serving_version(base) or store.register_version(base, base, str(base_path))
    learned = _learned_keys(store, parent)
    items = [i for i in datasets.judged(store) if _key(i) not in learned and i.message.role == "assistant"]
    new = _taught(items)
    judged = [_key(i) for i in items if i.feedback.kind in ("rating", "comparison")]
    records = store.records(status="pending")
    usable = len(new) + len(judged) + len(records)
    if usable < options.min_items:
        raise LearnError(f"too little new feedback to learn from: {usable} usable item(s), at least "
                         f"{options.min_items} needed (corrections, ratings, comparisons or moss distill records)")
    earlier = _earlier(store, parent)
    number = 1 + sum(1 for v in store.all_versions() if v.base_model == base and v.parent_id)
    report.version, report.parent = f"{base}@v{number}", parent.id
    work = versions_dir() / f"{report.version}.partial"
    work.mkdir(parents=True)
    log(f"learning {report.version} from {parent.id}: {len(new)} correction(s), "
        f"{len(items) - len(new)} other judgment(s), {len(earlier)} earlier item(s) to keep")

    engine = LlamaCppEngine(base_path, base, context_size=2048, parallel=4, threads=options.threads)
    try:
        cores.wait_for_idle(log)
        # the base model's answers (not the parent's): no drift builds up over versions
        steady = anchors.answers(engine, versions_dir() / base / "anchors.json")
        _serve_parent(store, engine, parent, options, work, report)
        extra = _reworded(engine, [t.question for t in new], options, log)
        for t, found in zip(new, extra):
            t.train, t.probes = split(t.question, found, options.train_wordings, options.probe_wordings)
        data = _data(Tokens(engine), new, earlier, items, steady, records, store, options)
        report.data = {"taught": len(new), "sft": len(data.sft), "dpo": len(data.dpo), "kto": len(data.kto),
                       "earlier": len(earlier), "anchors": len(steady),
                       **{f"from {s}": n for s, n in Counter(r.source for r in records).items()}}
        report.seconds["prepare"] = round(time.perf_counter() - clock, 1)
        _train(engine, base_path, data, parent, new, earlier, options, work, report, log)
        report.seconds["train"] = round(time.perf_counter() - clock - report.seconds["prepare"], 1)
        _judge(engine, options, work, report)
    finally:
        engine.close()
    report.seconds["total"] = round(time.perf_counter() - clock, 1)
    return _finish(store, report, new, judged, records, base, work, log)


def _reworded(engine: LlamaCppEngine, questions: list[str], options: Options,
              log: Callable[[str], None]) -> list[list[str]]:
    """Other wordings of each taught question. A bigger model keeps names and meaning far more
    often than a 0.5B one, so the rewriter (the teacher) is loaded for this step only."""
    n = options.train_wordings + options.probe_wordings
    if not questions:
        return []
    if options.rewriter is None or options.rewriter.resolve() == engine.path.resolve():
        log("writing other wordings of each correction (the served model)…")
        return wordings(engine, questions, n)
    log(f"writing other wordings of each correction ({options.rewriter.stem})…")
    with LlamaCppEngine(options.rewriter, options.rewriter.stem, context_size=2048, parallel=4,
                        threads=options.threads) as rewriter:
        return wordings(rewriter, questions, n)


def _serve_parent(store: Store, engine: LlamaCppEngine, parent: ModelVersion, options: Options, work: Path,
                  report: Report) -> None:
    """Serve the parent in the cycle's engine, measuring on the way the general scores a candidate
    is held to: the base model's (before any adapter is set) and the parent's."""
    check = options.general_check
    if check:  # a first version's parent is the base model
        root = _lineage(store, parent)[-1]
        report.general["base"] = report.general["parent"] = _general(store, engine, root, work / "general-base.json")
    if parent.parent_id:
        engine.set_adapter(Path(parent.path), parent.id)
        if check:
            report.general["parent"] = _general(store, engine, parent, work / "general-parent.json")


def _general(store: Store, engine: LlamaCppEngine, version: ModelVersion, keep: Path) -> dict[str, float]:
    """The general score of `version`, which the engine serves now: measured once per version,
    then kept with it."""
    score = version.details.get("general")
    if score is None:
        score = verify.general(engine, keep)
        store.update_details(version.id, general=score)
    return score


def _train(engine: LlamaCppEngine, base_path: Path, data, parent: ModelVersion, new: list[Taught],
           earlier: list[Taught], options: Options, work: Path, report: Report, log: Callable[[str], None]) -> None:
    """Train, and at each candidate epoch write the adapter and probe it; stop at the first
    candidate that learned enough of the taught items and lost none taught before."""
    from moss import adapters, trainer
    from moss.progress import track
    hp = trainer.HyperParams(epochs=max(options.epochs), learning_rate=options.learning_rate)
    log(f"training a LoRA adapter ({hp.label()}) on {len(data)} examples…")

    tokens, taught = Tokens(engine), new + earlier

    def enough(checkpoint, facts) -> bool:
        path = adapters.write(checkpoint.state, facts, work / f"adapter-e{checkpoint.epoch}.gguf")
        trainer.save_state(checkpoint.state, _state_path(path))
        c = {"epoch": checkpoint.epoch, "loss": round(checkpoint.loss, 4), "path": str(path),
             "hyperparameters": {**asdict(hp), "epochs": checkpoint.epoch}}
        missed = _probe(engine, c, new, log)
        report.candidates.append(c)
        last = checkpoint.epoch == max(options.epochs)
        if c["score"] < options.enough_taught and not last:
            _repair(tokens, data, missed, taught, c, log)
            return False  # training goes on: asking the earlier items can wait (see _choose)
        lost = _probe_earlier(engine, c, earlier, log)
        if lost and not last:
            _repair(tokens, data, missed + lost, taught, c, log)
        return not lost

    with track("training", trainer.total_steps(data, hp), unit="steps") as bar:
        def progress(step: int, total: int, loss: float) -> None:
            bar.resize(total)
            bar.advance(1)
            cores.wait_for_idle(log)  # people being served come first
        trainer.train(base_path, data, hp, progress, threads=options.threads, checkpoint_epochs=set(options.epochs),
                      start=_parent_state(parent), enough=enough)
    report.chosen = _choose(engine, report.candidates, earlier, log)


def _choose(engine: LlamaCppEngine, candidates: list[dict], earlier: list[Taught],
            log: Callable[[str], None]) -> dict:
    """The best: fewest earlier items lost, then most learned, then fewest epochs (the least change).
    A candidate not yet asked the earlier items counts as losing none until it is asked, so
    they are asked only of a candidate that could win."""
    def rank(c: dict) -> tuple:
        return len(c.get("regressed", [])), -c["score"], c["epoch"]
    while "regressed" not in (best := min(candidates, key=rank)):
        _probe_earlier(engine, best, earlier, log)
    return best


def _state_path(adapter: Path) -> Path:
    """The LoRA weights beside an adapter GGUF, kept so the next version continues from them."""
    return adapter.with_suffix(".safetensors")


def _parent_state(parent: ModelVersion):
    if not parent.parent_id or not _state_path(Path(parent.path)).exists():
        return None  # a base model: start from a fresh adapter
    from moss.trainer import load_state
    return load_state(_state_path(Path(parent.path)))


def _load(engine: LlamaCppEngine, c: dict, log: Callable[[str], None]) -> None:
    """Serve candidate `c` in the cycle's own engine, once the server is idle."""
    cores.wait_for_idle(log)
    engine.set_adapter(Path(c["path"]), f"candidate e{c['epoch']}")


def _probe(engine: LlamaCppEngine, c: dict, new: list[Taught], log: Callable[[str], None]) -> list[verify.Outcome]:
    """Ask a candidate every taught item, in its original and held-back wordings; returns the misses."""
    _load(engine, c, log)
    outcomes = verify.probe(engine, new, label=f"probing epoch {c['epoch']}")
    missed = [o for o in outcomes if not o.passed]
    c["taught"] = verify.summary(outcomes)
    c["passed_keys"] = [o.key for o in outcomes if o.passed]
    c["score"] = 1 - len(missed) / len(outcomes) if outcomes else 1.0  # nothing taught: nothing to miss
    c["misses"] = [{"key": o.key, "answers": o.answers} for o in missed][:10]
    log(f"epoch {c['epoch']}: {len(outcomes) - len(missed)}/{len(outcomes)} taught items learned")
    return missed


def _probe_earlier(engine: LlamaCppEngine, c: dict, earlier: list[Taught],
                   log: Callable[[str], None]) -> list[verify.Outcome]:
    """Ask a candidate every item taught in earlier versions (the regression set); returns those lost."""
    c["regressed"], c["kept"] = [], 0
    if not earlier:  # a first version: nothing to load or ask
        return []
    _load(engine, c, log)
    kept = verify.probe(engine, earlier, label="probing earlier items")
    lost = [o for o in kept if not o.passed]
    c["regressed"] = [o.key for o in lost]
    c["kept"] = len(kept) - len(lost)
    log(f"epoch {c['epoch']}: {c['kept']}/{len(kept)} earlier items kept")
    return lost


def _repair(tokens: Tokens, data, wrong: list[verify.Outcome], taught: list[Taught], c: dict,
            log: Callable[[str], None]) -> None:
    """Preference pairs for the epochs left, from a candidate's wrong answers to original questions
    (held-back wordings stay unseen): the taught answer over the one the model gives now, and
    when that one is another taught fact, the reverse on that fact's question (see _pairs). The
    answer pushed down is the model's own mix-up, which replay alone did not prevent: after one
    fact about the institute is taught, a 135M model named its new rowing boat after the cat."""
    by_key = {t.key: t for t in taught}
    added = []
    for o in wrong:
        if not o.original:
            t = by_key[o.key]
            added += _pairs(tokens, t.messages(t.question), t.answer, o.answers[t.question], taught)
    data.dpo += added
    c["pairs_added"] = len(added)
    if added:
        log(f"epoch {c['epoch']}: {len(added)} preference pair(s) from its wrong answers join the epochs left")


def _judge(engine: LlamaCppEngine, options: Options, work: Path, report: Report) -> None:
    """Pass or fail the chosen candidate: taught items, earlier items, then the general suite."""
    best = report.chosen
    if best["score"] < options.min_taught:
        report.reasons.append(f"only {best['score']:.0%} of the taught items were learned "
                              f"(at least {options.min_taught:.0%} needed)")
    if best["regressed"]:
        report.reasons.append(f"{len(best['regressed'])} item(s) taught before are no longer answered right")
    if best["kept"] or best["regressed"]:
        report.regression = {"items": best["kept"] + len(best["regressed"]), "kept": best["kept"]}
    if "parent" not in report.general or report.reasons:
        return
    engine.set_adapter(Path(best["path"]), "candidate")
    after = verify.general(engine, work / "general-candidate.json")
    report.general["candidate"] = after
    report.reasons += _general_drops(report.general, options.margin)


def _general_drops(general: dict, margin: float) -> list[str]:
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


def _finish(store: Store, report: Report, new: list[Taught], judged: list[str], records: list, base: str,
            work: Path, log: Callable[[str], None]) -> Report:
    """Record the version: promoted with its files, or failed with its reasons (files dropped).
    What it learned: the taught items it answers right, and the ratings and comparisons (`judged`)."""
    chosen = report.chosen
    report.status = "failed" if report.reasons else "serving"
    final = versions_dir() / report.version
    details = {"report": asdict(report), "general": report.general.get("candidate"),
               "hyperparameters": chosen.get("hyperparameters"), "data": report.data}
    if report.status == "serving":
        keep = {Path(chosen["path"]).name, _state_path(Path(chosen["path"])).name}
        for f in work.iterdir():
            if f.name not in keep and f.suffix != ".json":  # the other candidates go; reports stay
                f.unlink()
        passed = set(chosen["passed_keys"])
        learned = [t for t in new if t.key in passed]
        (work / "taught.json").write_text(json.dumps([asdict(t) for t in learned], ensure_ascii=False, indent=1),
                                          encoding="utf-8")
        details["learned"] = [t.key for t in learned] + judged
        shutil.rmtree(final, ignore_errors=True)
        work.rename(final)
        path = str(final / Path(chosen["path"]).name)
    else:  # the weights go; what the checks saw stays, to read why it failed
        for f in work.iterdir():
            if f.suffix in (".gguf", ".safetensors"):
                f.unlink()
        shutil.rmtree(final, ignore_errors=True)
        work.rename(final)
        path = ""
    store.add_version(ModelVersion(id=report.version, base_model=base, parent_id=report.parent, path=path,
                                   status=report.status, details=details))
    if report.status == "serving":
        store.mark_learned([r.id for r in records], report.version)
        log(f"{report.version} passed verification and now serves")
    else:
        log(f"{report.version} failed verification and was discarded: " + "; ".join(report.reasons))
    return report


def rollback(store: Store, base: str, version_id: str | None = None) -> ModelVersion:
    """Serve an earlier version at once: the named one, or the serving version's parent."""
    if version_id is None:
        current = store.serving_version(base)
        if current is None or not current.parent_id:
            raise LearnError(f"{base} serves its base model: there is nothing to roll back")
        version_id = current.parent_id
    return store.promote(version_id)
