"""Feedback becomes training records: the exact SFT, DPO, KTO and ShareGPT lines, and the CLI."""

import json
import os
import subprocess
import sys

import pytest

from moss.learning import datasets
from moss.store import Answer, Store


def answer(content: str) -> Answer:
    return Answer(content=content, model_version_id="m", prompt=[], sampling={}, prompt_tokens=1,
                  completion_tokens=1, cached_tokens=0, finish_reason="stop", latency_ms=1, ttft_ms=1)


@pytest.fixture
def filled(tmp_path, monkeypatch):
    """Two conversations (English, Chinese) with every kind of feedback on them."""
    monkeypatch.setenv("MOSS_HOME", str(tmp_path))
    store = Store()
    store.register_version("m", "m", "/m.gguf")
    user, _ = store.add_user("ann")
    en = [{"role": "user", "content": "What is the capital of Australia?"}]
    a1 = store.record(user.id, en, [answer("Sydney.")]).message_ids[-1]
    a2 = store.record(user.id, en, [answer("Canberra.")]).message_ids[-1]  # a second sample
    zh = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "澳大利亚的首都是哪里？"}]
    z1 = store.record(user.id, zh, [answer("悉尼。")]).message_ids[-1]
    z2 = store.record(user.id, zh, [answer("堪培拉。")]).message_ids[-1]
    store.set_feedback(user.id, a1, "rating", {"rating": "down", "reasons": ["incorrect"], "comment": ""})
    store.set_feedback(user.id, a2, "rating", {"rating": "up", "reasons": [], "comment": "right"})
    store.set_feedback(user.id, a1, "correction", {"content": "Canberra is the capital."})
    store.set_feedback(user.id, z1, "comparison", {"other_message_id": z2, "choice": "other"})
    store.set_feedback(user.id, z2, "flag", {"reason": "test"})
    return store, en, zh


def a(text):
    return [{"role": "assistant", "content": text}]


def test_sft_records(filled):
    store, en, _ = filled
    assert datasets.export(store, "sft") == [
        {"messages": en + a("Canberra.")},
        {"messages": en + a("Canberra is the capital.")},
    ]


def test_dpo_records(filled):
    store, en, zh = filled
    assert datasets.export(store, "dpo") == [
        {"prompt": en, "chosen": a("Canberra is the capital."), "rejected": a("Sydney.")},
        {"prompt": zh, "chosen": a("堪培拉。"), "rejected": a("悉尼。")},
        {"prompt": en, "chosen": a("Canberra."), "rejected": a("Sydney.")},  # 👍 over 👎, same context
    ]


def test_kto_records(filled):
    store, en, zh = filled
    assert datasets.export(store, "kto") == [
        {"prompt": en, "completion": a("Sydney."), "label": False},
        {"prompt": en, "completion": a("Canberra."), "label": True},
        {"prompt": zh, "completion": a("堪培拉。"), "label": False},  # flagged
    ]


def test_sharegpt_and_language_filter(filled):
    store, _, _ = filled
    assert datasets.export(store, "sharegpt")[0] == {"conversations": [
        {"from": "human", "value": "What is the capital of Australia?"}, {"from": "gpt", "value": "Canberra."}]}
    assert len(datasets.export(store, "dpo", lang="zh")) == 1
    assert len(datasets.export(store, "dpo", lang="en")) == 2


def test_changed_and_withdrawn_feedback(filled):
    store, en, _ = filled
    uid = store.users()[0][0].id
    first_answer = store.conversations(uid)[-1]
    _, messages = store.conversation(uid, first_answer.id)
    sydney = next(m for m in messages if m.content == "Sydney.")
    store.set_feedback(uid, sydney.id, "rating", {"rating": "up", "reasons": [], "comment": ""})  # changed
    assert {"prompt": en, "completion": a("Sydney."), "label": True} in datasets.export(store, "kto")
    store.withdraw_feedback(uid, sydney.id, "rating")
    assert all(r["completion"] != a("Sydney.") for r in datasets.export(store, "kto"))
    with pytest.raises(LookupError):
        store.withdraw_feedback(uid, sydney.id, "rating")


def test_cli_export_and_stats(filled, tmp_path):
    env = {**os.environ}
    out = tmp_path / "dpo.jsonl"
    run = lambda *args: subprocess.run([sys.executable, "-m", "moss", "feedback", *args],  # noqa: E731
                                       capture_output=True, text=True, env=env, timeout=60)
    done = run("export", "--format", "dpo", "--lang", "zh", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in out.read_text().splitlines()] == \
        datasets.export(filled[0], "dpo", lang="zh")
    assert run("export", "--format", "sft", "--since", "2000-01-01").stdout.count("\n") == 2
    assert run("export", "--format", "sft", "--since", "2999-01-01").stdout == ""
    bad = run("export", "--format", "xml")
    assert bad.returncode == 1 and "--format must be one of" in bad.stderr and "Traceback" not in bad.stderr
    stats = run("stats").stdout
    assert "rating down" in stats and "comparison" in stats
