"""The default model (Qwen2.5-Coder-0.5B, assembled from its wheels) answers in the user's language."""

import pytest

from moss.inference.engine import Sampling
from moss.lang import detect

GREEDY = Sampling(temperature=0, max_tokens=120)

ENGLISH = ["What is the capital of France?", "Give me two tips for sleeping better.",
           "Explain what a prime number is."]
CHINESE = ["法国的首都是哪里？", "给我两个改善睡眠的建议。", "请解释一下什么是质数。"]


@pytest.mark.default_model
@pytest.mark.parametrize("question,lang", [(q, "en") for q in ENGLISH] + [(q, "zh") for q in CHINESE])
def test_answers_in_the_language_of_the_question(default_engine, question, lang):
    answer = default_engine.generate([{"role": "user", "content": question}], GREEDY).text()
    assert answer.strip()
    assert detect(answer) == lang, answer


@pytest.mark.default_model
def test_it_calls_itself_moss(default_engine):
    for question in ("What is your name?", "你叫什么名字？"):
        answer = default_engine.generate([{"role": "user", "content": question}], GREEDY).text()
        assert "Moss" in answer or "moss" in answer.lower(), answer
        assert "Qwen" not in answer


@pytest.mark.default_model
def test_chinese_streams_whole_characters(default_engine):
    pieces = list(default_engine.generate([{"role": "user", "content": "用一句话介绍长城。"}], GREEDY))
    assert len(pieces) > 3 and "\ufffd" not in "".join(pieces)
