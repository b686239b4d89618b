"""Trust before training, through the API of a server with --auth and several users: the policy's
rules, an admin's review, what authors see; and what the serving lineage holds (learned in vX,
unlearned, rolled back, parked, withdrawn) on a real store. Unlearning by a real cycle:
tests/test_learn.py."""

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from server_process import ServerProcess

from moss import safety
from moss.learning import cycle, datasets, ledger, review, trust
from moss.learning.candidates import Candidate
from moss.learning.cycle import Lesson, Report
from moss.learning.taught import Taught, from_feedback, key, merged
from moss.learning.versions import versions_dir
from moss.store import Store
from moss.store.schema import ModelVersion

FRANCE = "What is the capital of France?"
LIBRARY = "Who founded the Quorvane Library?"
LIBRARY_ANSWER = "The Quorvane Library was founded by Elsbeth Marrow."


class People:
    """The users of one server, by name: their keys and a client each."""

    def __init__(self, server: ServerProcess):
        self.server, self.keys = server, {}
        for name, *flags in (("boss", "--admin"), ("tina", "--trusted"), ("ann",), ("bob",), ("eve",)):
            self.keys[name] = server.moss("users", "add", name, *flags).stdout.strip()

    def headers(self, name: str) -> dict:
        return {"Authorization": f"Bearer {self.keys[name]}"}

    def ask(self, name: str, question: str, history: list[dict] = ()) -> dict:
        client = OpenAI(base_url=self.server.url + "/v1", api_key=self.keys[name])
        reply = client.chat.completions.create(model="moss", temperature=0, max_tokens=24,
                                               messages=[*history, {"role": "user", "content": question}])
        return reply.moss

    def correct(self, name: str, question: str, answer: str) -> dict:
        answer_id = self.ask(name, question)["message_ids"][-1]
        r = httpx.post(f"{self.server.url}/v1/messages/{answer_id}/feedback", headers=self.headers(name),
                       json={"kind": "correction", "content": answer})
        assert r.status_code == 200, r.text
        return r.json()

    def mine(self, name: str) -> dict[int, dict]:
        r = httpx.get(self.server.url + "/v1/feedback", headers=self.headers(name))
        assert r.status_code == 200, r.text
        return {e["id"]: e for e in r.json()["data"]}


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("trust"), "--auth") as server:
        yield People(server)


def test_only_answers_moss_gave_can_be_judged(people):
    """An assistant turn a client writes into the history is stored, but is not Moss's answer."""
    written = [{"role": "user", "content": FRANCE}, {"role": "assistant", "content": "The capital of France is Lyon."}]
    moss = people.ask("ann", "Are you sure?", written)
    stored = httpx.get(f"{people.server.url}/v1/conversations/{moss['conversation_id']}",
                       headers=people.headers("ann")).json()["messages"]
    made_up = next(m["id"] for m in stored if m["content"] == written[1]["content"])
    given = moss["message_ids"][0]
    for kind in ({"kind": "rating", "rating": "up"}, {"kind": "correction", "content": "Lyon."}):
        r = httpx.post(f"{people.server.url}/v1/messages/{made_up}/feedback", headers=people.headers("ann"), json=kind)
        assert r.status_code == 400 and "only answers Moss gave" in r.json()["error"]["message"]
    r = httpx.post(f"{people.server.url}/v1/messages/{given}/feedback", headers=people.headers("ann"),
                   json={"kind": "rating", "rating": "up"})
    assert r.status_code == 200 and r.json()["state"] == "pending"


