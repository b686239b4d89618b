"""Instant memory: a correction acts at once, for whom its trust allows, until a verified version
learns it; retrieval finds what was taught and leaves other questions alone. The scheduled learner."""

import json
import os
import subprocess
import sys
import threading

import httpx
import pytest
from openai import OpenAI
from server_process import ServerProcess

from moss.learning.memory import Memories, with_memories
from moss.server.admin import Learner
from moss.server.schedule import Plan, Schedule, duration
from moss.store import Answer, Store
from moss.store.schema import ModelVersion

TAUGHT = [("Who founded the Veltrane Observatory?", "Marisol Quenby founded the Veltrane Observatory."),
          ("维尔川天文台的创办人是谁？", "维尔川天文台的创办人是柯望舒。"),
          ("What is the motto of the Lumenvale Institute?", "The motto of the Lumenvale Institute is \"Light before speed\".")]


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path}/moss.db")
    s.register_version("base", "base", "/nowhere")
    yield s
    s.close()


def teach(store: Store, user_id: int, question: str, answer: str) -> int:
    """A correction of an answer Moss gave; returns the feedback id."""
    said = Answer("I do not know.", "base", [], {}, 1, 1, 0, "stop", 1, 1)
    recorded = store.record(user_id, [{"role": "user", "content": question}], [said])
    return store.set_feedback(user_id, recorded.message_ids[-1], "correction", {"content": answer}).id


def questions(found) -> list[str]:
    return [m.question for m in found]


def test_a_correction_is_found_by_other_wordings_in_both_languages_and_nothing_else(store):
    alice = store.local_user()
    for q, a in TAUGHT:
        teach(store, alice.id, q, a)
    memories = Memories(store, "base")
    assert questions(memories.recall("Who established the Veltrane Observatory?", alice.id)) == [TAUGHT[0][0]]
    assert questions(memories.recall("Tell me about the Veltrane Observatory.", alice.id)) == [TAUGHT[0][0]]
    assert questions(memories.recall("谁创办了维尔川天文台？", alice.id)) == [TAUGHT[1][0]]
    assert questions(memories.recall("Which phrase is the Lumenvale Institute's motto?", alice.id)) == [TAUGHT[2][0]]
    for unrelated in ("Who founded Microsoft?", "What is the capital of France?", "《红楼梦》的作者是谁？",
                      "微软的创办人是谁？", "What is a motto?", "Write a poem about an observatory."):
        assert memories.recall(unrelated, alice.id) == [], unrelated


def test_scope_follows_trust_and_learning(store):
    alice, _ = store.add_user("alice")
    bob, _ = store.add_user("bob")
    feedback = teach(store, alice.id, *TAUGHT[0])
    memories = Memories(store, "base")
    asked = "Who founded the Veltrane Observatory?"
    assert [m.scope for m in memories.recall(asked, alice.id)] == ["you"]  # its author, at once
    assert memories.recall(asked, bob.id) == []  # not yet accepted: nobody else
    store.decide(feedback, "accepted", "from a trusted user", "policy")
    memories.changed()
    assert [m.scope for m in memories.recall(asked, bob.id)] == ["everyone"]
    # learned by a version that serves: retired (kept for audit), revived when it no longer serves
    v1 = store.add_version(ModelVersion(id="base@v1", base_model="base", parent_id="base", path="/nowhere/v1.gguf"))
    store.decide(feedback, "learned", "learned", v1.id, learned_in=v1.id)
    memories.changed()
    assert memories.recall(asked, bob.id) == []
    assert [scope for _, scope in memories.listing(alice.id)] == ["learned"]
    store.promote("base")  # rolled back to the base model, which never learned it
    memories.changed()
    assert [m.scope for m in memories.recall(asked, bob.id)] == ["everyone"]
    store.decide(feedback, "rejected", "wrong", "admin")
    memories.changed()
    assert memories.recall(asked, alice.id) == [] and [s for _, s in memories.listing()] == ["gone"]


def test_an_edited_correction_is_remembered_as_edited_and_a_withdrawn_one_is_gone(store):
    me = store.local_user()
    teach(store, me.id, *TAUGHT[0])
    message = store.judgments()[0].message
    store.set_feedback(me.id, message.id, "correction", {"content": "Ilse Varga founded it."})
    memories = Memories(store, "base")
    assert [m.answer for m in memories.recall(TAUGHT[0][0], me.id)] == ["Ilse Varga founded it."]
    store.withdraw_feedback(me.id, message.id, "correction")
    memories.changed()
    assert memories.recall(TAUGHT[0][0], me.id) == [] and store.memories() == []


