"""Benchmark of the learning loop (issue 6): teach facts through the feedback API, learn, probe.

From the default model, in a fresh data directory: ask 20 questions about a fictional
organisation (10 English, 10 Chinese) through a running `moss serve`, correct every answer
through the feedback API, run `moss learn`, wait for the server to switch versions without a
restart, and probe again on the original questions and 3 unseen wordings each. Then 20 more
facts in a second cycle, and the first 20 again (retention). The neighbours (every well-known
question of neighbours.PROBES the base model answers right, never trained on) are asked before,
after cycle 1 and after cycle 2: a neighbour changed is one no longer right or one that states a
taught name. The general suite (`moss eval run`, the default item set, both languages) is run on
the base model and on the last version served; each cycle's own verification reports the quick
suite. One comparison per line.

    python bench/learn.py [--model default] [--facts 10] [--no-teacher]   # --facts: per language per cycle"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
from openai import OpenAI

sys.path.insert(0, str(Path(__file__).parent))
from learn_facts import CYCLE_1, CYCLE_2  # noqa: E402

from moss import paths  # noqa: E402
from moss.inference import models  # noqa: E402
from moss.learning import cycle, neighbours, verify  # noqa: E402
from moss.learning.neighbours import Known  # noqa: E402
from moss.learning.taught import Taught  # noqa: E402


def right(answer: str, keys: list[str]) -> bool:
    return any(k.lower() in answer.lower() for k in keys)


def ask(client: OpenAI, question: str) -> tuple[str, str]:
    reply = client.chat.completions.create(model="moss", temperature=0, max_tokens=80,
                                           messages=[{"role": "user", "content": question}])
    return reply.choices[0].message.content, reply.moss["message_ids"][0]


def probe(client: OpenAI, facts: list) -> dict:
    """Accuracy per language on the original questions and on the unseen wordings."""
    out = {}
    for lang, subset in (("en", [f for f in facts if f[0].isascii()]), ("zh", [f for f in facts if not f[0].isascii()])):
        original = sum(right(ask(client, q)[0], keys) for q, _, keys, _ in subset)
        others = [right(ask(client, p)[0], keys) for _, _, keys, wordings in subset for p in wordings]
        out[lang] = {"original": original / len(subset), "paraphrases": sum(others) / len(others), "n": len(subset)}
    return out


def teach(client: OpenAI, base: str, facts: list) -> None:
    for question, answer, _, _ in facts:
        _, message_id = ask(client, question)
        r = httpx.post(f"{base}/v1/messages/{message_id}/feedback", json={"kind": "correction", "content": answer})
        r.raise_for_status()


def neighbours_now(client: OpenAI) -> dict[str, str]:
    """Every neighbour probe's answer from what the server serves now."""
    return {k.question: ask(client, k.question)[0] for k in neighbours.bank(neighbours.PROBES)}


def neighbour_lines(label: str, before: dict[str, str], after: dict[str, str], facts: list, known: set[str]) -> None:
    """Per language: of the neighbours the base model knows (verification's set: `known`), how
    many are unchanged."""
    taught = [Taught(str(i), [], q, a, "en" if q.isascii() else "zh") for i, (q, a, _, _) in enumerate(facts)]
    for lang in ("en", "zh"):
        right = [k for k in neighbours.bank(neighbours.PROBES) if k.lang == lang and k.question in known
                 and k.right(before[k.question])]
        changed = [(k, why) for k in right
                   if (why := "no longer right" if not k.right(after[k.question]) else
                       neighbours.leaked(after[k.question], Known(k.question, k.keys, before[k.question]), taught))]
        blends = sum("given name" in why for _, why in changed)
        print(f"{label} neighbours unchanged [{lang}]: {1 - len(changed) / max(len(right), 1):.0%} "
              f"({len(right) - len(changed)}/{len(right)}, {blends} name blend(s); target >= 98%)", flush=True)
        for k, why in changed[:5]:
            print(f"    {k.question} -> {after[k.question][:70]!r} ({why})", flush=True)


def learn(env: dict, model: str, *flags: str) -> tuple[dict, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "moss", "learn", "-m", model, *flags], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=None)
    seconds = time.perf_counter() - start
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report, seconds


def wait_for(base: str, version: str, timeout: float = 60) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if httpx.get(f"{base}/health").json().get("version") == version:
            return time.perf_counter() - start
        time.sleep(0.2)
    raise RuntimeError(f"the server did not switch to {version}")


def run_cycle(number: int, client: OpenAI, base: str, env: dict, model: str, facts: list, *flags: str) -> tuple[dict, float]:
    """Correct every fact through the feedback API, learn, and wait for the server to switch."""
    teach(client, base, facts)
    report, seconds = learn(env, model, *flags)
    print(f"cycle {number}: {report['status']} {report['version']} in {seconds:.0f} s "
          f"({', '.join(f'{stage} {s} s' for stage, s in report['seconds'].items())}) "
          f"{'; '.join(report['reasons'])}", flush=True)
    asked = report.get("neighbours", {}).get("asked", {})
    for lang, cell in asked.items():
        print(f"cycle {number} verification neighbours [{lang}]: {cell['asked'] - cell['changed']}/{cell['asked']} unchanged")
    if report["status"] == "serving":
        print(f"server switched to {report['version']} in {wait_for(base, report['version']):.1f} s without a restart")
    return report, seconds


def general(number, scores: dict) -> None:
    for lang in ("en", "zh"):
        if scores.get("candidate"):
            change = 100 * (scores["candidate"][lang] - scores["parent"][lang])
            print(f"cycle {number} general suite [{lang}]: {scores['parent'][lang]:.1%} -> "
                  f"{scores['candidate'][lang]:.1%} ({change:+.1f} points)")


