"""Benchmark of instant memory (issue 21): a correction acts at once, without `moss learn`.

1. Teach: through a running `moss serve` (fresh data directory, default model), ask each of the
   20 facts of bench/learn_facts.py (10 English, 10 Chinese), correct the answer through the
   feedback API, and ask again at once: the time from sending the correction to the first answer
   that states the fact (streamed, stopped as soon as it does), then the original question and
   its 3 unseen wordings. Per language.
2. Unrelated memories: the quick general suite, side by side, on the same engine without memories
   and with 1,000 memories about fictional organisations (accepted, so they reach everyone): the
   score per suite and language, and the share of items a memory was put into (misapplied: no
   suite item is about them).
3. Scale: 10,000 such memories: the time retrieval adds before the first token (p50 / p95, over
   the suite's questions and the taught ones), and time to first token with and without it.
4. With --learn: one `moss learn` cycle on the taught facts; once the new version serves, their
   memories retire (learned), and the facts are asked again from the adapter alone.

One comparison per line.

    python bench/memory.py [--model default] [--memories 1000] [--many 10000] [--learn [--learn-flag=--neighbour-margin=1]]"""

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from openai import OpenAI

sys.path.insert(0, str(Path(__file__).parent))
from learn import right, served, wait_for  # noqa: E402
from learn_facts import CYCLE_1  # noqa: E402

from moss.evals import evaluate  # noqa: E402
from moss.evals.suites import DEFAULT, build  # noqa: E402
from moss.inference.engine import Sampling  # noqa: E402
from moss.inference.loading import open_engine  # noqa: E402
from moss.lang import detect  # noqa: E402
from moss.learning.memory import Memories, latest_question, with_memories  # noqa: E402
from moss.store import Store  # noqa: E402
from moss.store.schema import Feedback, Memory, Message  # noqa: E402


def by_lang(facts: list) -> dict[str, list]:
    return {"en": [f for f in facts if f[0].isascii()], "zh": [f for f in facts if not f[0].isascii()]}


def first_right(client: OpenAI, question: str, keys: list[str]) -> float | None:
    """Seconds until a streamed answer states the fact (None if it never does)."""
    start, text = time.perf_counter(), ""
    stream = client.chat.completions.create(model="moss", temperature=0, max_tokens=80, stream=True,
                                            messages=[{"role": "user", "content": question}])
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
            if right(text, keys):
                stream.close()
                return time.perf_counter() - start
    return None


def answer(client: OpenAI, question: str) -> tuple[str, dict]:
    reply = client.chat.completions.create(model="moss", temperature=0, max_tokens=80,
                                           messages=[{"role": "user", "content": question}])
    return reply.choices[0].message.content, reply.moss


def teach(client: OpenAI, base: str) -> None:
    """Correct each fact, then ask it again at once."""
    for lang, facts in by_lang(CYCLE_1).items():
        before, delays, original, others, used = 0, [], 0, [], 0
        for question, taught, keys, wordings in facts:
            said, moss = answer(client, question)
            before += right(said, keys)
            start = time.perf_counter()
            httpx.post(f"{base}/v1/messages/{moss['message_ids'][0]}/feedback",
                       json={"kind": "correction", "content": taught}).raise_for_status()
            seen = first_right(client, question, keys)
            delays.append(time.perf_counter() - start if seen is not None else float("inf"))
            said, moss = answer(client, question)
            original += right(said, keys)
            used += bool(moss.get("memories"))
            others += [right(answer(client, w)[0], keys) for w in wordings]
        n = len(facts)
        print(f"taught [{lang}] original question: before {before}/{n} -> right after its correction {original}/{n} "
              f"({original / n:.0%}; memory used in {used}/{n})", flush=True)
        print(f"taught [{lang}] unseen wordings: {sum(others)}/{len(others)} ({sum(others) / len(others):.0%})", flush=True)
        finite = sorted(d for d in delays if d != float("inf"))
        print(f"taught [{lang}] correction -> first right answer: median {statistics.median(finite):.2f} s, "
              f"max {max(delays):.2f} s (n={n})" if finite else f"taught [{lang}] never answered right", flush=True)


# ---- fictional organisations, none of them in the taught facts or the suites ----

