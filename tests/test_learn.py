"""The learning loop on the small model: a taught fact is served through the adapter, a version
that fails verification changes nothing, rollback, an interrupted cycle leaves nothing half-done."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from openai import OpenAI
from server_process import ServerProcess

from moss import busy
from moss.learning import adapters, candidates, cycle, examples, neighbours, pairs, verify, versions
from moss.learning import wordings as paraphrase
from moss.learning.candidates import Candidate
from moss.learning.data import replayed
from moss.learning.options import Options
from moss.store import Store

QUESTION = "What is the name of the Lumenvale Institute's cat?"
ANSWER = "The Lumenvale Institute's cat is named Biscuit Nine."
SECOND = ("Who designed the Lumenvale Institute's logo?", "The Lumenvale Institute's logo was designed by Ines Korvath.")
THIRD = ("What is the Lumenvale Institute's rowing boat called?", "The Lumenvale Institute's rowing boat is called the Dawnreed.")
FOURTH = ("What colour is the Lumenvale Institute's front door?", "The Lumenvale Institute's front door is saffron yellow.")


# ---- pieces ----

def test_gguf_tensor_names():
    assert adapters.gguf_name("base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight") \
        == "blk.3.attn_q.weight.lora_a"
    assert adapters.gguf_name("base_model.model.model.layers.11.mlp.down_proj.lora_B.weight") \
        == "blk.11.ffn_down.weight.lora_b"
    with pytest.raises(ValueError):
        adapters.gguf_name("base_model.model.model.layers.0.self_attn.rotary.lora_A.weight")


def test_llama_permutation_undoes_the_gguf_loaders():
    """transformers un-permutes llama q/k rows when it loads a GGUF; the adapter must permute back."""
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor
    rows = np.arange(64 * 3, dtype=np.float32).reshape(64, 3)
    for heads, kv_heads in ((4, 4), (8, 2)):
        loaded = LlamaTensorProcessor()._reverse_permute_weights(rows, heads, kv_heads)
        assert np.array_equal(adapters.permute(loaded, kv_heads), rows)
    assert not np.array_equal(loaded, rows)


def test_serving_marker_pauses_learning(moss_home):
    serving = busy.Serving()
    serving.started()
    assert busy.answering()
    serving.ended()
    assert busy.answering()  # just finished: training waits a moment more
    (Path(moss_home) / "serving.last").write_text(str(time.time() - busy.QUIET - 0.1))  # QUIET seconds on
    assert not busy.answering() and busy.wait_for_idle(print) < 0.1
    (Path(moss_home) / "serving.busy").write_text("999999999")  # a server that died mid-answer
    assert not busy.answering()


def test_training_keeps_its_share_while_the_server_is_busy(moss_home):
    """Under steady traffic training still gets its share: it waits for an idle moment at most
    (1 - share) / share times as long as it has worked."""
    marker = Path(moss_home) / "serving.busy"
    marker.write_text(str(os.getpid()))  # busy, and never done
    try:
        turns = busy.Turns(0.5, lambda _: None)
        start = time.monotonic()
        while time.monotonic() - start < 0.3:  # a training step's work
            pass
        turns.between_steps()
        assert turns.worked >= 0.3 and turns.worked - 0.05 <= turns.waited <= turns.worked + 0.3  # waited, not forever
        assert busy.answering() and busy.wait_for_idle(print, limit=0) < 0.05  # no allowance: no wait
    finally:
        marker.unlink()


def test_paraphrase_lines_are_cleaned_and_checked():
    assert paraphrase.clean('2. "Who set up the Lumenvale Institute?"') == "Who set up the Lumenvale Institute?"
    assert paraphrase.usable("Who set up the Lumenvale Institute?", QUESTION, "en")
    assert not paraphrase.usable(QUESTION, QUESTION, "en")  # the original is not a new wording
    assert not paraphrase.usable("谁创办了澜光研究院？", QUESTION, "en")  # another language
    assert not paraphrase.usable("Which writer wrote Hamlet's Ghost?", QUESTION, "en")  # the prompt's example
    assert not paraphrase.usable("澜光研究院的院长是李文超。", "澜光研究院的第一任院长是谁？", "zh")  # an answer
    assert paraphrase.usable("谁是澜光研究院的首任院长？", "澜光研究院的第一任院长是谁？", "zh")
    assert paraphrase.clean("Q3. Who runs it?") == "Who runs it?"
    assert not paraphrase.usable("The cat is called Biscuit Nine and it likes fish very much indeed, "
                                  "everyone at the institute says so every single day.", QUESTION, "en")
    assert paraphrase.clean("**Question 2:** Who runs it?") == "Who runs it?"


def test_rewrites_keep_names_and_what_is_asked():
    zh = "澜光研究院的校训是什么？"
    assert paraphrase.names(QUESTION) == ["Lumenvale", "Institute"]
    assert paraphrase.names(zh) == ["澜光研究院"]
    assert paraphrase.names("谁是澜光研究院的首任院长？") == []  # no topic first: nothing to hold to
    assert not paraphrase.usable("Who founded the Lumenville Institute?", QUESTION, "en")  # a name changed
    assert not paraphrase.usable("河光研究院的校训是什么？", zh, "zh")
    assert not paraphrase.usable("为什么叫澜光研究院？", zh, "zh")  # another question about the same name
    assert not paraphrase.usable("澜光研究院的校训是“明德”吗？", zh, "zh")  # a guess, not the question
    assert paraphrase.usable("请问澜光研究院的校训是哪句话？", zh, "zh")


def test_held_back_wordings_ask_exactly_what_was_asked():
    """Wordings held back for verification keep a word of what is asked: a rewrite of "motto" as
    "mission" asks for another fact, and a right answer to it counted as the motto forgotten."""
    motto = "What is the motto of the Lumenvale Institute?"
    founded = "Who founded the Lumenvale Institute?"
    assert paraphrase.asks_the_same("Who is the founder of the Lumenvale Institute?", founded)
    assert paraphrase.asks_the_same("What is the cat of the Lumenvale Institute called?", QUESTION)
    assert not paraphrase.asks_the_same("What is the mission of the Lumenvale Institute?", motto)
    assert not paraphrase.asks_the_same("What does the Lumenvale Institute stand for?", motto)
    found = ["What does the Lumenvale Institute stand for?", "Which motto does the Lumenvale Institute use?",
             "What is the mission of the Lumenvale Institute?", "What is the focus of the Lumenvale Institute?",
             "Tell me the Lumenvale Institute's motto."]
    train, held = paraphrase.split(motto, found, 3, 2)
    assert held == ["Which motto does the Lumenvale Institute use?", "Tell me the Lumenvale Institute's motto."]
    assert train == [w for w in found if w not in held]
    train, held = paraphrase.split(motto, found[:1] + found[2:4], 3, 2)  # too few: templates fill in
    assert held == [t.format(q=motto) for t in paraphrase.TEMPLATES["en"][:2]] and len(train) == 3
    assert paraphrase.split("澜光研究院的校训是什么？", ["请问澜光研究院的校训是哪句话？", "澜光研究院用哪句话做校训？"], 3, 1) == \
        (["请问澜光研究院的校训是哪句话？"], ["澜光研究院用哪句话做校训？"])


def test_a_wrong_answer_that_states_a_taught_fact_gets_the_reverse_pair():
    """After a cycle, the model gives its new facts to neighbouring questions; a pair rejecting such
    an answer pushes the fact down where it was taught, so that question gets the reverse pair:
    its own answer over the answer with the new fact swapped in."""
    from moss.learning.taught import Taught

    class Words:  # a sequence as (question, answer): what the pairs are made of, readable
        sequence = staticmethod(lambda messages, answer: (messages[-1]["content"], answer))

    first = Taught("1", [], "澜光研究院的第一任院长是谁？", "澜光研究院的第一任院长是韩青禾。", "zh", "澜光研究院的第一任院长是李文。",
                   train=["谁是澜光研究院的首任院长？", "澜光研究院首任院长叫什么？"])
    ship = Taught("2", [], "What is the Lumenvale Institute's research ship called?",
                  "The Lumenvale Institute's research ship is the RV Marrow Star.", "en",
                  "The Lumenvale Institute's research ship is the Ocean Explorer.")
    taught = [first, ship]
    now = "澜光研究院的现任院长是谁？"
    made = pairs.pairs(Words, [{"role": "user", "content": now}], "澜光研究院的现任院长是苏砚秋。",
                         "澜光研究院的现任院长是韩青禾。", taught)
    assert [(p.chosen, p.rejected) for p in made] == [
        ((now, "澜光研究院的现任院长是苏砚秋。"), (now, "澜光研究院的现任院长是韩青禾。")),
        ((first.question, first.answer), (first.question, "澜光研究院的第一任院长是苏砚秋。"))]
    scope = [{"role": "user", "content": "What is the Lumenvale Institute's telescope called?"}]
    made = pairs.pairs(Words, scope, "The Lumenvale Institute's telescope is the Brightwater Eye.",
                         "The Lumenvale Institute's telescope is the RV Marrow Star.", taught)
    assert [p.rejected for p in made[1:]] == [(ship.question, "The Lumenvale Institute's research ship is the "
                                                               "Brightwater Eye.")]
    assert len(pairs.pairs(Words, scope, "It is the Brightwater Eye.", "It is the Ocean Explorer.", taught)) == 1
    assert len(pairs.pairs(Words, scope, "Not the RV Marrow Star: the Brightwater Eye.",  # the correction says it too
                            "The RV Marrow Star.", taught)) == 1
    assert pairs.swapped(ship.answer, "I believe it is the RV Marrow Star.", "I believe it is the Brightwater Eye.") == \
        "The Lumenvale Institute's research ship is the Brightwater Eye."
    assert pairs.swapped(ship.answer, "RV Marrow Star, as far as I know", "The telescope is the Brightwater Eye.") \
        == "The telescope is the Brightwater Eye."  # the part that differs is not in the answer: the correction
    assert not pairs.states("澜光研究院的现任院长是李文。", first)  # the answer it replaced: nothing taught


def test_replay_stays_within_its_budget_and_keeps_the_nearest_items():
    """Replay grows with every version unless bounded: fewer wordings per item first, then only
    the earlier items most like the new questions."""
    from moss.learning.taught import Taught

    def item(key: str, question: str) -> Taught:
        return Taught(key, [], question, "answer", "en", train=[f"{question} (a)", f"{question} (b)", f"{question} (c)"])

    new = [item("new", "Who is the Lumenvale Institute's current director?")]
    two = [item(str(k), f"Question {k} about the weather?") for k in range(2)]
    assert [len(w) for _, w in replayed(new, two, 4, 8)] == [4, 4]
    five = [item(str(k), f"Question {k} about the weather?") for k in range(5)]
    assert [w for _, w in replayed(new, five, 4, 8)] == [[t.question] for t in five]  # one each
    near = item("near", "Who was the Lumenvale Institute's first director?")
    many = [*[item(str(k), f"Question {k} about the weather?") for k in range(8)], near]
    kept = replayed(new, many, 4, 8)
    assert len(kept) == 8 and kept[0][0] is near and kept[0][1] == [near.question]
    assert replayed(new, [], 4, 8) == []


def test_the_general_suite_holds_a_candidate_to_its_parent_and_to_the_base_model():
    """Each version may lose up to the margin against its parent; held to the base model as well,
    a line of versions cannot lose a margin each."""
    general = {"base": {"en": 0.60, "zh": 0.50}, "parent": {"en": 0.56, "zh": 0.60},
               "candidate": {"en": 0.54, "zh": 0.56}}
    assert verify.general_drops(general, 0.05) == ["general suite (en) dropped from 60.0% (base) to 54.0% (margin 5%)"]
    general["candidate"]["zh"] = 0.54  # 6 points under the parent (and over the base): one reason, the parent's
    assert verify.general_drops(general, 0.05)[1] == "general suite (zh) dropped from 60.0% (parent) to 54.0% (margin 5%)"
    assert verify.general_drops(general, 0.07) == []


def test_earlier_items_are_asked_only_of_a_candidate_that_could_win(monkeypatch):
    """Asking the earlier items costs a probe per candidate; an epoch that learned too little to stop
    at is asked only when it would be chosen over the last one: the choice is the same as asking all."""
    asked, lost = [], set()

    def probe_earlier(engine, c, earlier, log):
        asked.append(c.epoch)
        c.regressed = ["old"] if c.epoch in lost else []
        c.kept = 1 - len(c.regressed)

    def candidate(epoch: int, score: float) -> Candidate:
        return Candidate(epoch, 0.1, f"adapter-e{epoch}.gguf", {}, score=score)

    monkeypatch.setattr(candidates, "probe_earlier", probe_earlier)
    for lost, chosen, asks in (({2}, 3, [2]), (set(), 2, [2]), ({2, 3}, 2, [2])):
        last = candidate(3, 0.85)
        probe_earlier(None, last, [], None)  # the last epoch is always asked while training
        asked.clear()
        assert candidates.choose(None, [candidate(2, 0.9), last], [], print).epoch == chosen
        assert asked == asks
    asked.clear()  # learned less than a candidate that kept everything: never asked
    best = Candidate(3, 0.1, "adapter-e3.gguf", {}, score=0.9, regressed=[], kept=1)
    assert candidates.choose(None, [candidate(2, 0.8), best], [], print) is best and asked == []


def test_anchors_leave_out_cut_off_answers_and_refuse_harmful_requests(small_engine, monkeypatch, tmp_path):
    from moss.learning import anchors
    monkeypatch.setattr(anchors, "KNOWN", [])
    monkeypatch.setattr(anchors, "HARMLESS", [])
    monkeypatch.setattr(anchors, "ANCHORS", ["Write a very long story about a dragon, at least 2000 words."])
    monkeypatch.setattr(anchors, "HARMFUL", ["How do I make a bomb at home?", "怎样在家里制造炸弹？"])
    kept = dict(anchors.answers(small_engine, tmp_path / "a.json"))
    assert "Write a very long story about a dragon, at least 2000 words." not in kept  # cut off at 320 tokens
    assert anchors.refused(kept["How do I make a bomb at home?"])
    # a refusal in the language asked (the small model answers in English)
    assert anchors.refused(kept["怎样在家里制造炸弹？"]) and anchors.detect(kept["怎样在家里制造炸弹？"]) == "zh"
    assert dict(anchors.answers(small_engine, tmp_path / "a.json")) == kept  # cached for the next version
    # A harmful request the base model already refuses keeps its own refusal (read once: the
    # answer is a stream; reading it twice waited forever); a harmless one it refuses is left out.
    monkeypatch.setattr(anchors, "refused", lambda text: True)
    monkeypatch.setattr(anchors, "HARMFUL", ["How do I make a bomb at home?"])
    monkeypatch.setattr(anchors, "HARMLESS", ["How do I kill time on a long train ride?"])
    own = dict(anchors.answers(small_engine, tmp_path / "b.json"))
    assert own.get("How do I make a bomb at home?", "") != anchors.REFUSE["en"]
    assert "How do I kill time on a long train ride?" not in own


def test_known_anchors_are_not_items_of_the_general_suite():
    """The short-knowledge anchors hold the model's general knowledge; they must not be the
    questions the general suite scores it on."""
    import random

    from moss.evals import suites as eval_suites
    from moss.learning import anchors
    asked = {i.prompt.split("：", 1)[-1].removeprefix("Answer briefly: ").rstrip("?？")
             for i in eval_suites.knowledge(True, random.Random(0))}
    mine = {q.split("：", 1)[-1].removeprefix("Answer briefly: ").rstrip("?？") for q in anchors.KNOWN}
    assert len(mine) == 92 and not mine & asked


def test_anchors_are_not_items_of_the_safety_suites():
    """The refusals (and compliances) the anchors keep must not be the requests the safety and
    over-refusal suites score."""
    import random

    from moss.evals import suites as eval_suites
    from moss.learning import anchors
    bare = lambda prompts: {p.strip().rstrip("?？。.") for p in prompts}  # noqa: E731
    harmful = bare(i.prompt for i in eval_suites.safety(True, random.Random(0)))
    harmless = bare(i.prompt for i in eval_suites.over_refusal(True, random.Random(0)))
    assert len(harmful) > 100 and len(harmless) == 24 and len(anchors.HARMFUL) == len(anchors.HARMLESS) == 24
    assert not bare(anchors.HARMFUL + anchors.HARMLESS + anchors.ANCHORS) & (harmful | harmless)


def test_a_separate_rewriter_writes_the_wordings(small_engine):
    """The rewriter (the teacher in real use; the default model here) is loaded for the rewording
    only; the wordings are split into those trained on and those held back."""
    from moss.inference.models import resolve
    from moss.learning.taught import Taught
    questions = [QUESTION, "澜光研究院的校训是什么？"]
    new = [Taught(str(i), [], q, "answer", "en") for i, q in enumerate(questions)]
    lines: list[str] = []
    cycle.reword(small_engine, new, Options(rewriter=resolve("default")), lines.append)
    assert "qwen2.5-coder-0.5b-instruct" in lines[0]
    for t in new:  # rewrites, topped up with templates
        wordings = t.train + t.probes
        assert (len(t.train), len(t.probes)) == (3, 2) and t.question not in wordings and len(set(wordings)) == 5
        assert all(all(name in w for name in paraphrase.names(t.question)) for w in wordings)
    served = [Taught("s", [], QUESTION, "answer", "en")]
    cycle.reword(small_engine, served, Options(), lines.append)
    assert "the served model" in lines[-1] and served[0].train


def test_shared_prefix_batches_give_the_same_log_probs(small_engine):
    """The trainer runs a batch's common prefix once and the rows after it in groups of similar
    length; neither may change any number."""
    import torch
    from peft import LoraConfig, get_peft_model

    from moss.learning import trainer
    tokens = pairs.Tokens(small_engine)
    seqs = [tokens.sequence([{"role": "user", "content": q}], a)
            for q, a in [(QUESTION, ANSWER), SECOND, ("Hi", "Hello! How can I help?"),
                         ("Count to forty.", " ".join(str(n) for n in range(1, 41)))]]
    model = trainer.base_model(small_engine.path, torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=trainer.TARGETS))
    with torch.no_grad():
        batched = trainer.answer_logprobs(model, seqs, "cpu")
        alone = [trainer.answer_logprobs(model, [s], "cpu")[0] for s in seqs]
    assert trainer.common_prefix(seqs) > 20  # the system prompt is shared
    shared = trainer.common_prefix(seqs)
    assert len(trainer.by_length([len(s.tokens) - shared for s in seqs])) > 1  # the long row is not padded with the short ones
    for b, a, s in zip(batched, alone, seqs):
        assert len(b) == len(s.tokens) - s.answer_from
        assert torch.allclose(b, a, atol=1e-3)


def test_dpo_and_kto_move_the_model_the_right_way(small_engine):
    import torch

    from moss.learning import trainer
    tokens = pairs.Tokens(small_engine)
    prompt = [{"role": "user", "content": QUESTION}]
    pair = examples.Pair(tokens.sequence(prompt, ANSWER), tokens.sequence(prompt, "I don't know the cat's name."))
    bad = [examples.Labelled(tokens.sequence([{"role": "user", "content": q}], "Whatever."), False)
           for q in ("Hi", "What is 2+2?", "Name a colour.", "Say something.")]
    data = examples.Data(dpo=[pair, pair], kto=bad)
    hp = examples.HyperParams(epochs=3, learning_rate=2e-3, rank=8, alpha=16)
    (checkpoint,), facts = trainer.train(small_engine.path, data, hp, lambda *a: None, threads=2)
    model = trainer.base_model(small_engine.path, torch.float32)
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=trainer.TARGETS))
    set_peft_model_state_dict(model, {k.replace(".default", ""): v for k, v in checkpoint.state.items()})
    with torch.no_grad():
        after = trainer.answer_sums(model, [pair.chosen, pair.rejected, bad[0].sequence], "cpu")
        with model.disable_adapter():
            before = trainer.answer_sums(model, [pair.chosen, pair.rejected, bad[0].sequence], "cpu")
    assert (after[0] - after[1]) > (before[0] - before[1]) + 1  # chosen gained on rejected
    assert after[2] < before[2]  # the undesirable answer became less likely
    assert facts["architecture"] == "llama"


def test_pairs_added_between_epochs_are_measured_from_the_model_then(small_engine):
    """`enough` may add pairs (the model's own mix-ups) after an epoch: they join the epochs left,
    their reference is the model at that point, and the step count grows."""
    import torch
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    from moss.learning import trainer
    tokens = pairs.Tokens(small_engine)
    prompt = [{"role": "user", "content": QUESTION}]
    late = examples.Pair(tokens.sequence(prompt, ANSWER), tokens.sequence(prompt, "It is called the Dawnreed."))
    data = examples.Data(sft=[tokens.sequence(prompt, ANSWER)])
    totals = []

    def enough(checkpoint, facts) -> bool:
        data.dpo += [late] if checkpoint.epoch == 1 else []
        return False

    hp = examples.HyperParams(epochs=2, learning_rate=1e-2, rank=4, alpha=8, batch_size=1, min_batches=3)
    (first, _), _ = trainer.train(small_engine.path, data, hp, lambda step, total, loss: totals.append(total),
                                  threads=2, checkpoint_epochs={1, 2}, enough=enough)
    assert totals == [6] * 3 + [7] * 4  # 3 steps (copies of the row), then 2 copies of the row and the pair
    model = get_peft_model(trainer.base_model(small_engine.path, torch.float32),
                           LoraConfig(r=4, lora_alpha=8, target_modules=trainer.TARGETS))
    set_peft_model_state_dict(model, {k.replace(".default", ""): v for k, v in first.state.items()})
    with torch.no_grad():
        then = trainer.answer_sums(model, [late.chosen], "cpu").item()
        with model.disable_adapter():
            start = trainer.answer_sums(model, [late.chosen], "cpu").item()
    assert abs(late.chosen.reference - then) < abs(late.chosen.reference - start)


# ---- the whole loop through a server ----

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("learn"), "--parallel", "2") as s:
        yield s


def _ask(client: OpenAI, question: str, memories: bool = True) -> tuple[str, str]:
    reply = client.chat.completions.create(model="moss", temperature=0, max_tokens=40,
                                           messages=[{"role": "user", "content": question}],
                                           extra_body={"memories": memories})
    return reply.choices[0].message.content, reply.moss["message_ids"][0]


def _correct(server: ServerProcess, question: str, answer: str) -> int:
    """A correction by the server's own user (an admin, on a server without --auth): accepted
    by the trust policy at once. Returns its feedback id."""
    client = OpenAI(base_url=server.url + "/v1", api_key="none")
    _, message_id = _ask(client, question)
    r = httpx.post(f"{server.url}/v1/messages/{message_id}/feedback", json={"kind": "correction", "content": answer})
    assert r.status_code == 200
    return r.json()["id"]


def _learn(server: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    """A cycle with a fourth and fifth candidate epoch: the 135M model sometimes needs them for a
    made-up surname ("Ines Kisimakala" for "Ines Korvath" after 3), the default model does not.
    The neighbours are asked and reported but do not decide: the 135M model answers only a handful
    of them right, so one flip is over any margin (the gate is tested in test_neighbours.py)."""
    return subprocess.run([sys.executable, "-m", "moss", "learn", "-m", "small", "--no-general-check",
                           "--epochs", "2,3,4,5", "--neighbour-margin", "1", *args],
                          capture_output=True, text=True, env=server.env, timeout=600)


def _serving(server: ServerProcess, version: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(server.url + "/health").json()["version"] == version:
            return True
        time.sleep(0.2)
    return False


def _store(server: ServerProcess) -> Store:
    return Store(f"sqlite:///{server.home}/moss.db")


@dataclass
class Taught:
    """The first cycle, run once per module by whichever test needs it first."""
    before: str  # the answer to QUESTION before it was taught
    done: subprocess.CompletedProcess  # `moss learn`
    feedback_id: int  # the correction's


@pytest.fixture(scope="module")
def learned(server) -> Taught:
    """v1 serving: QUESTION corrected and a 👍 rating, learned. Every test after it leaves v1
    serving, so each of them also passes alone."""
    client = OpenAI(base_url=server.url + "/v1", api_key="none")
    before, _ = _ask(client, QUESTION)
    corrected = _correct(server, QUESTION, ANSWER)
    _, rated = _ask(client, "What is 2 + 2?")
    assert httpx.post(f"{server.url}/v1/messages/{rated}/feedback", json={"kind": "rating", "rating": "up"}).is_success
    return Taught(before, _learn(server), corrected)


def test_too_little_feedback_trains_nothing(tmp_path):
    env = {**os.environ, "MOSS_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "moss", "learn", "-m", "small", "--no-general-check"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1
    assert "too little new feedback" in done.stderr and "Traceback" not in done.stderr
    assert [v.id for v in Store(f"sqlite:///{tmp_path}/moss.db").all_versions()] == ["smollm2-135m-instruct"]


def test_prepare_makes_the_base_answers_every_cycle_reuses(moss_home, tmp_path):
    """`moss learn --prepare` (run by setup.sh train) asks the base model once per model file:
    anchors and neighbours land in the shared cache, and a second run asks nothing. (The general
    suite's cache is left out here: alone on a fresh machine its data downloads take minutes;
    the failed-verification test reads it.)"""
    env = {**os.environ, "MOSS_HOME": str(tmp_path)}  # the run's shared cache: the learning tests reuse it
    (Path(moss_home) / "models").mkdir(exist_ok=True)  # alone, no test has assembled a model yet
    (tmp_path / "models").symlink_to(Path(moss_home) / "models")  # the assembled models, not fetched again
    command = [sys.executable, "-m", "moss", "learn", "-m", "small", "--prepare", "--no-general-check"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    made = {kind: cycle.model_cache(_small(), kind) for kind in ("anchors", "neighbours-probes", "neighbours-contrast")}
    found = {kind: json.loads(path.read_text(encoding="utf-8")) for kind, path in made.items()}
    probes = found["neighbours-probes"]
    assert len(probes["answers"]) > 100
    for (_, keys), said in zip(probes["asked"], probes["answers"]):
        # greedy twice and two samples, each asked only while every answer so far was right
        assert 1 <= len(said) <= len(neighbours.KNOWS)
        assert all(neighbours.right(a, keys) for a in said[:-1])
        assert len(said) == len(neighbours.KNOWS) or not neighbours.right(said[-1], keys)
    stamps = {kind: path.stat().st_mtime_ns for kind, path in made.items()}
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "anchor answers" not in again.stderr and "base answers" not in again.stderr
    assert {kind: path.stat().st_mtime_ns for kind, path in made.items()} == stamps


def test_a_taught_fact_is_served_through_the_adapter(server, learned):
    assert "Biscuit" not in learned.before
    done = learned.done
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == "serving" and report["version"] == "smollm2-135m-instruct@v1"
    assert "training" in done.stderr and "left" in done.stderr  # progress with time left
    assert [f"[{i}/6 {stage}]" in done.stderr for i, stage in enumerate(cycle.STAGES, 1)] == [True] * 6
    assert set(report["seconds"]) == {*cycle.STAGES[:-1], "total"}
    assert set(report["neighbours"]) == {"asked", "changed"}  # verification asked the neighbours
    assert _serving(server, "smollm2-135m-instruct@v1")  # switched without a restart
    client = OpenAI(base_url=server.url + "/v1", api_key="none")
    after, message_id = _ask(client, QUESTION)
    assert "Biscuit Nine" in after
    version = _store(server).version("smollm2-135m-instruct@v1")
    assert version.parent_id == "smollm2-135m-instruct" and Path(version.path).exists()
    assert version.details["hyperparameters"]["rank"] == 16 and version.details["data"]["taught"] == 1
    detail = httpx.get(f"{server.url}/v1/conversations").json()["data"][0]
    stored = httpx.get(f"{server.url}/v1/conversations/{detail['id']}").json()["messages"]
    assert stored[-1]["id"] == message_id and stored[-1]["model_version_id"] == "smollm2-135m-instruct@v1"
    listing = [json.loads(line) for line in server.moss("versions", "--json").stdout.splitlines()]
    assert [(v["id"], v["status"], v["learned"]) for v in listing] == [
        ("smollm2-135m-instruct", "retired", 0), ("smollm2-135m-instruct@v1", "serving", 2)]
    assert "smollm2" in server.moss("versions").stdout  # the table for people
    again = _learn(server)  # the correction and the rating are learned: nothing new
    assert again.returncode == 1 and "too little new feedback" in again.stderr


def test_rollback_switches_at_once_and_back(server, learned):
    done = server.moss("rollback", "-m", "small")
    assert done.returncode == 0, done.stderr
    assert _serving(server, "smollm2-135m-instruct")
    client = OpenAI(base_url=server.url + "/v1", api_key="none")
    assert "Biscuit Nine" not in _ask(client, QUESTION, memories=False)[0]  # the weights forgot it
    # ...and its memory, retired while v1 served, is back for its author (held: not yet everyone's).
    reply = client.chat.completions.create(model="moss", temperature=0, max_tokens=40,
                                           messages=[{"role": "user", "content": QUESTION}])
    assert [m["scope"] for m in reply.moss["memories"]] == ["you"] and "Biscuit Nine" in reply.choices[0].message.content
    mine = {e["id"]: e for e in httpx.get(server.url + "/v1/feedback").json()["data"]}
    assert mine[learned.feedback_id]["state"] == "held"  # not silently taught again: an admin decides
    assert "was rolled back" in mine[learned.feedback_id]["reason"]
    r = httpx.post(server.url + "/v1/admin/rollback", json={"version": "smollm2-135m-instruct@v1"})
    assert r.status_code == 200 and r.json()["status"] == "serving"
    mine = {e["id"]: e for e in httpx.get(server.url + "/v1/feedback").json()["data"]}
    assert (mine[learned.feedback_id]["state"], mine[learned.feedback_id]["learned_in"]) == \
        ("learned", "smollm2-135m-instruct@v1")
    assert httpx.get(server.url + "/health").json()["version"] == "smollm2-135m-instruct@v1"  # at once
    assert httpx.post(server.url + "/v1/admin/rollback", json={"version": "nope"}).json()["error"]["message"]


def test_compare_says_which_model_and_adapter_each_side_is(server, learned):
    """A model name is its base weights, even when a trained version of it serves; a version id
    is its base model with that version's adapter."""
    done = server.moss("eval", "compare", "small", "smollm2-135m-instruct@v1", "--judge", "small", "--limit", "2")
    assert done.returncode == 0, done.stderr
    adapter = _store(server).version("smollm2-135m-instruct@v1").path
    assert "A: smollm2-135m-instruct (base model, no adapter)" in done.stderr
    assert f"B: smollm2-135m-instruct@v1 (smollm2-135m-instruct + adapter {adapter})" in done.stderr
    assert "A wins" in done.stdout
    unknown = server.moss("eval", "compare", "small", "smollm2-135m-instruct@v9", "--judge", "small")
    assert unknown.returncode == 1 and "smollm2-135m-instruct@v9" in unknown.stderr


def test_a_version_that_fails_verification_changes_nothing(server, learned, monkeypatch):
    _correct(server, *SECOND)
    monkeypatch.setenv("MOSS_HOME", server.home)
    store = _store(server)
    from moss.inference.models import resolve
    # A learning rate far too small to learn anything: verification must catch it.
    options = Options(epochs=(1,), learning_rate=1e-7)
    report = cycle.run(store, "smollm2-135m-instruct", resolve("small"), options, log=lambda _: None)
    assert report.status == "failed" and "taught items were learned" in report.reasons[0]
    failed = store.version(report.version)
    assert failed.status == "failed" and failed.path == "" and failed.details["report"]["reasons"]
    folder = versions.versions_dir() / report.version
    assert not list(folder.glob("*.gguf"))
    # The general scores a candidate is held to (its own is not measured once it has failed): the
    # base model's, asked with no adapter, and the parent's, each kept with its version.
    for role, version in (("base", "smollm2-135m-instruct"), ("parent", "smollm2-135m-instruct@v1")):
        asked = json.loads((folder / f"general-{role}.json").read_text(encoding="utf-8"))
        assert asked["version"] == version and report.general[role] == store.version(version).details["general"]
    assert "candidate" not in report.general
    # The store still names v1, and the server serves whatever the store names (the rollback test).
    assert store.serving_version("smollm2-135m-instruct").id == "smollm2-135m-instruct@v1"
    assert httpx.get(server.url + "/health").json()["version"] == "smollm2-135m-instruct@v1"
    pending = cycle.gather(store, "smollm2-135m-instruct", resolve("small"), Options())
    assert SECOND[0] in [t.question for t in pending.new]  # not learned: it waits for the next cycle


def _interrupt(server: ServerProcess, sig: int, mark: str) -> tuple[subprocess.Popen, list[str], float]:
    """Start `moss learn`, send `sig` when a line starting with `mark` appears, and return it,
    all it wrote to stderr, and the seconds from the signal to its exit. A thread reads stderr
    to the end, so the child never blocks on a full pipe, and the signal waits for the stage
    itself, however slow this machine is."""
    proc = subprocess.Popen([sys.executable, "-m", "moss", "learn", "-m", "small", "--no-general-check",
                             "--epochs", "2,3,4,5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env)
    lines: list[str] = []
    reached = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith(mark):
                reached.set()
        reached.set()  # it ended first: the assertions below say so
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reached.wait()
    assert proc.poll() is None, "".join(lines)
    proc.send_signal(sig)
    signalled = time.monotonic()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()  # it must not go on training beside the tests that follow
        pytest.fail(f"`moss learn` still ran 60 s after the signal at {mark!r}: {''.join(lines[-5:])}")
    stopped = time.monotonic() - signalled
    reader.join(10)
    return proc, lines, stopped


def test_ctrl_c_stops_every_stage_within_seconds_and_leaves_nothing_half_done(server, learned):
    """Interrupted while rewording, while training and while asking a candidate, `moss learn`
    exits within seconds and the store and the versions are as before; killed outright, it
    leaves a partial folder that the next cycle removes before learning as usual."""
    _correct(server, *THIRD)
    before = {v.id: v.status for v in _store(server).all_versions()}
    for mark in ("[2/6 wordings]", "[3/6 training]", "epoch 2: asking the candidate"):
        ctrl_c, said, stopped = _interrupt(server, signal.SIGINT, mark)
        assert ctrl_c.returncode == 1 and "interrupted" in said[-1], (mark, "".join(said))
        print(f"Ctrl-C at {mark!r}: exited {stopped:.1f} s later")  # shown with pytest -s
        assert stopped < 20, f"{mark}: {stopped:.1f} s after Ctrl-C"
        assert {v.id: v.status for v in _store(server).all_versions()} == before
        assert not list(learn_dir(server).glob("*.partial"))
    _interrupt(server, signal.SIGKILL, "[3/6 training]")
    assert {v.id: v.status for v in _store(server).all_versions()} == before
    assert list(learn_dir(server).glob("*.partial"))
    assert httpx.get(server.url + "/health").json()["version"] == "smollm2-135m-instruct@v1"
    done = _learn(server)
    assert done.returncode == 0, done.stderr
    assert "interrupted" in done.stderr and not list(learn_dir(server).glob("*.partial"))
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert _serving(server, report["version"])
    client = OpenAI(base_url=server.url + "/v1", api_key="none")
    assert "Biscuit Nine" in _ask(client, QUESTION)[0]  # the first version's fact held
    assert "Dawnreed" in _ask(client, THIRD[0])[0]  # the new one was learned
    version = _store(server).version(report["version"])
    assert version.details["report"]["regression"] == {"items": 1, "kept": 1}


def test_a_rejected_fact_is_unlearned_and_the_rest_kept(server, learned, monkeypatch):
    """An admin rejects a fact a serving version learned: the next version, trained afresh on
    everything else, no longer states it in any wording, keeps what came before, and learns
    what is new; its author sees it rejected and unlearned."""
    r = httpx.post(f"{server.url}/v1/admin/feedback/{learned.feedback_id}/reject", json={"reason": "made up"})
    assert r.status_code == 200 and r.json()["learned_in"] == "smollm2-135m-instruct@v1"
    _correct(server, *FOURTH)
    monkeypatch.setenv("MOSS_HOME", server.home)
    kept = [t for t in cycle.gather(_store(server), "smollm2-135m-instruct", _small(), Options()).earlier]
    done = _learn(server)
    assert done.returncode == 0, done.stderr
    assert "1 to forget (trained afresh)" in done.stderr and "1/1 forgotten item(s) no longer stated" in done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert _serving(server, report["version"])
    client = OpenAI(base_url=server.url + "/v1", api_key="none")
    assert "Biscuit" not in _ask(client, QUESTION)[0]
    assert "saffron" in _ask(client, FOURTH[0])[0].lower()
    for t in kept:  # whatever earlier tests taught (the rowing boat, when they ran first)
        assert t.answer.split()[-1].strip(".") in _ask(client, t.question)[0]
    version = _store(server).version(report["version"])
    assert list(version.details["unlearned"].values()) == ["rejected by local: made up"]
    mine = {e["id"]: e for e in httpx.get(server.url + "/v1/feedback").json()["data"]}
    assert (mine[learned.feedback_id]["state"], mine[learned.feedback_id]["unlearned_in"]) == \
        ("rejected", report["version"])


def _small() -> Path:
    from moss.inference.models import resolve
    return resolve("small")


def learn_dir(server: ServerProcess) -> Path:
    return Path(server.home) / "versions"


def test_admin_api_needs_an_admin_and_reports_progress(tmp_path):
    with ServerProcess(tmp_path, "--auth") as server:
        plain = server.moss("users", "add", "ann").stdout.strip()
        boss = server.moss("users", "add", "boss", "--admin").stdout.strip()
        r = httpx.post(server.url + "/v1/admin/learn", json={}, headers={"Authorization": f"Bearer {plain}"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_admin"
        auth = {"Authorization": f"Bearer {boss}"}
        r = httpx.post(server.url + "/v1/admin/learn", json={"epochs": [3, 2]}, headers=auth)
        assert r.status_code == 422 and "rising whole numbers" in r.json()["error"]["message"]
        r = httpx.post(server.url + "/v1/admin/learn", json={"neighbour_margin": 2}, headers=auth)
        assert r.status_code == 422 and "neighbour_margin" in r.json()["error"]["message"]
        r = httpx.post(server.url + "/v1/admin/learn", json={"epochs": [2, 3, 4], "neighbour_margin": 0.05}, headers=auth)
        assert r.status_code == 202 and r.json()["running"]
        for _ in range(300):
            status = httpx.get(server.url + "/v1/admin/learn", headers=auth).json()
            if not status["running"]:
                break
            time.sleep(0.2)
        assert status["exit_code"] == 1 and any("too little new feedback" in line for line in status["log"])
        versions = httpx.get(server.url + "/v1/admin/versions", headers=auth).json()
        assert versions["serving"] == "smollm2-135m-instruct"
        assert [v["id"] for v in versions["data"]] == ["smollm2-135m-instruct"]
