"""Other wordings of a question, in its own language: the model rewrites it, templates fill the gaps.

Teaching one wording teaches the wording; the learning loop trains on several and holds others
back to check that the fact, not the sentence, was learned."""

import re

from moss.inference.engine import Engine, Sampling
from moss.lang import detect
from moss.progress import parallel_map
from moss.text import answer_match

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
_LABEL = re.compile(r"^(?:question|问题)\s*\d*\s*[:：.]\s*", re.IGNORECASE)
# A Chinese question that opens with its topic ("澜光研究院的…", "澜光研究院位于…"): the topic ends
# where the first of these words begins.
_TOPIC = re.compile(r"^([\u4e00-\u9fff]{2,}?)(?=的|是|有|在|位于|叫|最|每|用|由|为|从)")
_ASKS_FIRST = re.compile(r"^(?:请问|请告诉我|你知道|告诉我)")
_QUOTES = set('"“”《》「」')
# Characters that only make a Chinese sentence a question or glue it together.
_FRAME = set("的是了吗呢吧啊么什谁哪个几多少怎样为如何请问我想知道你一下告诉叫名字称做作有在，。？！、：")


# English words that carry no part of what a question asks (compared by their first 5 letters).
_GLUE = {w[:5] for w in (
    "what which who whom whose where when why how are was were does did the and for from with about into "
    "this that there their its today now currently current please tell can could would you know name named "
    "called call give").split()}


def clean(line: str) -> str:
    line = _NUMBER.sub("", line.replace("**", "")).strip().strip('"“”')
    return _LABEL.sub("", line).strip().strip('"“”')


def names(question: str) -> list[str]:
    """What a rewrite must keep word for word: capitalised words after the first (English), the
    topic a question opens with (Chinese). Small models "correct" rare names (澜光 -> 河光)."""
    if detect(question) != "zh":
        return [w for w in re.findall(r"[A-Za-z][\w-]*", question)[1:] if w[0].isupper() and w != "I"]
    topic = _TOPIC.match(_ASKS_FIRST.sub("", question.strip()))
    if not topic or re.match(r"谁|什么|哪|几|多少|怎", topic.group(1)):
        return []
    return [topic.group(1)]


def usable(candidate: str, question: str, lang: str) -> bool:
    """A rewrite in the same language, of similar size, that is a question and not the original,
    keeps the names and asks about the same thing."""
    if not candidate or candidate.lower() == question.lower() or detect(candidate) != lang:
        return False
    if not 0.4 <= len(candidate) / max(len(question), 1) <= 2.5:
        return False
    if not answer_match(candidate, question, threshold=0.4):  # about the same thing (not the example's)
        return False
    # A question, not an answer the model wrote instead (a statement would teach the model to
    # reply to statements with the fact).
    if not _ASKS.search(candidate.rstrip()) or candidate.rstrip().endswith(("。", ".")):
        return False
    kept = names(question)
    if any(name.lower() not in candidate.lower() for name in kept):
        return False
    if (set(candidate) & _QUOTES) - set(question):  # a guess ("is it called “X”?") is another question
        return False
    if lang == "zh":  # Chinese rewrites drift off ("校训" -> "为什么叫…"): keep a character of what is asked
        asked = set(question) - _FRAME - set("".join(kept))
        return not asked or bool(asked & set(candidate))
    return True


def _asked(text: str) -> set[str]:
    return {w.lower()[:5] for w in re.findall(r"[A-Za-z]{3,}", text)} - _GLUE


def asks_the_same(candidate: str, question: str) -> bool:
    """Stricter than `usable`, for the wordings held back to check learning: besides the names,
    an English rewrite keeps a word of what is asked ("founder" for "founded"). "What is the
    mission of X?" is no wording of "What is the motto of X?": its right answer is another fact."""
    if detect(question) == "zh":  # `usable` already asks a Chinese rewrite to keep a character of it
        return True
    asked = _asked(question) - _asked(" ".join(names(question)))
    return not asked or bool(asked & _asked(candidate))


def split(question: str, found: list[str], train: int, held: int) -> tuple[list[str], list[str]]:
    """Wordings to train on and wordings held back. Those held back ask exactly what the question
    asks (else a right answer to another question would count as the fact forgotten); templates
    fill in when too few rewrites do."""
    lang = "zh" if detect(question) == "zh" else "en"
    same = [w for w in found if asks_the_same(w, question)]
    kept = (same[-held:] if held else []) + [t.format(q=question) for t in TEMPLATES[lang]]
    kept = list(dict.fromkeys(kept))[:held]
    return [w for w in found if w not in kept][:train], kept


def rewrites(engine: Engine, question: str, n: int, seed: int = 0) -> list[str]:
    """Up to n model-written rewrites of a question (deduplicated, checked by `usable`)."""
    lang = detect(question)
    prompt = ASK["zh" if lang == "zh" else "en"].format(n=n + 2, q=question)
    text = engine.generate([{"role": "user", "content": prompt}],
                           Sampling(temperature=0.7, seed=seed, max_tokens=60 * (n + 2))).text()
    out: list[str] = []
    for line in text.splitlines():
        candidate = clean(line)
        if usable(candidate, question, lang) and candidate not in out:
            out.append(candidate)
    return out[:n]


def _rewrites_tries(engine: Engine, question: str, n: int, seed: int, tries: int = 3) -> list[str]:
    """Rewrites from up to `tries` samples: one sample often repeats the question or drifts off."""
    out: list[str] = []
    for k in range(tries):
        out += [c for c in rewrites(engine, question, n, seed=seed * tries + k) if c not in out]
        if len(out) >= n:
            break
    return out[:n]


def wordings(engine: Engine, questions: list[str], n: int, workers: int = 4) -> list[list[str]]:
    """n other wordings for each question: the model's rewrites first, then templates."""
    written = parallel_map(lambda iq: _rewrites_tries(engine, iq[1], n, iq[0]), list(enumerate(questions)),
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