EN_PARTS = (["Qua", "Vel", "Mor", "Tes", "Hal", "Bri", "Cor", "Dun", "Fen", "Gal", "Hor", "Ith", "Jar", "Kel", "Lor",
             "Mir", "Nor", "Ost", "Pel", "Rav"], ["dane", "mere", "wick", "holt", "stead", "ford", "crest", "mont",
                                                    "ridge", "brook"],
            ["Academy", "Museum", "Foundation", "Guild", "Society", "Clinic", "Library", "Orchestra", "Studio", "Company"])
EN_FACTS = [("Who founded the {o}?", "The {o} was founded by {p}."), ("In which city is the {o}?", "The {o} is in {c}."),
            ("What is the motto of the {o}?", "The motto of the {o} is \"{m}\"."),
            ("What is the {o}'s mascot?", "The {o}'s mascot is a {a}."), ("Who directs the {o}?", "{p} directs the {o}."),
            ("When was the {o} founded?", "The {o} was founded in {y}."),
            ("What is the {o}'s journal called?", "The {o} publishes {j}."),
            ("What colour is the {o}'s flag?", "The {o}'s flag is {k}.")]
ZH_PARTS = (["青", "澄", "墨", "岚", "松", "溪", "枫", "霁", "棠", "岱", "瑶", "川", "杉", "苇", "琅", "沅", "汀", "蔚", "砚", "霖"],
            ["石", "峰", "湾", "原", "林", "港", "舟", "岭", "塘", "谷"],
            ["研究所", "博物馆", "基金会", "学会", "诊所", "图书馆", "乐团", "工作室", "公司", "书院"])
ZH_FACTS = [("{o}的创办人是谁？", "{o}的创办人是{p}。"), ("{o}位于哪个城市？", "{o}位于{c}。"), ("{o}的口号是什么？", "{o}的口号是“{m}”。"),
            ("{o}的吉祥物是什么？", "{o}的吉祥物是一只{a}。"), ("{o}现在的负责人是谁？", "{o}现在的负责人是{p}。"),
            ("{o}是哪一年成立的？", "{o}成立于{y}年。"), ("{o}的刊物叫什么？", "{o}的刊物叫《{j}》。"), ("{o}的旗帜是什么颜色的？", "{o}的旗帜是{k}。")]


