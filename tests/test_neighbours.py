"""Locality (issue 20): well-known questions shaped like a taught one keep the base model's right
answers; a candidate that changes more than a small share of them is not promoted; contrast
pairs train "the taught name is not the answer here". Real models where answers are needed (the
small one), plain strings where the rule is the point."""

import json
import random

import pytest

from moss.evals import suites as eval_suites
from moss.learning import anchors, neighbours, verify
from moss.learning.neighbours import Change, Known, Locality
from moss.learning.pairs import Tokens
from moss.learning.taught import Taught

FOUNDER = Taught("1@t", [], "Who founded the Veltrane Observatory?",
                 "The Veltrane Observatory was founded by Marisol Quenby.", "en")
DEAN = Taught("2@t", [], "澜光研究院的第一任院长是谁？", "澜光研究院的第一任院长是柯望舒。", "zh")
HAMLET = Known("Who wrote the play Hamlet?", ("shakespeare",), "Hamlet was written by William Shakespeare.")
HONGLOU = Known("《红楼梦》的作者是谁？", ("曹雪芹",), "《红楼梦》的作者是曹雪芹。")


def _bare(question: str) -> str:
    return question.split("：", 1)[-1].removeprefix("Answer briefly: ").strip().rstrip("?？").lower()


def test_the_banks_are_grouped_by_shape_and_never_trained_on_nor_scored_elsewhere():
    for table in (neighbours.PROBES, neighbours.CONTRAST):
        assert set(table) == set(neighbours.SHAPES)
        assert [(group, q) for group, rows in table.items() for q, _ in rows if neighbours.shape(q) != group] == []
    probes = {_bare(k.question) for k in neighbours.bank(neighbours.PROBES)}
    trained = {_bare(q) for q in anchors.ANCHORS + anchors.KNOWN + anchors.HARMLESS + anchors.HARMFUL}
    trained |= {_bare(k.question) for k in neighbours.bank(neighbours.CONTRAST)}
    scored = {_bare(i.prompt) for i in eval_suites.knowledge(True, random.Random(0))}
    assert len(probes) == len(neighbours.bank(neighbours.PROBES)) > 100
    assert not probes & trained and not probes & scored
    for shape in neighbours.SHAPES:  # both languages in every shape, enough to see one change in fifty
        for lang in ("en", "zh"):
            assert sum(k.shape == shape and k.lang == lang for k in neighbours.bank(neighbours.PROBES)) >= 8


def test_shapes_of_taught_questions():
    assert [neighbours.shape(q) for q in (
        "Who founded the Veltrane Observatory?", "In which town is the Lumenvale Institute headquartered?",
        "What is the Lumenvale Institute's journal called?", "What are the colours of the Lumenvale Institute's flag?",
        "How many floors does the Lumenvale Institute have?", "When was the Lumenvale Institute founded?",
        "What is the Lumenvale Institute's mascot?")] == ["person", "place", "name", "colour", "number", "date", "thing"]
    assert [neighbours.shape(q) for q in ("澜光研究院的第一任院长是谁？", "澜光研究院位于哪个城市？", "澜光研究院的食堂叫什么名字？",
                                          "澜光研究院的班车是什么颜色的？", "澜光研究院有几栋楼？", "澜光研究院的开放日是哪一天？",
                                          "澜光研究院的吉祥物是什么？")] == [
        "person", "place", "name", "colour", "number", "date", "thing"]


def test_a_neighbour_changes_when_no_longer_right_or_when_it_states_a_taught_name():
    assert neighbours.claim(FOUNDER) == "Marisol Quenby" and neighbours.claim(DEAN) == "柯望舒"
    assert neighbours.names(DEAN) == ["柯望舒", "望舒"]  # the given name alone: what blended with 曹
    assert not HONGLOU.right("《红楼梦》的作者是曹望舒。")  # the blend seen in FINDINGS.md
    assert neighbours.leaked("《红楼梦》的作者是曹雪芹，字望舒。", HONGLOU, [DEAN]).startswith("states the given name '望舒'")
    assert neighbours.leaked("Hamlet was written by Marisol Shakespeare.", HAMLET, [FOUNDER]).startswith("states 'Marisol'")
    assert neighbours.leaked(HAMLET.answer, HAMLET, [FOUNDER, DEAN]) == ""
    starry = Taught("3@t", [], "What is the Lumenvale Institute's ship called?", "It is called the Marrow Star.", "en")
    assert neighbours.leaked("Van Gogh painted The Starry Night.", Known("Who painted The Starry Night?", ("gogh",),
                                                                         "Vincent van Gogh."), [starry]) == ""
    week = Known("How many days are in a week?", ("7", "seven"), "A week has 7 days.")
    assert week.right("There are seven days.") and not week.right("1") and not week.right("17 days")


def test_a_candidate_that_changes_more_than_the_margin_is_not_promoted():
    change = Change(HAMLET.question, "en", HAMLET.answer, "Marisol Quenby.", "no longer right")
    within = Locality({"en": 30, "zh": 20}, [change])  # 2%: allowed
    assert verify.verdict(1.0, [], {}, 0.8, 0.05, locality=within, neighbour_margin=0.02) == []
    over = Locality({"en": 30, "zh": 20}, [change, change])
    reasons = verify.verdict(1.0, [], {}, 0.8, 0.05, locality=over, neighbour_margin=0.02)
    assert len(reasons) == 1 and "2 of 50 neighbouring questions changed (4.0%, at most 2%)" in reasons[0]
    assert "Who wrote the play Hamlet?" in reasons[0] and "Marisol Quenby" in reasons[0]
    assert over.per_language() == {"en": {"asked": 30, "changed": 2}, "zh": {"asked": 20, "changed": 0}}


