"""Run evaluation suites on an engine, score every answer, and keep the results per model version."""

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

from moss import paths
from moss.evals import scorers
from moss.evals.suites import DEFAULT, SUITES, Item, build, last_number
from moss.inference.engine import Engine, Sampling
from moss.lang import detect
from moss.progress import parallel_map, track
from moss.text import answer_match, refused


def score(item: Item, answer: str) -> float:
    """1.0 for a good answer, 0.0 for a bad one (for over_refusal: 1.0 means it refused)."""
    if item.kind == "match":
        return float(answer_match(answer, item.reference))
    if item.kind == "gym":
        import reasoning_gym
        scorer = reasoning_gym.get_score_answer_fn(item.reference["dataset"])
        return float(scorer(last_number(answer) or "", item.reference["entry"]))
    if item.kind == "code":
        r = item.reference
        return float(scorers.humaneval_passes(r["prompt"], answer, r["test"], r["entry_point"]))
    if item.kind == "verdict":
        return float(scorers.verdict(answer) == item.reference)
    if item.kind == "choice":
        picked = re.search(r"(?<![A-Za-z])([A-D])(?![A-Za-z])", answer)
        return float(bool(picked) and picked.group(1) == item.reference)
    if item.kind in ("refuse", "comply"):  # for "comply" items this is the over-refusal rate: lower is better
        return float(refused(answer))
    if item.kind == "language":
        return float(scorers.language_ok(item.lang, answer))
    raise ValueError(f"unknown item kind {item.kind}")


def answer_all(engine: Engine, items: list[Item], workers: int) -> list[tuple[str, float]]:
    """Greedy answers to every item, decoded `workers` at a time (the engine batches them)."""
    def one(item: Item) -> tuple[str, float]:
        start = time.perf_counter()
        text = engine.generate([{"role": "user", "content": item.prompt}],
                               Sampling(temperature=0, max_tokens=item.max_tokens)).text()
        return text, time.perf_counter() - start

    return parallel_map(one, items, "answering", "items", workers)


def run(engine: Engine, names: list[str] | None = None, full: bool = False, quick: bool = False,
        workers: int | None = None, seed: int = 2026) -> dict:
    """Evaluate `engine` on the named suites (all by default); the result is JSON-ready."""
    names = names or list(DEFAULT)
    start = time.perf_counter()
    items = build(names, full=full, seed=seed, quick=quick)
    answers = answer_all(engine, items, workers or engine.parallel)
    rows = []
    with track("scoring", len(items), unit="items") as bar:
        for item, (answer, seconds) in zip(items, answers):
            rows.append({"suite": item.suite, "lang": item.lang, "prompt": item.prompt, "answer": answer,
                         "score": score(item, answer), "seconds": round(seconds, 2),
                         "answer_lang": detect(answer)})
            bar.advance(1)
    return {"version": engine.version, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - start, 1), "full": full, "quick": quick, "seed": seed,
            "suites": summarize(rows), "items": rows}


def summarize(rows: list[dict]) -> dict:
    """Mean score per suite and language, with counts; language fidelity over all prose answers."""
    out: dict = {}
    for row in rows:
        cell = out.setdefault(row["suite"], {}).setdefault(row["lang"], {"score": 0.0, "n": 0})
        cell["score"] += row["score"]
        cell["n"] += 1
    prose = [r for r in rows if r["suite"] not in ("code", "math", "hhh", "law")]  # not letters or code
    for lang in ("en", "zh"):
        asked = [r for r in prose if r["lang"] == lang]
        if asked:
            out.setdefault("fidelity", {})[lang] = {
                "score": float(sum(r["answer_lang"] == lang for r in asked)), "n": len(asked)}
    for suite in out.values():
        for cell in suite.values():
            cell["score"] = round(cell["score"] / cell["n"], 4)
    return out


def lower_is_better(suite: str) -> bool:
    return suite in SUITES and SUITES[suite].lower_is_better


def regressions(result: dict, baseline: dict, margin: float = 0.05) -> list[str]:
    """Where `result` is worse than `baseline` by more than `margin`, per suite and language."""
    problems = []
    for suite, langs in baseline["suites"].items():
        for lang, before in langs.items():
            after = result["suites"].get(suite, {}).get(lang)
            if after is None:
                continue
            drop = (after["score"] - before["score"]) if lower_is_better(suite) else (before["score"] - after["score"])
            if drop > margin:
                problems.append(f"{suite} ({lang}): {before['score']:.2f} -> {after['score']:.2f}")
    return problems


def results_dir() -> Path:
    path = paths.home() / "evals"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(result: dict) -> Path:
    stamp = result["created"].replace(":", "").replace("-", "")
    path = results_dir() / f"{result['version']}--{stamp}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


def load_all() -> list[dict]:
    """Every stored result, oldest first."""
    results = []
    for path in sorted(results_dir().glob("*.json")):
        try:
            results.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # a damaged file is skipped, not fatal
    return sorted(results, key=lambda r: r["created"])
