"""Other wordings of a question, in its own language: the model rewrites it, templates fill the gaps.

Teaching one wording teaches the wording; the learning loop trains on several and holds others
back to check that the fact, not the sentence, was learned."""

import re

from moss.engine import Engine, Sampling
from moss.eval_scorers import answer_match
from moss.lang import detect
from moss.progress import parallel_map

ASK = {
    "en": ("Rewrite the question in {n} different ways. Keep its meaning and every name in it. Write only "
           "questions, one per line, numbered.\n\nQuestion: Who wrote the novel Hamlet's Ghost?\n"
           "1. Who is the author of the novel Hamlet's Ghost?\n2. Which writer wrote Hamlet's Ghost?\n"
           "3. The novel Hamlet's Ghost was written by whom?\n\nQuestion: {q}\n"),
    "zh": ("把问题换{n}种不同的问法，意思和名字都不变。只写问题，每行一个，编号。\n\n问题：《归途》这本小说的作者是谁？\n"
           "1. 谁写了小说《归途》？\n2. 《归途》是哪位作家写的？\n3. 请问小说《归途》出自谁之手？\n\n问题：{q}\n"),
}
# Wrappers that keep the question whole: a floor when the model's rewrites are too few.
TEMPLATES = {
    "en": ["Quick question: {q}", "Can you tell me this? {q}", "{q} Please answer briefly.",
           "I was wondering: {q}", "Do you know the answer? {q}", "Tell me, {q}"],
    "zh": ["请问，{q}", "我想知道：{q}", "{q}请简单回答。", "问你一下：{q}", "你知道吗？{q}", "麻烦告诉我：{q}"],
}
_NUMBER = re.compile(r"^\s*(?:(?:Q|问题)?\s*\d+\s*[.)、:：]|[-*•])\s*", re.IGNORECASE)
_ASKS = re.compile(r"[?？]$|吗$|呢$|(?:什么|谁|哪|几|多少|怎么|怎样|为什么|如何|是否)")


def _clean(line: str) -> str:
    line = _NUMBER.sub("", line).strip().strip('"“”')
    return re.sub(r"^(?:question|问题)\s*[:：]\s*", "", line, flags=re.IGNORECASE).strip()


def _usable(candidate: str, question: str, lang: str) -> bool:
    """A rewrite in the same language, of similar size, that is a question and not the original."""
    if not candidate or candidate.lower() == question.lower() or detect(candidate) != lang:
        return False
    if not 0.4 <= len(candidate) / max(len(question), 1) <= 2.5:
        return False
    if not answer_match(candidate, question, threshold=0.4):  # about the same thing (not the example's)
        return False
    # A question, not an answer the model wrote instead (a statement would teach the model to
    # reply to statements with the fact).
    return bool(_ASKS.search(candidate.rstrip())) and not candidate.rstrip().endswith(("。", "."))


def rewrites(engine: Engine, question: str, n: int, seed: int = 0) -> list[str]:
    """Up to n model-written rewrites of a question (deduplicated, checked by `_usable`)."""
    lang = detect(question)
    prompt = ASK["zh" if lang == "zh" else "en"].format(n=n + 2, q=question)
    text = engine.generate([{"role": "user", "content": prompt}],
                           Sampling(temperature=0.7, seed=seed, max_tokens=60 * (n + 2))).text()
    out: list[str] = []
    for line in text.splitlines():
        candidate = _clean(line)
        if _usable(candidate, question, lang) and candidate not in out:
            out.append(candidate)
    return out[:n]


def wordings(engine: Engine, questions: list[str], n: int, workers: int = 4) -> list[list[str]]:
    """n other wordings for each question: the model's rewrites first, then templates."""
    written = parallel_map(lambda iq: rewrites(engine, iq[1], n, seed=iq[0]), list(enumerate(questions)),
                           "rewording", "questions", workers)
    out = []
    for question, found in zip(questions, written):
        lang = "zh" if detect(question) == "zh" else "en"
        for template in TEMPLATES[lang]:
            if len(found) >= n:
                break
            found.append(template.format(q=question))
        out.append(found[:n])
    return out
