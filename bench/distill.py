"""Benchmark of learning from a teacher (issue 7): one distillation cycle, judged pairwise.

In a fresh data directory: the student (default model) serves; people's prompts arrive through
its API; the teacher (the 1.5B model, served by a second `moss serve`) is reached over HTTP.
`moss distill` has the teacher answer the stored prompts, `moss learn` trains and verifies. On
held-out prompts the judge (the teacher, both orders) compares student after vs before, student
vs teacher before and after. One comparison per line, English and Chinese apart.

    python bench/distill.py [--teacher teacher] [--judge-url URL --judge-model NAME]"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from openai import OpenAI

from moss import paths
from moss.evals import judge
from moss.inference.remote import RemoteEngine

TRAIN = [  # what people asked the student (the teacher answers these)
    "Give me three tips for writing a clear email.", "What causes the seasons on Earth?",
    "Write a Python function that counts the vowels in a string.", "Explain the difference between a list and a tuple in Python.",
    "Suggest a name for a cafe that also sells books.", "How do I politely decline a meeting invitation?",
    "What is the boiling point of water in Fahrenheit?", "Write a two-sentence story about a lost umbrella.",
    "Why do leaves change colour in autumn?", "Summarize the plot of Cinderella in two sentences.",
    "How can I remember new English words more easily?", "What is a healthy breakfast I can make in five minutes?",
    "给我三个写清楚电子邮件的建议。", "地球上为什么会有四季？", "用Python写一个函数，统计字符串里元音字母的个数。",
    "Python里列表和元组有什么区别？", "给一家同时卖书的咖啡馆起个名字。", "怎样礼貌地拒绝一个会议邀请？",
    "水的沸点是多少华氏度？", "写一个关于丢失的雨伞的两句话小故事。", "秋天树叶为什么会变色？",
    "用两句话概括灰姑娘的故事。", "怎样更容易记住新的英语单词？", "五分钟能做好的健康早餐有哪些？",
]
HELD_OUT = [  # never distilled: the comparison set
    "Give me two tips for a good night's sleep.", "What causes rain?", "Write a Python function that reverses a list.",
    "Suggest a name for a bicycle repair shop.", "How do I ask my manager for a day off?", "Why is the sky blue?",
    "Write a short thank-you note to a neighbour who watered my plants.", "What is the difference between weather and climate?",
    "Give me three ideas for a rainy weekend.", "Explain what a Python dictionary is in two sentences.",
    "给我两个睡个好觉的建议。", "为什么会下雨？", "用Python写一个反转列表的函数。", "给一家自行车修理店起个名字。",
    "怎样向经理请一天假？", "天空为什么是蓝色的？", "给帮我浇花的邻居写一张简短的感谢便条。", "天气和气候有什么区别？",
    "给我三个下雨的周末可以做的事。", "用两句话解释什么是Python字典。",
]


def serve(model: str, port: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "moss", "serve", "-m", model, "--port", str(port), "--parallel", "4"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{model} did not start")


def answers(url: str, prompts: list[str], max_tokens: int = 256) -> list[str]:
    client = OpenAI(base_url=f"{url}/v1", api_key="none", timeout=600)
    return [client.chat.completions.create(model="moss", temperature=0, max_tokens=max_tokens,
                                           messages=[{"role": "user", "content": p}]).choices[0].message.content
            for p in prompts]


def asked(model: str, prompts: list[str], env: dict, max_tokens: int = 256) -> list[str]:
    """The student's answers through `moss ask` (it answers with the serving version and, unlike
    the API, stores nothing: held-out prompts must never reach the store that is distilled)."""
    return [subprocess.run([sys.executable, "-m", "moss", "ask", "-m", model, "--temperature", "0",
                            "--max-tokens", str(max_tokens), p], env=env, text=True, capture_output=True).stdout.strip()
            for p in prompts]


def timed(command: list[str], env: dict) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "moss", *command], env=env, text=True, stdout=subprocess.PIPE)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "", time.perf_counter() - start


def report(label: str, tallies: dict) -> None:
    for lang in ("en", "zh"):
        t = tallies[lang]
        low, high = t.interval()
        print(f"{label} [{lang}]: wins {t.wins}, ties {t.ties}, losses {t.losses} -> win rate {t.win_rate:.0%} "
              f"(95% CI {low:.0%}-{high:.0%}, n={t.n})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="default")
    parser.add_argument("--teacher", default="teacher")
    parser.add_argument("--judge-url", help="an OpenAI-compatible judge (default: the teacher)")
    parser.add_argument("--judge-model", default="moss")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="moss-bench-distill-"))
    (home / "teacher-home").mkdir()
    for where in (home, home / "teacher-home"):  # the assembled models, not copied
        (where / "models").symlink_to(paths.models_dir())
    env = {**os.environ, "MOSS_HOME": str(home)}
    student_url, teacher_url = "http://127.0.0.1:8771", "http://127.0.0.1:8772"
    student = serve(args.student, 8771, env)
    teacher = serve(args.teacher, 8772, {**env, "MOSS_HOME": str(home / "teacher-home")})
    try:
        answers(student_url, TRAIN, max_tokens=64)  # people's prompts land in the student's store
        before = asked(args.student, HELD_OUT, env)
        taught = answers(teacher_url, HELD_OUT)
        out, distill_s = timed(["distill", "-m", args.student, "--teacher-url", teacher_url, "--teacher-model", "moss"], env)
        print(f"distill: {out} in {distill_s:.0f} s", flush=True)
        out, learn_s = timed(["learn", "-m", args.student], env)
        result = json.loads(out)
        print(f"learn: {result['status']} {result['version']} in {learn_s:.0f} s {'; '.join(result['reasons'])}", flush=True)
        print(f"general suite: {result['general']}", flush=True)
        for _ in range(50):
            if httpx.get(f"{student_url}/health").json()["version"] == result["version"]:
                break
            time.sleep(0.2)
        after = asked(args.student, HELD_OUT, env)
        judge_fn = judge.engine_judge(RemoteEngine(args.judge_url or teacher_url, args.judge_model,
                                                   os.environ.get("MOSS_JUDGE_API_KEY")))
        report("student after vs before", judge.compare(HELD_OUT, after, before, judge_fn))
        report("student before vs teacher", judge.compare(HELD_OUT, before, taught, judge_fn))
        report("student after vs teacher", judge.compare(HELD_OUT, after, taught, judge_fn))
        print(f"wall time of the cycle on {os.cpu_count()} cores: distill {distill_s:.0f} s + learn {learn_s:.0f} s "
              f"= {distill_s + learn_s:.0f} s")
    finally:
        for proc in (student, teacher):
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