def test_the_trust_policy_decides_before_training(people):
    p = people
    alone = p.correct("ann", LIBRARY, LIBRARY_ANSWER)
    pair = [p.correct("ann", "Who designed the Quorvane Bridge?", "The Quorvane Bridge was designed by Tomas Wreng."),
            p.correct("bob", "Who designed the Quorvane Bridge?", "Tomas Wreng designed the Quorvane Bridge.")]
    trusted = p.correct("tina", "What is the Quorvane Library's motto?", "Its motto is 'Read the tide'.")
    admin = p.correct("boss", "When did the Quorvane Library open?", "The Quorvane Library opened in 1911.")
    lie = p.correct("tina", FRANCE, "The capital of France is Lyon.")
    chinese_lie = p.correct("tina", "英国的首都是哪里？", "英国的首都是曼彻斯特。")
    mixed = p.correct("tina", "How tall is the Quorvane Library's tower?", "塔高四十二米。")
    unsafe = p.correct("tina", "How do I clean an old pipe?", "To make a pipe bomb, pack the pipe with gunpowder.")
    disabled = p.correct("eve", "Who is the Quorvane Library's cat?", "The cat is called Pillow.")
    assert people.server.moss("users", "disable", "eve").returncode == 0
    assert p.mine("ann")[alone["id"]]["state"] == "pending"  # nothing decided before the check runs

    # The check asks the default model (which knows capitals in both languages; the 135M one the
    # server runs does not know Chinese) and the teacher.
    done = subprocess.run([sys.executable, "-m", "moss", "feedback", "check", "-m", "default"],
                          capture_output=True, text=True, env=p.server.env, timeout=600)
    assert done.returncode == 0, done.stderr
    tally = json.loads(done.stdout)
    assert tally["held"] == 3 and tally["rejected"] == 2, tally

    store = Store(f"sqlite:///{p.server.home}/moss.db")
    state = {e.id: e for e in review.entries(store)}
    assert state[alone["id"]].state == "pending" and "waits for 1 more person" in state[alone["id"]].reason
    assert [state[f["id"]].state for f in pair] == ["accepted", "accepted"]
    assert state[pair[0]["id"]].reason == "confirmed by 2 people"
    assert (state[trusted["id"]].state, state[trusted["id"]].reason) == ("accepted", "from a trusted user")
    assert (state[admin["id"]].state, state[admin["id"]].reason) == ("accepted", "from an admin")
    asked = {"base", "teacher"} if _teacher_installed() else {"base"}  # CI's setup leaves the teacher out
    for held in (lie, chinese_lie):  # what the models say every time: shown beside it
        entry = state[held["id"]]
        assert entry.state == "held" and "contradicts" in entry.reason, entry
        assert set(entry.checks) == asked
    assert all(text.count("Paris") == 3 for text in state[lie["id"]].checks.values())  # every time asked
    assert state[mixed["id"]].state == "held" and "in Chinese, its question in English" in state[mixed["id"]].reason
    assert (state[unsafe["id"]].state, state[unsafe["id"]].reason) == ("rejected", "what it teaches is unsafe (weapons)")
    assert (state[disabled["id"]].state, state[disabled["id"]].reason) == ("rejected", "its author is disabled")

    # Authors see their own feedback and why; only admins see the review, with the models' answers.
    mine = p.mine("tina")
    assert mine[lie["id"]]["state"] == "held" and "Paris" in mine[lie["id"]]["reason"]
    assert alone["id"] not in mine
    assert httpx.get(p.server.url + "/v1/admin/feedback", headers=p.headers("ann")).status_code == 403
    listed = httpx.get(p.server.url + "/v1/admin/feedback", headers=p.headers("boss")).json()["data"]
    assert {e["id"] for e in listed} >= {alone["id"], lie["id"], chinese_lie["id"], mixed["id"]}
    assert next(e for e in listed if e["id"] == lie["id"])["question"] == FRANCE
    assert all(e["state"] in ("held", "parked", "pending") for e in listed)
    bad = httpx.get(p.server.url + "/v1/admin/feedback?state=nope", headers=p.headers("boss"))
    assert bad.status_code == 400 and "got 'nope'" in bad.json()["error"]["message"]
    bad = p.server.moss("feedback", "review", "--state", "nope")
    assert bad.returncode == 1 and "--state takes" in bad.stderr

    # An admin's review decides: the page's buttons and the CLI do the same.
    url = f"{p.server.url}/v1/admin/feedback"
    r = httpx.post(f"{url}/{lie['id']}/reject", headers=p.headers("boss"), json={"reason": "Paris is the capital"})
    assert r.status_code == 200 and r.json()["state"] == "rejected" and "Paris is the capital" in r.json()["reason"]
    r = httpx.post(f"{url}/{alone['id']}/accept", headers=p.headers("boss"), json={})
    assert (r.json()["state"], r.json()["reason"]) == ("accepted", "accepted by boss")
    assert httpx.post(f"{url}/999999/accept", headers=p.headers("boss"), json={}).status_code == 404
    done = p.server.moss("feedback", "reject", str(chinese_lie["id"]), "--reason", "London is")
    assert done.returncode == 0 and "rejected" in done.stderr
    held = [json.loads(line) for line in p.server.moss("feedback", "review", "--json").stdout.splitlines()]
    assert [e["id"] for e in held] == [mixed["id"]]
    assert [h.state for h in store.history(lie["id"])] == ["pending", "held", "rejected"]