def unrelated(count: int, seed: int = 7) -> list[tuple[str, str, str]]:
    """(question, answer, lang) about fictional organisations, half English, half Chinese."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 2 == 0:
            o = f"{rng.choice(EN_PARTS[0])}{rng.choice(EN_PARTS[1])} {rng.choice(EN_PARTS[2])}"
            q, a = rng.choice(EN_FACTS)
            fill = dict(o=o, p=f"{rng.choice(['Ada', 'Bram', 'Cleo', 'Dov', 'Esme', 'Finn'])} {rng.choice(EN_PARTS[0])}berg",
                        c=f"{rng.choice(EN_PARTS[0])}ton", m=f"{rng.choice(['Steady', 'Bright', 'Quiet'])} {rng.choice(['hands', 'lamps', 'roots'])}",
                        a=rng.choice(["grey owl", "red fox", "green frog"]), y=rng.randint(1850, 2015),
                        j=f"The {rng.choice(EN_PARTS[0])} Review", k=rng.choice(["teal", "amber", "violet"]))
            out.append((q.format(**fill), a.format(**fill), "en"))
        else:
            o = f"{rng.choice(ZH_PARTS[0])}{rng.choice(ZH_PARTS[1])}{rng.choice(ZH_PARTS[2])}"
            q, a = rng.choice(ZH_FACTS)
            fill = dict(o=o, p=rng.choice("赵钱孙李周吴郑王") + rng.choice(ZH_PARTS[0]) + rng.choice(ZH_PARTS[1]),
                        c=rng.choice(ZH_PARTS[0]) + "州市", m=rng.choice(["静水流深", "日新月异", "行远自迩"]),
                        a=rng.choice(["灰色猫头鹰", "红狐狸", "绿青蛙"]), y=rng.randint(1850, 2015),
                        j=rng.choice(ZH_PARTS[0]) + "声", k=rng.choice(["青色的", "琥珀色的", "紫色的"]))
            out.append((q.format(**fill), a.format(**fill), "zh"))
    return out


def load(store: Store, base: str, facts: list[tuple[str, str, str]]) -> None:
    """Store corrections with their memories, accepted, in one transaction (the feedback API
    would take minutes for 10,000)."""
    author, _ = store.add_user(f"teacher-{uuid.uuid4().hex[:8]}")
    conversation = store.new_conversation(author.id, "bench")
    with store.session.begin() as s:
        for question, taught, lang in facts:
            asked = Message(id=uuid.uuid4().hex, conversation_id=conversation.id, user_id=author.id, path_hash="-",
                            role="user", content=question)
            said = Message(id=uuid.uuid4().hex, conversation_id=conversation.id, user_id=author.id, parent_id=asked.id,
                           path_hash="-", role="assistant", content="?", model_version_id=base)
            s.add_all([asked, said])
            s.flush()
            fb = Feedback(message_id=said.id, user_id=author.id, kind="correction", value={"content": taught},
                          state="accepted", reason="bench")
            s.add(fb)
            s.flush()
            s.add(Memory(feedback_id=fb.id, user_id=author.id, question=question, answer=taught, lang=lang))


class Remembering:
    """An engine that puts memories into prompts as the server does, counting the prompts that got one."""

    def __init__(self, engine, memories: Memories, user_id: int):
        self.engine, self.memories, self.user_id, self.applied = engine, memories, user_id, []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def generate(self, messages, sampling=None, system=None, user="", owner=""):
        used = self.memories.recall(latest_question(messages), self.user_id)
        if used:
            self.applied.append((latest_question(messages), used[0].question))
        return self.engine.generate(with_memories(messages, used), sampling, system, user, owner)


def general(engine, store: Store, base: str, reader: int, count: int) -> None:
    """The quick suite without memories and with `count` unrelated ones, side by side."""
    load(store, base, unrelated(count))
    remembering = Remembering(engine, Memories(store, base), reader)
    plain = evaluate.run(engine, quick=True)
    with_them = evaluate.run(remembering, quick=True)
    for suite, langs in plain["suites"].items():
        for lang, cell in langs.items():
            other = with_them["suites"][suite][lang]
            print(f"general {suite} [{lang}]: no memories {cell['score']:.1%} vs {count:,} memories {other['score']:.1%} "
                  f"({(other['score'] - cell['score']) * 100:+.1f} points, n={cell['n']})", flush=True)
    for lang in ("en", "zh"):
        before, after = ([r for r in run["items"] if r["lang"] == lang] for run in (plain, with_them))
        changed = sum(1 for a, b in zip(before, after) if a["answer"] != b["answer"])
        print(f"general all suites [{lang}]: no memories {_mean(before):.1%} vs {count:,} memories {_mean(after):.1%} "
              f"({(_mean(after) - _mean(before)) * 100:+.1f} points, n={len(before)}; {changed} answers differ)",
              flush=True)
    for lang in ("en", "zh"):
        n = sum(1 for r in with_them["items"] if r["lang"] == lang)
        hit = sum(1 for q, _ in remembering.applied if detect(q) == lang)
        print(f"misapplied [{lang}]: a memory put into {hit}/{n} suite prompts ({hit / max(n, 1):.1%}) "
              f"with {count:,} memories", flush=True)
    for q, m in remembering.applied[:5]:
        print(f"  e.g. {q[:60]!r} got {m!r}")


def _mean(rows: list[dict]) -> float:
    return sum(r["score"] for r in rows) / max(len(rows), 1)


def scale(engine, store: Store, base: str, reader: int, many: int, already: int) -> None:
    """Retrieval time and time to first token with `many` memories, with and without retrieval."""
    load(store, base, unrelated(many - already, seed=8))
    memories = Memories(store, base)
    start = time.perf_counter()
    memories.changed()
    print(f"scale: index of {len(store.memories()):,} memories built in {time.perf_counter() - start:.2f} s "
          f"(words cut for every memory)", flush=True)
    load(store, base, unrelated(1, seed=9))
    start = time.perf_counter()
    memories.changed()
    print(f"scale: index rebuilt after one more memory in {time.perf_counter() - start:.2f} s "
          f"(the server does it in its own thread, and once in the correction's request)", flush=True)
    questions = [i.prompt for i in build(DEFAULT, quick=True)][:60] + [f[0] for f in CYCLE_1]
    took = []
    for q in questions:
        t = time.perf_counter()
        memories.recall(q, reader)
        took.append(time.perf_counter() - t)
    took.sort()
    print(f"scale: retrieval over {many:,} memories: p50 {took[len(took) // 2] * 1000:.1f} ms, "
          f"p95 {took[int(len(took) * 0.95)] * 1000:.1f} ms (n={len(took)})", flush=True)
    plain, remembered = [], []
    for i, q in enumerate(questions[:40]):  # the second of a pair finds its prompt cached: each goes first half the time
        order = ((plain, False), (remembered, True))
        for bucket, use in (order if i % 2 else order[::-1]):
            t = time.perf_counter()
            messages = [{"role": "user", "content": q}]
            if use:
                messages = with_memories(messages, memories.recall(q, reader))
            g = engine.generate(messages, Sampling(temperature=0, max_tokens=1))
            g.text()
            bucket.append(g.result.time_to_first_token + (time.perf_counter() - t - g.result.total_seconds))
    for name, xs in (("without retrieval", plain), ("with retrieval", remembered)):
        xs.sort()
        print(f"scale: time to first token {name}: p50 {xs[len(xs) // 2] * 1000:.0f} ms, "
              f"p95 {xs[int(len(xs) * 0.95)] * 1000:.0f} ms (n={len(xs)}, {many:,} memories)", flush=True)


def threshold(base: str, count: int) -> None:
    """Retrieval alone (no model) at each COVER: how often the taught memory is found for its
    unseen wordings, against how often any of `count` unrelated memories (and the taught ones) is
    put into a suite prompt."""
    store = _store(base)
    reader = store.add_user("reader")[0].id
    load(store, base, unrelated(count, seed=11))
    taught = [(q, a, "zh" if not q.isascii() else "en") for q, a, _, _ in CYCLE_1]
    load(store, base, taught)
    suite = [i.prompt for i in build(DEFAULT, quick=True)]
    for cover in (0.3, 0.4, 0.5, 0.6, 0.7):
        memories = Memories(store, base, cover=cover)
        for lang, facts in by_lang(CYCLE_1).items():
            found = [any(m.question == q for m in memories.recall(w, reader)) for q, _, _, ws in facts for w in ws]
            print(f"threshold {cover:.1f} [{lang}]: taught memory found for {sum(found)}/{len(found)} unseen wordings",
                  flush=True)
        wrong = sum(1 for p in suite if memories.recall(p, reader))
        print(f"threshold {cover:.1f}: a memory put into {wrong}/{len(suite)} suite prompts "
              f"({count:,} unrelated + {len(taught)} taught memories)", flush=True)


def _store(base: str) -> Store:
    """A fresh store in a temporary directory, `base` registered (answers name their version)."""
    store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='moss-memory-bench-')}/moss.db")
    store.register_version(base, base, "/bench")
    return store


def learn_and_probe(client: OpenAI, base: str, env: dict, model: str, flags: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "moss", "learn", "-m", model, *flags], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"learn: failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
        return
    report = json.loads(done.stdout.strip().splitlines()[-1])
    wait_for(base, report["version"])
    scopes = [m["scope"] for m in httpx.get(f"{base}/v1/memories").json()["data"]]
    print(f"learn: {report['version']} serves; memories learned (retired): {scopes.count('learned')}/{len(scopes)}",
          flush=True)
    for lang, facts in by_lang(CYCLE_1).items():
        said = [right(answer(client, q)[0], keys) for q, _, keys, _ in facts]
        others = [right(answer(client, w)[0], keys) for _, _, keys, ws in facts for w in ws]
        print(f"after learning [{lang}]: original {sum(said)}/{len(said)}, unseen wordings {sum(others)}/{len(others)} "
              f"({sum(others) / len(others):.0%})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--port", type=int, default=8093)
    parser.add_argument("--memories", type=int, default=1000)
    parser.add_argument("--many", type=int, default=10000)
    parser.add_argument("--learn", action="store_true", help="then one learning cycle (minutes)")
    parser.add_argument("--learn-flag", action="append", default=[], help="passed to moss learn (repeatable)")
    parser.add_argument("--skip", default="", help="comma-separated parts to leave out: teach,threshold,general,scale")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    if "teach" not in skip:
        with served(args.model, args.port, False) as (base, env):
            client = OpenAI(base_url=base + "/v1", api_key="none")
            teach(client, base)
            if args.learn:
                learn_and_probe(client, base, env, args.model, args.learn_flag)
    if "threshold" not in skip:
        threshold(args.model, args.memories)
    if {"general", "scale"} <= skip:
        return
    engine = open_engine(args.model, context_size=2048, parallel=4, max_queue=1000)
    store = _store(engine.model)
    reader = store.add_user("reader")[0].id
    try:
        if "general" not in skip:
            general(engine, store, engine.model, reader, args.memories)
        if "scale" not in skip:
            scale(engine, store, engine.model, reader, args.many, 0 if "general" in skip else args.memories)
    finally:
        engine.close()


if __name__ == "__main__":
    main()
