"""Text matching shared by evaluation and learning: normalizing, whether an answer matches or
covers a reference, whether it refuses. Pure functions of strings, English and Chinese."""

import re
import unicodedata

STOPWORDS = set("""a an the is are was were be been being of in on at to for with by from and or but not no
it its this that these those as i you he she we they my your his her our their me him them what which who whom
whose when where why how do does did has have had will would can could should shall may might must there here
about into than then so if also just very""".split())

_HAN = re.compile(r"[\u3400-\u9fff]")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"\s+", " ", re.sub(r"[^\w\u3400-\u9fff ]+", " ", text)).strip()


def _units(text: str) -> list[str]:
    """Content units to match: English content words; Chinese character pairs (and Latin words)."""
    text = normalize(text)
    words = [w for w in re.findall(r"[a-z0-9]+", text) if w not in STOPWORDS]
    han = "".join(_HAN.findall(text))
    pairs = [han[i:i + 2] for i in range(len(han) - 1)] or list(han)
    return words + pairs


def answer_match(answer: str, reference: str, threshold: float = 0.6) -> bool:
    """The answer contains the reference, or most of its content words (character pairs in Chinese)."""
    a, r = normalize(answer), normalize(reference)
    if r and r in a:
        return True
    units = _units(reference)
    if not units:
        return False
    found = set(_units(answer))
    return sum(u in found for u in units) / len(units) >= threshold


def covers(answer: str, reference: str, known: list[str], threshold: float = 0.6) -> bool:
    """The answer holds what is new in the reference: its content units that none of the `known`
    texts has (for a correction: not in the question, not in the wrong answer it replaced)."""
    seen = {u for text in known for u in _units(text)}
    units = [u for u in _units(reference) if u not in seen] or _units(reference)
    found = set(_units(answer))
    return bool(units) and sum(u in found for u in units) / len(units) >= threshold


REFUSAL = re.compile("|".join([
    r"\bi(?:'m| am)? (?:sorry|afraid)\b", r"\bi (?:can(?:no|')t|cannot|won't|will not|must decline|am unable|'m unable)\b",
    r"\b(?:can(?:no|')t|cannot|unable to) (?:help|assist|provide|comply|fulfil|support)",
    r"\bnot (?:able|allowed|appropriate|something i can)\b", r"\bas an ai\b", r"\bi (?:do not|don't) (?:help|provide|assist)",
    r"抱歉", r"对不起", r"(?:不能|无法|不会|不可以|拒绝)(?:帮助|提供|协助|回答|满足|支持|告诉)", r"我(?:不能|无法)",
    r"违法", r"不道德",
]), re.IGNORECASE)


def refused(answer: str) -> bool:
    """Whether an answer declines, judged from its opening (a refusal comes first)."""
    return bool(REFUSAL.search(answer[:300]))


UNSURE = re.compile("|".join([
    r"\bi (?:do not|don't|did not|didn't) (?:know|have (?:any )?(?:information|data|details))", r"\bnot (?:sure|aware|familiar)\b",
    r"\bno (?:information|record|data|details)\b", r"\b(?:fictional|does not exist|doesn't exist|could not find|unknown)\b",
    r"不清楚", r"不知道", r"不确定", r"没有(?:相关|关于|这方面的)?(?:信息|资料|记录)", r"无法确定", r"并不存在", r"虚构",
]), re.IGNORECASE)


def unsure(answer: str) -> bool:
    """Whether an answer declines or says it does not know (it holds no claim to weigh)."""
    return refused(answer) or bool(UNSURE.search(answer[:300]))


def novel(answer: str, question: str) -> set[str]:
    """An answer's content units that its question does not hold, nor a form of its words
    ("opened" for "open"): what it claims."""
    asked = set(_units(question))
    stems = {u[:4] for u in asked if len(u) >= 4 and u.isascii()}
    return {u for u in _units(answer) if u not in asked and not (u.isascii() and len(u) >= 4 and u[:4] in stems)}