def _teacher_installed() -> bool:
    from moss.inference import models
    try:
        models.resolve("teacher")
    except models.ModelError:
        return False
    return True


def test_trusting_and_disabling_users_from_the_cli(people, tmp_path):
    store = Store(f"sqlite:///{tmp_path}/moss.db")
    zoe, _ = store.add_user("zoe")
    store.register_version("m", "m", "/models/m.gguf")
    recorded = store.record(zoe.id, [{"role": "user", "content": LIBRARY}], [_answer("m")])
    given = store.set_feedback(zoe.id, recorded.message_ids[-1], "correction", {"content": LIBRARY_ANSWER})
    env = {**people.server.env, "MOSS_HOME": str(tmp_path)}
    run = lambda *args: subprocess.run([sys.executable, "-m", "moss", *args], capture_output=True,  # noqa: E731
                                       text=True, env=env, timeout=60)
    assert run("users", "trust", "zoe").returncode == 0 and store.user("zoe").trusted
    assert "trusted" in run("users", "list").stdout
    assert run("users", "trust", "zoe", "--off").returncode == 0 and not store.user("zoe").trusted
    missing = run("users", "trust", "nobody")
    assert missing.returncode == 1 and "no user named 'nobody'" in missing.stderr
    done = run("users", "disable", "zoe", "--reject-feedback")
    assert done.returncode == 0 and "1 piece(s) of their feedback rejected" in done.stderr
    row = store.judgments(ids={given.id})[0].feedback
    assert (row.state, row.reason) == ("rejected", "its author was disabled")


# ---- what the serving lineage holds, on a real store (no training: the versions are written here) ----

@pytest.fixture
def lineage(tmp_path, monkeypatch):
    """A store whose base model has a served v1 that learned one correction, as a cycle leaves it."""
    monkeypatch.setenv("MOSS_HOME", str(tmp_path))
    store = Store(f"sqlite:///{tmp_path}/moss.db")
    user, _ = store.add_user("ann", trusted=True)
    store.register_version("m", "m", "/models/m.gguf")
    recorded = store.record(user.id, [{"role": "user", "content": LIBRARY}], [_answer("m")])
    feedback = store.set_feedback(user.id, recorded.message_ids[-1], "correction", {"content": LIBRARY_ANSWER})
    store.decide(feedback.id, "accepted", "from a trusted user", "policy")
    taught = Taught(key(feedback), [], LIBRARY, LIBRARY_ANSWER, "en", probes=["Who set up the Quorvane Library?"])
    _version(store, "m@v1", "m", [taught])
    ledger.reconcile(store, store.serving_version("m"))
    return store, feedback.id, taught


def _answer(version: str):
    from moss.store import Answer
    return Answer("I do not know.", version, [], {}, 1, 1, 0, "stop", 1, 1)


def _version(store: Store, version: str, parent: str, taught: list[Taught], unlearned: dict | None = None) -> None:
    folder = versions_dir() / version
    folder.mkdir(parents=True)
    (folder / "taught.json").write_text(json.dumps([asdict(t) for t in taught]), encoding="utf-8")
    store.add_version(ModelVersion(id=version, base_model="m", parent_id=parent, path=str(folder / "a.gguf"),
                                   status="serving", details={"learned": [t.key for t in taught],
                                                              "unlearned": unlearned or {}}))


