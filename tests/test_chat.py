"""Context fitting, stop strings and language detection, on exact inputs."""

from moss.inference.engine import StopScanner
from moss.inference.prompts import META_INSTRUCTION, fit, with_system
from moss.lang import detect


def encode(messages):
    """One token per word, plus two per message for the template."""
    return [0] * sum(len(m["content"].split()) + 2 for m in messages)


def shorten(text, n):
    return " ".join(text.split()[n:])


def turns(n, words=10):
    out = []
    for i in range(n):
        out += [{"role": "user", "content": f"q{i} " + "w " * (words - 1)},
                {"role": "assistant", "content": f"a{i} " + "w " * (words - 1)}]
    return out


def test_fit_keeps_everything_that_fits():
    messages = with_system(turns(3))
    fitted = fit(messages, 1000, encode, shorten)
    assert fitted.messages == messages and fitted.dropped == 0 and not fitted.truncated


def test_fit_drops_oldest_whole_turns_and_keeps_system():
    messages = with_system(turns(10) + [{"role": "user", "content": "last question"}])
    fitted = fit(messages, 150, encode, shorten)
    kept = fitted.messages
    assert kept[0] == {"role": "system", "content": META_INSTRUCTION}
    assert kept[1]["role"] == "user"  # cut at a user message: roles still alternate
    assert kept[-1]["content"] == "last question"
    assert len(fitted.tokens) <= 150 and len(fitted.tokens) == len(encode(kept))
    assert fitted.dropped == len(messages) - len(kept) > 0
    one_more_turn = [kept[0]] + messages[-(len(kept) + 1):]  # the dropping was minimal
    assert len(encode(one_more_turn)) > 150


def test_fit_truncates_a_single_huge_message_from_its_start():
    system = {"role": "system", "content": "be brief"}
    huge = {"role": "user", "content": " ".join(f"x{i}" for i in range(500)) + " question?"}
    fitted = fit([system, huge], 100, encode, shorten)
    assert fitted.truncated and len(fitted.tokens) <= 100
    assert fitted.messages[0] == system
    assert fitted.messages[-1]["content"].endswith("x499 question?")


def test_stop_scanner_across_pieces():
    scanner = StopScanner(["STOP"])
    emitted = []
    for piece in ["Hello S", "T", "OP and more"]:
        text, stopped = scanner.feed(piece)
        emitted.append(text)
        if stopped:
            break
    assert "".join(emitted) == "Hello " and stopped


def test_stop_scanner_releases_false_alarms():
    scanner = StopScanner(["STOP"])
    assert scanner.feed("ST") == ("", False)  # could be the start of STOP: held back
    assert scanner.feed("ART") == ("START", False)
    assert scanner.feed("x ST") == ("x ", False)
    assert scanner.flush() == "ST"


def test_language_detection():
    assert detect("The capital of France is Paris.") == "en"
    assert detect("法国的首都是巴黎。") == "zh"
    assert detect("你可以用 Python 的 `sorted()` 函数对列表排序。") == "zh"
    assert detect("```python\nprint(1)\n```") == "en"
