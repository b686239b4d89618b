"""Learning from other models: a teacher answers real prompts (SFT) and judges the student's answers (DPO).

Prompts come from the store (people's real questions), de-duplicated, with personal data
scrubbed. Every teacher answer passes filters before it becomes a record; what fails is kept as
a dropped record with its reason, so it is counted and never asked again. Records then go
through `moss learn` and its verification like people's corrections."""

import re
from collections import Counter

from moss.evals import judge
from moss.inference.engine import Engine, Sampling
from moss.lang import detect
from moss.learning.teacher import Teacher
from moss.progress import parallel_map
from moss.store import Store
from moss.store.schema import TrainingRecord
from moss.text import normalize, refused

# Personal data in prompts: replaced before a prompt leaves for a teacher or enters training.
PII = [
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]"),
    (re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)"), "[id number]"),  # Chinese resident ID
    (re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)"), "[id number]"),  # US SSN
    (re.compile(r"(?<!\d)(?:\d{4}[ -]?){3}\d{4}(?!\d)"), "[card number]"),
    (re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)"), "[phone]"),  # Chinese mobile
    (re.compile(r"(?<![\w+])\+?\d{1,3}?[ .-]?\(?\d{2,4}\)?[ .-]\d{3,4}[ .-]\d{3,4}(?!\d)"), "[phone]"),
]

# Requests a refusal is right for: a refusal of anything else is a bad teacher answer.
HARMFUL = re.compile(r"\b(?:bomb|explosive|weapon|poison|kill|murder|hack|malware|virus|steal|drugs?|meth|"
                     r"suicide|self-harm|terroris\w*)\b|炸弹|炸药|武器|毒药|杀人|谋杀|黑客|病毒|盗取|偷|毒品|自杀|恐怖",
                     re.IGNORECASE)
DEBRIS = re.compile(r"<\|[a-z_]+\|>|<\/?s>|\[/?INST\]|^\s*(?:assistant|user|system)\s*[:\n]|###\s*(?:Instruction|Response)",
                    re.IGNORECASE | re.MULTILINE)


def scrub(text: str) -> str:
    for pattern, placeholder in PII:
        text = pattern.sub(placeholder, text)
    return text


def check(prompt: str, reply_text: str, finish_reason: str = "stop", max_chars: int = 6000) -> str | None:
    """Why a teacher's answer is unusable, or None when it passes every filter."""
    text = reply_text.strip()
    if finish_reason == "length":
        return "cut off"
    if len(text) < 2 or len(text) > max_chars:
        return "length"
    if DEBRIS.search(text):
        return "template debris"
    if detect(text) != detect(prompt):
        return "language"
    if refused(text) and not HARMFUL.search(prompt):
        return "refused a harmless prompt"
    if len(set(text)) < 4 or re.search(r"(.{4,}?)\1{5,}", text):
        return "junk"
    return None


def prompts(store: Store, done: set[str], limit: int | None = None) -> list[tuple[str, list[dict]]]:
    """(origin, conversation ending in a user message) for real prompts not yet used: the same
    question asked twice is used once; personal data scrubbed."""
    seen, out = set(), []
    for message, context in store.user_prompts():
        key = normalize(message.content)
        if message.id in done or key in seen or not key:
            continue
        seen.add(key)
        conversation = [{"role": m["role"], "content": scrub(m["content"])} for m in context]
        out.append((message.id, conversation + [{"role": "user", "content": scrub(message.content)}]))
        if limit and len(out) >= limit:
            break
    return out


def answers(store: Store, teacher: Teacher, limit: int | None = None, max_tokens: int = 512) -> Counter:
    """The teacher answers real prompts not yet distilled -> SFT records (kept or dropped)."""
    todo = prompts(store, store.record_origins("teacher"), limit)

    def one(item: tuple[str, list[dict]]) -> TrainingRecord:
        origin, conversation = item
        reply = teacher.ask(conversation, 0.0, max_tokens)
        question = conversation[-1]["content"]
        reason = check(question, reply.text, reply.finish_reason)
        return TrainingRecord(source="teacher", kind="sft", lang=detect(question), prompt=conversation,
                              chosen=reply.text.strip(), origin=origin, teacher=teacher.name,
                              status="dropped" if reason else "pending", reason=reason or "")
    records = parallel_map(one, todo, "teacher answering", "prompts")
    store.add_records(records)
    return Counter(r.reason or "kept" for r in records)


def preferences(store: Store, student: Engine, teacher: Teacher, limit: int | None = None,
                samples: int = 2) -> Counter:
    """AI feedback: the student answers each prompt `samples` times; the teacher compares every
    two answers in both orders with the rubric; a consistent winner over the loser -> a DPO record."""
    todo = prompts(store, store.record_origins("judge"), limit)
    verdict_of = lambda messages: teacher.ask(messages, 0.0, 96).text  # noqa: E731

    def one(item: tuple[str, list[dict]]) -> list[TrainingRecord]:
        origin, conversation = item
        question = conversation[-1]["content"]
        drafts = [student.generate(conversation, Sampling(temperature=0.9, seed=i, max_tokens=384)).text().strip()
                  for i in range(samples)]
        out = []
        for i in range(len(drafts)):
            for j in range(i + 1, len(drafts)):
                a, b = drafts[i], drafts[j]
                forward, backward = judge.verdict(verdict_of, question, a, b), judge.verdict(verdict_of, question, b, a)
                winner = {("A", "B"): (a, b), ("B", "A"): (b, a)}.get((forward, backward))
                reason = "" if winner else ("same answers" if a == b else "no consistent winner in both orders")
                if winner and check(question, winner[0]):
                    reason = f"winner unusable: {check(question, winner[0])}"
                out.append(TrainingRecord(source="judge", kind="dpo", lang=detect(question), prompt=conversation,
                                          chosen=(winner or (a, b))[0], rejected=(winner or (a, b))[1],
                                          origin=origin, teacher=teacher.name,
                                          status="dropped" if reason else "pending", reason=reason))
        return out
    records = [r for batch in parallel_map(one, todo, "judging answers", "prompts") for r in batch]
    store.add_records(records)
    return Counter(r.reason or "kept" for r in records)


def counts(store: Store) -> Counter:
    """Records by (source, status): what `moss distill` made and what learning used."""
    return Counter((r.source, r.status) for r in store.records())