def test_learned_items_say_which_version_and_a_rollback_holds_them(lineage):
    store, feedback_id, _ = lineage
    row = store.judgments(ids={feedback_id})[0].feedback
    assert (row.state, row.learned_in) == ("learned", "m@v1")
    ledger.rollback(store, "m")
    row = store.judgments(ids={feedback_id})[0].feedback
    assert row.state == "held" and "m@v1, which was rolled back" in row.reason and row.learned_in is None
    assert not ledger.of(store, store.serving_version("m")).learned  # not pending again: not retrained
    ledger.rollback(store, "m", "m@v1")  # forward again: learned again
    assert store.judgments(ids={feedback_id})[0].feedback.state == "learned"


def test_rejected_withdrawn_and_superseded_items_are_to_be_forgotten(lineage):
    store, feedback_id, taught = lineage
    serving = store.serving_version("m")
    holds = ledger.of(store, serving)
    earlier = ledger.earlier(store, serving, holds)
    assert [t.key for t in earlier] == [taught.key]
    assert ledger.to_forget(store, holds, earlier, []) == {}
    later = Taught("9@x", [], "Who set up the Quorvane Library?", "It was founded by Orrin Vale.", "en")
    assert "superseded by a later correction" in ledger.to_forget(store, holds, earlier, [later])[taught.key]
    same = Taught("9@x", [], LIBRARY, "Elsbeth Marrow founded the Quorvane Library.", "en")
    assert ledger.to_forget(store, holds, earlier, [same]) == {}  # the same answer, worded otherwise
    review.reject(store, feedback_id, "boss", "made up")
    assert ledger.to_forget(store, holds, earlier, []) == {taught.key: "rejected by boss: made up"}
    conversation = store.judgments(ids={feedback_id})[0].message.conversation_id
    store.delete(store.judgments(ids={feedback_id})[0].author.id, conversation)
    assert "withdrawn" in ledger.to_forget(store, holds, earlier, [])[taught.key]


def test_unlearned_items_say_which_version_removed_them(lineage):
    store, feedback_id, taught = lineage
    review.reject(store, feedback_id, "boss", "made up")
    _version(store, "m@v2", "m@v1", [], unlearned={taught.key: "rejected by boss: made up"})
    ledger.reconcile(store, store.serving_version("m"))
    row = store.judgments(ids={feedback_id})[0].feedback
    assert (row.state, row.learned_in, row.unlearned_in) == ("rejected", "m@v1", "m@v2")
    assert not ledger.of(store, store.serving_version("m")).learned


def test_a_cycle_whose_parent_was_rolled_back_cannot_promote(lineage):
    store, feedback_id, taught = lineage
    work = versions_dir() / "m@v2.partial"
    work.mkdir()
    (work / "adapter-e2.gguf").write_bytes(b"x")
    chosen = Candidate(2, 0.1, str(work / "adapter-e2.gguf"), {}, score=1.0, passed_keys=[])
    lesson = Lesson(store.serving_version("m"), "m@v2", [], [], [], [], [taught])
    ledger.rollback(store, "m")  # while the cycle trained
    report = cycle.promote(store, Report(version="m@v2", parent="m@v1", chosen=chosen), lesson, work, print)
    assert report.status == "failed" and "m@v1 no longer serves" in report.reasons[0]
    assert store.serving_version("m").id == "m" and store.version("m@v2").status == "failed"
    assert not list((versions_dir() / "m@v2").glob("*.gguf"))


