"""Learning from another model over HTTP: distillation, AI preferences and self-instruct with the
small model as student and a second `moss serve` (the small model too) as the teacher."""

import json
import subprocess
import sys
import time

import httpx
import pytest
from openai import OpenAI
from server_process import ServerProcess

from moss.lang import detect
from moss.learning.distill import check, scrub
from moss.learning.self_instruct import near_duplicate, shingles
from moss.store import Store

PROMPTS = ["Give me two tips for staying focused.", "What is the capital of France? Answer briefly.",
           "Give me two tips for staying focused.",  # asked twice: distilled once
           "My email is ann@example.com and my phone is 13812345678. Write me a one-line greeting.",
           "请用中文介绍一下长城。"]


def test_personal_data_is_scrubbed():
    text = ("mail bob.smith+x@mail.example.org, call +1 415-555-0132 or 13812345678, "
            "ID 11010519491231002X, SSN 123-45-6789, card 4111 1111 1111 1111, on 2024-11-26")
    clean = scrub(text)
    for secret in ("bob.smith", "555-0132", "13812345678", "11010519491231002X", "123-45-6789", "4111 1111"):
        assert secret not in clean
    assert clean.count("[phone]") == 2 and "[email]" in clean and "[card number]" in clean
    assert "2024-11-26" in clean  # dates are not personal data


def test_filters_reject_bad_teacher_answers():
    assert check("What is the capital of France?", "The capital of France is Paris.") is None
    assert check("法国的首都是哪里？", "法国的首都是巴黎。") is None
    assert check("法国的首都是哪里？", "The capital of France is Paris.") == "language"
    assert check("What is the capital of France?", "Paris.<|im_end|>\n<|im_start|>user") == "template debris"
    assert check("How do I bake bread?", "I'm sorry, I can't help with that.") == "refused a harmless prompt"
    assert check("How do I build a bomb?", "I'm sorry, I can't help with that.") is None  # a right refusal
    assert check("Write a poem.", "la la la la " * 40) == "junk"
    assert check("Write a poem.", "Roses are red", finish_reason="length") == "cut off"
    assert check("Hi", "") == "length"


def test_near_duplicates_are_found():
    seen = [shingles("Write a short thank-you note to a colleague who helped me move.")]
    assert near_duplicate("Write a short thank-you note to a colleague who helped me to move!", seen)
    assert not near_duplicate("List three uses of a paperclip.", seen)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("teacher")) as teacher, \
            ServerProcess(tmp_path_factory.mktemp("student")) as student:
        client = OpenAI(base_url=student.url + "/v1", api_key="none")
        for prompt in PROMPTS:
            client.chat.completions.create(model="moss", temperature=0, max_tokens=30,
                                           messages=[{"role": "user", "content": prompt}])
        yield teacher, student


def _distill(student: ServerProcess, teacher: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moss", "distill", "-m", "small", "--teacher-url", teacher.url,
                           "--teacher-model", "moss", *args], capture_output=True, text=True, env=student.env,
                          timeout=900)


@pytest.fixture(scope="module")
def distilled(servers) -> subprocess.CompletedProcess:
    """One distillation of every kind, run once per module by whichever test needs it first."""
    teacher, student = servers
    return _distill(student, teacher, "--judge-samples", "2", "--self-instruct", "2")


def test_distillation_produces_filtered_records(servers, distilled):
    teacher, student = servers
    done = distilled
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(counts) == {"teacher answers", "AI preferences", "self-instruct"}
    store = Store(f"sqlite:///{student.home}/moss.db")
    answered = store.records(source="teacher")
    assert len(answered) == 4  # the repeated prompt once
    assert sum(counts["teacher answers"].values()) == 4
    for r in answered:
        question = r.prompt[-1]["content"]
        if r.status == "pending":
            assert check(question, r.chosen) is None and r.chosen
        else:
            assert r.reason in ("cut off", "length", "template debris", "language", "refused a harmless prompt", "junk")
        if detect(question) == "zh" and detect(r.chosen) != "zh":
            assert r.status == "dropped"  # a wrong-language answer never trains (the first filter that fits names why)
    personal = [r for r in answered if "greeting" in r.prompt[-1]["content"]][0]
    assert "ann@example.com" not in json.dumps(personal.prompt) and "[email]" in personal.prompt[-1]["content"]
    assert "[phone]" in personal.prompt[-1]["content"]
    preferences = store.records(source="judge")
    assert len(preferences) == 4 and all(r.kind == "dpo" and r.rejected is not None for r in preferences)
    assert all(r.reason for r in preferences if r.status == "dropped")
    made = store.records(source="self-instruct")
    assert len(made) == 2 and {r.lang for r in made} == {"en"}
    again = _distill(student, teacher, "--no-answers")
    assert again.returncode == 0 and len(store.records(source="teacher")) == 4  # nothing distilled twice


def test_learning_uses_the_records_and_marks_them(servers, distilled):
    teacher, student = servers
    store = Store(f"sqlite:///{student.home}/moss.db")
    pending = store.records(status="pending")
    assert pending, "distillation kept nothing to learn from"
    done = subprocess.run([sys.executable, "-m", "moss", "learn", "-m", "small", "--no-general-check"],
                          capture_output=True, text=True, env=student.env, timeout=900)
    assert done.returncode == 0, done.stderr
    version = json.loads(done.stdout.strip().splitlines()[-1])["version"]
    assert {r.status for r in store.records() if r.id in {p.id for p in pending}} == {"learned"}
    assert {r.version_id for r in store.records(status="learned")} == {version}
    data = store.version(version).details["data"]
    assert sum(v for k, v in data.items() if k.startswith("from ")) == len(pending)
    for _ in range(75):  # the running server follows the new version within seconds
        if httpx.get(student.url + "/health").json()["version"] == version:
            break
        time.sleep(0.2)
    assert httpx.get(student.url + "/health").json()["version"] == version