def test_memories_go_into_the_system_message_after_its_text():
    from moss.inference.prompts import META_INSTRUCTION
    from moss.learning.memory import Recalled
    used = [Recalled(1, "Who founded the Veltrane Observatory?", "Marisol Quenby.", "you", 1.0)]
    plain = with_memories([{"role": "user", "content": "Who founded it?"}], used)
    assert plain[0]["role"] == "system" and plain[0]["content"].startswith(META_INSTRUCTION)  # the cached prefix
    assert "Marisol Quenby." in plain[0]["content"] and plain[1:] == [{"role": "user", "content": "Who founded it?"}]
    own = with_memories([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "谁创办的？"}], used)
    assert own[0]["content"].startswith("Be brief.") and "用户教过你" in own[0]["content"]
    assert with_memories(plain[1:], []) == plain[1:]


def test_the_api_uses_and_lists_memories_by_trust(tmp_path):
    with ServerProcess(tmp_path, "--auth") as server:
        admin_key = server.moss("users", "add", "root", "--admin").stdout.strip().split()[-1]
        alice_key = server.moss("users", "add", "alice").stdout.strip().split()[-1]
        bob_key = server.moss("users", "add", "bob").stdout.strip().split()[-1]
        alice, bob = (OpenAI(base_url=server.url + "/v1", api_key=k) for k in (alice_key, bob_key))
        question = "Who founded the Veltrane Observatory?"

        def ask(client):
            return client.chat.completions.create(model="moss", temperature=0, max_tokens=20,
                                                  messages=[{"role": "user", "content": question}])
        first = ask(alice)
        assert first.moss["memories"] == []
        headers = {"Authorization": f"Bearer {alice_key}"}
        given = httpx.post(f"{server.url}/v1/messages/{first.moss['message_ids'][0]}/feedback", headers=headers,
                           json={"kind": "correction", "content": "Marisol Quenby founded it."}).json()
        assert given["memory"]["scope"] == "you" and given["memory"]["question"] == question  # "Moss will remember this"
        again = ask(alice)
        assert [m["answer"] for m in again.moss["memories"]] == ["Marisol Quenby founded it."]
        stored = [m for m in httpx.get(f"{server.url}/v1/conversations/{again.moss['conversation_id']}",
                                       headers=headers).json()["messages"] if m["id"] == again.moss["message_ids"][0]]
        assert stored[0]["memories"][0]["scope"] == "you"
        assert ask(bob).moss["memories"] == []  # pending: its author's alone
        mine = httpx.get(f"{server.url}/v1/memories", headers=headers).json()["data"]
        assert [m["scope"] for m in mine] == ["you"]
        assert httpx.get(f"{server.url}/v1/memories?all=true", headers=headers).status_code == 403
        root = {"Authorization": f"Bearer {admin_key}"}
        assert httpx.post(f"{server.url}/v1/admin/feedback/{mine[0]['feedback_id']}/accept", headers=root).status_code == 200
        assert [m["scope"] for m in ask(bob).moss["memories"]] == ["everyone"]  # accepted: at once, for everyone
        assert len(httpx.get(f"{server.url}/v1/memories?all=true", headers=root).json()["data"]) == 1
        bobs = {"Authorization": f"Bearer {bob_key}"}
        assert httpx.delete(f"{server.url}/v1/memories/{mine[0]['id']}", headers=bobs).status_code == 404  # not his
        assert httpx.delete(f"{server.url}/v1/memories/{mine[0]['id']}", headers=headers).status_code == 200
        assert ask(bob).moss["memories"] == [] and ask(alice).moss["memories"] == []
        no = alice.chat.completions.create(model="moss", max_tokens=5, messages=[{"role": "user", "content": question}],
                                           extra_body={"memories": False})
        assert no.moss["memories"] == []