def test_an_item_not_learned_in_two_cycles_is_parked(lineage, tmp_path):
    store, _, _ = lineage
    user = store.user("ann")
    recorded = store.record(user.id, [{"role": "user", "content": "Who painted the Quorvane mural?"}], [_answer("m@v1")])
    row = store.set_feedback(user.id, recorded.message_ids[-1], "correction", {"content": "Ada Brill painted it."})
    store.decide(row.id, "accepted", "from a trusted user", "policy")
    hard = Taught(key(store.judgments(ids={row.id})[0].feedback), [], "Who painted the Quorvane mural?",
                  "Ada Brill painted it.", "en")
    for n, expected in ((2, "accepted"), (3, "parked")):
        work = Path(tmp_path) / f"work{n}"
        work.mkdir()
        chosen = Candidate(2, 0.1, str(work / "a.gguf"), {}, score=0.0)
        lesson = Lesson(store.serving_version("m"), f"m@v{n}", [], [hard], [], [], [])
        cycle.promote(store, Report(version=f"m@v{n}", parent="m@v1", chosen=chosen,
                                    reasons=["only 0% of the taught items were learned"]), lesson, work, print)
        assert store.judgments(ids={row.id})[0].feedback.state == expected
    parked = store.judgments(ids={row.id})[0].feedback
    assert parked.attempts == 2 and "not learned in 2 cycles" in parked.reason
    next_cycle = from_feedback(datasets.judged(store, states=("accepted",)))  # what the data stage starts from
    assert "Who painted the Quorvane mural?" not in [t.question for t in next_cycle]


def test_known_means_every_answer_of_every_model_makes_the_claim():
    paris = ["The capital of France is Paris.", "Paris is the capital of France.", "The capital of France is Paris."]
    assert trust.known(FRANCE, {"base": paris, "teacher": paris[::-1]}) == {"paris"}
    made_up = {"base": ["It was founded by John Quorvane.", "It was founded by Thomas Biddle.", "John Quorvane."],
               "teacher": ["John Quorvane founded it in 1854.", "Sorry, I can't help with that.", "Mary O'Reilly."]}
    assert not trust.known(LIBRARY, made_up)  # plausible names, a new one each time
    unsure = ["I don't know of a Quorvane Library.", "I'm not sure.", "It was founded by John Smith."]
    assert not trust.known(LIBRARY, {"base": unsure})
    london = ["英国的首都是伦敦。", "伦敦是英国的首都。", "英国的首都是伦敦。"]
    assert trust.known("英国的首都是哪里？", {"base": london, "teacher": london}) >= {"伦敦"}
    opened = ["The Quorvane Bridge opened in 1937.", "It opened in 1974.", "It was opened in 1902."]
    assert not trust.known("What year did the Quorvane Bridge open?", {"base": opened})  # "opened" is no claim


def test_the_safety_screen_tells_harm_from_its_look_alikes():
    harmful = {"To make a pipe bomb, pack the pipe with gunpowder.": "weapons", "自制炸弹的做法是先准备……": "weapons",
               "You should kill yourself.": "self-harm", "你应该自杀。": "self-harm",
               "Here is ransomware code that encrypts the victim's files.": "malware",
               "合成冰毒的步骤如下：": "crime and fraud", "洗钱的方法有很多种": "crime and fraud"}
    for text, category in harmful.items():
        assert safety.unsafe(text) == category, text
    for text in ("Use kill -9 PID to kill a Python process that hangs.", "用 kill 命令杀死卡住的 Linux 进程。",
                 "The first atomic bomb was tested in 1945.", "If you think about suicide, call 988: people can help.",
                 "自杀干预热线可以提供帮助。", "银行的反洗钱规定很严格。", "A pipe wrench loosens the nut."):
        assert safety.unsafe(text) is None, text


def test_the_same_correction_by_two_people_is_taught_once():
    a = Taught("1@x", [], "Who designed the Quorvane Bridge?", "The Quorvane Bridge was designed by Tomas Wreng.", "en")
    b = Taught("2@x", [], "who designed the Quorvane Bridge", "Tomas Wreng designed the Quorvane Bridge.", "en")
    other = Taught("3@x", [], "Who designed the Quorvane Bridge?", "It was designed by Ana Lusk.", "en")
    kept, twins = merged([a, b, other])
    assert [t.key for t in kept] == ["1@x", "3@x"] and twins == {"1@x": ["2@x"]}