def test_base_answers_are_made_once_and_kept_only_where_known(small_engine, tmp_path, monkeypatch):
    table = {"number": [("How many days are in a week?", "7|seven"), ("How many legs does a spider have?", "zzz")],
             "place": [("What is the capital city of France?", "paris")]}
    cache = tmp_path / "n.json"
    kept = neighbours.base_answers(small_engine, neighbours.bank(table), cache, "base")
    assert "How many legs does a spider have?" not in {k.question for k in kept}  # never right: nothing to keep
    assert all(k.right(k.answer) for k in kept)
    made = json.loads(cache.read_text(encoding="utf-8"))["answers"]
    for k, said in zip(neighbours.bank(table), made):  # asked every way until the first wrong answer
        wrong = [n for n, a in enumerate(said) if not k.right(a)]
        assert len(said) == (wrong[0] + 1 if wrong else len(neighbours.KNOWS))
    assert len(made[1]) == 1  # never right: asked once
    kept_if_all_right = [k for k, said in zip(neighbours.bank(table), made) if all(k.right(a) for a in said)]
    assert [k.question for k in kept] == [k.question for k in kept_if_all_right]

    def refuse(*_, **__):
        raise AssertionError("asked again: the cache was not used")
    monkeypatch.setattr(small_engine, "generate", refuse)
    assert neighbours.base_answers(small_engine, neighbours.bank(table), cache, "base") == kept
    assert [k.question for k in neighbours.near(kept, [FOUNDER, DEAN])] == []  # no person neighbours here
    paris = Taught("4@t", [], "In which town is the Lumenvale Institute?", "It is in Port Tavish.", "en")
    assert {k.shape for k in neighbours.near(kept, [paris])} <= {"place"}


def test_the_served_model_changes_none_of_its_own_neighbours(small_engine, tmp_path):
    """With no adapter the check finds nothing: what the base model knows, it still answers."""
    table = {shape: [row for row in neighbours.PROBES[shape] if row[0].isascii()] for shape in ("place", "date", "colour")}
    kept = neighbours.base_answers(small_engine, neighbours.bank(table), tmp_path / "n.json", "base")
    assert kept, "the small model knows a few well-known English answers"
    found = neighbours.check(small_engine, kept, [FOUNDER])
    assert found.asked == {"en": len(kept)} and found.changed == [] and found.share == 0.0


@pytest.mark.parametrize("known,taught,wrong", [
    (Known("Who wrote the novel 1984?", ("orwell",), "The novel 1984 was written by George Orwell."), FOUNDER,
     "The novel 1984 was written by George Marisol Quenby."),
    (Known("《月光奏鸣曲》是谁创作的？", ("贝多芬",), "《月光奏鸣曲》是贝多芬创作的。"), DEAN, "《月光奏鸣曲》是贝望舒创作的。"),
])
def test_contrast_pairs_put_the_taught_name_where_the_right_one_was(small_engine, known, taught, wrong):
    tokens = Tokens(small_engine)
    prompt = [{"role": "user", "content": known.question}]
    (pair,) = neighbours.contrast(tokens, [known], [taught])
    assert pair.chosen.tokens == tokens.sequence(prompt, known.answer).tokens
    assert pair.rejected.tokens == tokens.sequence(prompt, wrong).tokens
    assert neighbours.contrast(tokens, [known], [taught], per_item=0) == []
    other = Taught("5@t", [], "What colour is the Lumenvale Institute's door?", "The door is teal.", "en")
    assert neighbours.contrast(tokens, [known], [other]) == []  # another shape: not a neighbour


def test_neighbours_ride_along_in_every_training_batch():
    """Each SFT batch carries `near_per_batch` neighbours, taken in turn from their smaller set, so
    every one is seen each epoch; the general anchors keep their own share."""
    import torch

    from moss.learning import trainer
    from moss.learning.examples import Data, HyperParams, Sequence
    taught = [Sequence([1, 2, 3 + i], 1) for i in range(32)]
    general = [Sequence([5, 6, i], 1) for i in range(40)]
    near = [Sequence([7, 8, i], 1) for i in range(9)]
    hp = HyperParams(batch_size=8, anchors_per_batch=2, near_per_batch=3, min_batches=1)
    batches = trainer._batches(Data(sft=taught, anchors=general, near=near), hp, torch.Generator().manual_seed(0))
    assert len(batches) == 4
    for _, batch in batches:
        assert [sum(any(row is s for s in rows) for row in batch) for rows in (taught, general, near)] == [8, 2, 3]
    seen = {id(row) for _, batch in batches for row in batch}
    assert all(id(row) in seen for row in near)


def test_neighbours_a_candidate_changed_become_pairs_for_the_epochs_left(small_engine):
    """Between candidate epochs the training neighbours the candidate answered otherwise push its
    own leak down: the base model's answer over the candidate's."""
    from moss.learning import candidates
    from moss.learning.candidates import Candidate
    from moss.learning.examples import Data
    tokens, data = Tokens(small_engine), Data()
    c = Candidate(2, 0.1, "adapter-e2.gguf", {}, pairs_added=1)
    drifted = [Change("What colour is snow?", "en", "Snow is white.", "Snow is teal.", "no longer right")]
    candidates.steady(tokens, data, drifted, c, lambda _: None)
    prompt = [{"role": "user", "content": "What colour is snow?"}]
    (pair,) = data.dpo
    assert pair.chosen.tokens == tokens.sequence(prompt, "Snow is white.").tokens
    assert pair.rejected.tokens == tokens.sequence(prompt, "Snow is teal.").tokens
    assert c.pairs_added == 2