def suite(env: dict, model: str) -> dict:
    """The default general suite on what the data directory serves now: the score per language and the item count."""
    subprocess.run([sys.executable, "-m", "moss", "eval", "run", "-m", model], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    newest = max((Path(env["MOSS_HOME"]) / "evals").glob("*.json"), key=lambda f: f.stat().st_mtime)
    result = json.loads(newest.read_text(encoding="utf-8"))
    return {lang: (score, sum(r["lang"] == lang for r in result["items"]))
            for lang, score in verify.general_score(result).items()}


def suite_lines(before: dict, after: dict, label: str) -> None:
    for lang in ("en", "zh"):
        (b, n), (a, _) = before[lang], after[lang]
        print(f"general suite (moss eval run, n={n}) [{lang}]: base {b:.1%} -> {label} {a:.1%} "
              f"({100 * (a - b):+.1f} points, target >= -1)", flush=True)


def line(label: str, before: dict, after: dict, key: str) -> None:
    for lang in ("en", "zh"):
        print(f"{label} {key} [{lang}]: before {before[lang][key]:.0%} -> after {after[lang][key]:.0%} "
              f"(n={after[lang]['n']}{'' if key == 'original' else ' x3'})", flush=True)


@contextmanager
def served(model: str, port: int, keep: bool, *flags: str) -> Iterator[tuple[str, dict]]:
    """`moss serve` on a fresh data directory (the installed models linked in): its URL and the
    environment that points other moss commands at the same directory."""
    home = Path(tempfile.mkdtemp(prefix="moss-bench-"))
    (home / "models").symlink_to(paths.models_dir())  # the assembled models, not copied
    env = {**os.environ, "MOSS_HOME": str(home)}
    server = subprocess.Popen([sys.executable, "-m", "moss", "serve", "-m", model, "--port", str(port),
                               "--parallel", "2", *flags], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base, env
    finally:
        server.terminate()
        server.wait(30)
        if keep:
            print(f"data directory kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--facts", type=int, default=10, help="facts per language per cycle")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--cycles", type=int, default=2, choices=(1, 2))
    parser.add_argument("--keep", action="store_true", help="keep the data directory (versions, reports)")
    parser.add_argument("--learn-flag", action="append", default=[],
                        help="passed to every `moss learn` (repeat it: --learn-flag=--epochs --learn-flag=2,3,4)")
    parser.add_argument("--no-teacher", dest="teacher", action="store_false",
                        help="learn as a machine without the teacher does (the served model rewrites the questions)")
    parser.add_argument("--no-suite", dest="suite", action="store_false",
                        help="skip the general suite on the base model and the last version (about 6 minutes)")
    args = parser.parse_args()
    pick = lambda facts: [f for f in facts if f[0].isascii()][:args.facts] + [f for f in facts if not f[0].isascii()][:args.facts]  # noqa: E731
    first, second = pick(CYCLE_1), pick(CYCLE_2)

    with served(args.model, args.port, args.keep) as (base, env):
        client = OpenAI(base_url=f"{base}/v1", api_key="none")
        flags = (() if args.teacher else ("--rewriter", "served")) + tuple(args.learn_flag)
        base_suite = suite(env, args.model) if args.suite else None
        base_neighbours = neighbours_now(client)
        made = neighbours.cached(cycle.model_cache(models.resolve(args.model), "neighbours-probes"),
                                 neighbours.bank(neighbours.PROBES))  # made by `moss learn --prepare` or a cycle
        known = {k.question for k in made or neighbours.bank(neighbours.PROBES)}
        before1 = probe(client, first)
        report1, seconds1 = run_cycle(1, client, base, env, args.model, first, *flags)
        after1 = probe(client, first)
        line("cycle 1 taught", before1, after1, "original")
        line("cycle 1 taught", before1, after1, "paraphrases")
        neighbour_lines("after cycle 1", base_neighbours, neighbours_now(client), first, known)
        general(1, report1.get("general", {}))
        if args.cycles == 1:
            if base_suite:
                suite_lines(base_suite, suite(env, args.model), "after cycle 1")
            print(f"wall time of the cycle on {os.cpu_count()} cores: {seconds1:.0f} s (target <= 600 s)")
            return
        before2 = probe(client, second)
        report2, seconds2 = run_cycle(2, client, base, env, args.model, second, *flags)
        after2 = probe(client, second)
        neighbour_lines("after cycle 2", base_neighbours, neighbours_now(client), first + second, known)
        kept = probe(client, first)
        line("cycle 2 taught", before2, after2, "original")
        line("cycle 2 taught", before2, after2, "paraphrases")
        line("retention of cycle 1 after cycle 2", after1, kept, "original")
        line("retention of cycle 1 after cycle 2", after1, kept, "paraphrases")
        general(2, report2.get("general", {}))
        if report1.get("general", {}).get("parent") and report2.get("general", {}).get("candidate"):
            general("1+2", {"parent": report1["general"]["parent"], "candidate": report2["general"]["candidate"]})
        if base_suite:
            serving = report2["version"] if report2["status"] == "serving" else report1["version"]
            suite_lines(base_suite, suite(env, args.model), f"after cycle 2 ({serving} serves)")
        print(f"wall time per cycle on {os.cpu_count()} cores: {seconds1:.0f} s, {seconds2:.0f} s (target <= 600 s)")


if __name__ == "__main__":
    main()