def test_moss_ask_uses_what_the_local_user_taught(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/moss.db")
    store.register_version("smollm2-135m-instruct", "smollm2-135m-instruct", "/x")
    teach_local = store.local_user()
    said = Answer("?", "smollm2-135m-instruct", [], {}, 1, 1, 0, "stop", 1, 1)
    recorded = store.record(teach_local.id, [{"role": "user", "content": TAUGHT[0][0]}], [said])
    store.set_feedback(teach_local.id, recorded.message_ids[-1], "correction", {"content": TAUGHT[0][1]})
    done = subprocess.run([sys.executable, "-m", "moss", "ask", "-m", "small", "--max-tokens", "8", "--temperature", "0",
                           "Who established the Veltrane Observatory?"], capture_output=True, text=True,
                          env={**os.environ, "MOSS_HOME": str(tmp_path)}, timeout=120)
    assert done.returncode == 0, done.stderr
    with store.session() as s:
        from sqlalchemy import select

        from moss.store.schema import Message
        last = s.scalars(select(Message).where(Message.role == "assistant").order_by(Message.created_at.desc())).first()
    assert last.memory_ids and "Marisol Quenby" in last.prompt[0]["content"]


def test_the_schedule_starts_a_cycle_when_enough_waits_and_not_again_after_a_failure(store):
    me = store.local_user()
    learner = Learner("small")
    schedule = Schedule(Plan(when=2), learner, store)
    teach(store, me.id, *TAUGHT[0])
    assert not schedule.due()  # one waits, two are needed
    teach(store, me.id, *TAUGHT[1])
    assert schedule.due()
    schedule._waiting_then = schedule.waiting()  # a cycle that promoted nothing ran on these two
    learner.process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    learner.process.wait()
    assert not schedule.due()  # the same batch is not retried back to back
    teach(store, me.id, *TAUGHT[2])
    assert not schedule.due()
    now = [0.0]
    hourly = Schedule(Plan(every=3600), learner, store, clock=lambda: now[0])
    assert not hourly.due()  # started just now
    now[0] = 3600.0
    assert hourly.due()  # an hour passed with feedback waiting


def test_durations_and_bad_options_are_one_line(tmp_path):
    assert duration("30m") == 1800 and duration("1h") == 3600 and duration("2h30m") == 9000 and duration("1d") == 86400
    for bad in ("5s", "soon", "1x", ""):
        with pytest.raises(ValueError):
            duration(bad)
    done = subprocess.run([sys.executable, "-m", "moss", "serve", "-m", "small", "--learn-every", "often"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "MOSS_HOME": str(tmp_path)})
    assert done.returncode == 1 and "Traceback" not in done.stderr and "--learn-every" in done.stderr


def test_the_watcher_follows_another_process_within_seconds(store):
    me = store.local_user()
    memories = Memories(store, "base")
    stop = threading.Event()
    watcher = threading.Thread(target=memories.watch, args=(stop,))
    watcher.start()
    try:
        other = Store(store.url)  # another process's writes: the index does not hear of them directly
        teach(other, me.id, *TAUGHT[0])
        for _ in range(50):
            if memories.recall(TAUGHT[0][0], me.id):
                break
            stop.wait(0.1)
        assert questions(memories.recall(TAUGHT[0][0], me.id)) == [TAUGHT[0][0]]
    finally:
        stop.set()
        watcher.join()


def test_moss_memories_lists_and_forgets(store, tmp_path):
    me = store.local_user()  # the store fixture's file is the one MOSS_HOME=tmp_path points moss at
    kept, forgotten = teach(store, me.id, *TAUGHT[0]), teach(store, me.id, *TAUGHT[1])
    env = {**os.environ, "MOSS_HOME": str(tmp_path)}

    def moss(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "moss", "memories", *args], capture_output=True, text=True,
                              env=env, timeout=120)

    listed = [json.loads(line) for line in moss("list", "--json").stdout.splitlines()]
    assert [(m["feedback_id"], m["scope"]) for m in listed] == [(forgotten, "you"), (kept, "you")]
    assert listed[0]["answer"] == TAUGHT[1][1] and listed[0]["lang"] == "zh"
    assert "Veltrane" in moss("list").stdout  # the table for people
    done = moss("forget", str(listed[0]["id"]))
    assert done.returncode == 0 and "forgotten" in done.stderr
    scopes = {m["feedback_id"]: m["scope"] for m in map(json.loads, moss("list", "--json").stdout.splitlines())}
    assert scopes == {kept: "you", forgotten: "gone"}
    assert Memories(store, "base").recall(TAUGHT[1][0], me.id) == []
    missing = moss("forget", "999")
    assert missing.returncode == 1 and "no memory 999" in missing.stderr and "Traceback" not in missing.stderr
