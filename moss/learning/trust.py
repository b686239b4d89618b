"""The trust policy: which feedback may be learned, decided before any training.

Pending feedback becomes accepted, held for an admin's review, or rejected, each with its reason:
- rejected: its author is disabled; it judges an answer Moss did not give; what it teaches
  (a correction, a 👍'd answer, a preferred answer) is unsafe;
- held: a correction in another language than its question; a correction that contradicts what
  the base model and the teacher both answer with confidence ("The capital of France is Lyon");
- pending still: a correction from someone neither admin nor trusted until `agree` people give
  the same correction (or an admin accepts it);
- accepted: the rest (an admin's own feedback at once: an admin is the reviewer).
Admins accept or reject anything, learned or not (review.py); a rejected item that was learned
is unlearned by the next cycle (ledger.py)."""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from moss import safety
from moss.inference.engine import Engine, Sampling
from moss.inference.loading import open_engine
from moss.lang import detect
from moss.progress import parallel_map
from moss.store import Store
from moss.store.database import Judgment
from moss.text import covers, normalize, novel, unsure

Log = Callable[[str], None]
POLICY = "policy"  # the actor of decisions the policy makes


@dataclass
class Policy:
    agree: int = 2  # people who must give the same correction, when none of them is trusted
    check_known: bool = True  # hold corrections that contradict what the base model and teacher know


@dataclass
class Asked:
    """A correction awaiting the model check, with the question it answers."""
    judgment: Judgment
    question: str
    reason: str  # why it may be accepted (from a trusted user, confirmed by 2 people...)
    answers: dict[str, list[str]] = field(default_factory=dict)  # by who answered (base, teacher): greedy, samples


def review(store: Store, policy: Policy, base: Path, teacher: Path | None, threads: int | None,
           log: Log = print) -> Counter:
    """Decide every pending piece of feedback; returns how many of them went to each state."""
    looked_at = {j.feedback.id for j in store.judgments(("pending",))}
    asked = triage(store, policy)
    if asked and policy.check_known:
        log(f"checking {len(asked)} correction(s) against what the base model and the teacher know…")
        _answer(asked, base, "base", threads)
        if teacher is not None and teacher.resolve() != base.resolve():
            _answer(asked, teacher, "teacher", threads)
    for a in asked:
        state, reason = _weigh(a) if policy.check_known else ("accepted", a.reason)
        store.decide(a.judgment.feedback.id, state, reason, POLICY,
                     checks={who: " | ".join(texts) for who, texts in a.answers.items()})
    return Counter(j.feedback.state for j in store.judgments(ids=looked_at))


def triage(store: Store, policy: Policy) -> list[Asked]:
    """The rules that need no model, on pending feedback: rejects and holds what they can, accepts
    judgments of answers and an admin's feedback, and returns the corrections that passed them,
    for the model check."""
    for j in store.judgments(("accepted", "held", "parked")):  # accepted before its author was disabled
        if j.author.disabled:
            store.decide(j.feedback.id, "rejected", "its author is disabled", POLICY)
    pending = store.judgments(("pending",))
    if not pending:
        return []
    questions = _questions(store, store.judgments())
    peers = _peers(store, questions)
    others = store.messages_by_id({j.feedback.value["other_message_id"] for j in pending if j.feedback.kind == "comparison"})
    out = []
    for j in pending:
        verdict = _rules(j, questions.get(j.message.parent_id, ""), peers, policy, _taught_text(j, others))
        if isinstance(verdict, Asked):
            out.append(verdict)
        elif verdict is not None:
            store.decide(j.feedback.id, *verdict, POLICY)
    return out


def _rules(j: Judgment, question: str, peers: dict[str, list[Judgment]], policy: Policy, teaches: str):
    """(state, reason) for a decision now, an Asked for the model check, None to stay pending.
    `teaches`: what the feedback would teach the model to say."""
    f = j.feedback
    if j.author.disabled:
        return "rejected", "its author is disabled"
    if j.message.model_version_id is None:
        return "rejected", "it judges an answer Moss did not give"
    harm = safety.unsafe(teaches)
    if harm:
        return "rejected", f"what it teaches is unsafe ({harm})"
    if f.kind != "correction":
        return "accepted", "a judgment of an answer Moss gave"
    answer = f.value["content"]
    if question and detect(answer) != detect(question):
        names = {"en": "English", "zh": "Chinese"}
        return "held", (f"the correction is in {names.get(detect(answer), detect(answer))}, "
                        f"its question in {names.get(detect(question), detect(question))}")
    if j.author.admin:
        return "accepted", "from an admin"
    if j.author.trusted:
        return Asked(j, question, "from a trusted user")
    agreeing = {p.author.id for p in peers.get(normalize(question), []) if _agree(p, answer, question)}
    agreeing.add(j.author.id)
    if len(agreeing) >= policy.agree:
        return Asked(j, question, f"confirmed by {len(agreeing)} people")
    waiting = policy.agree - len(agreeing)
    reason = f"waits for {waiting} more person(s) to give the same correction, or an admin's review"
    return None if f.reason == reason else ("pending", reason)


def _taught_text(j: Judgment, others: dict) -> str:
    """What a piece of feedback would teach the model to say ('' for a 👎, a flag, a tie)."""
    f = j.feedback
    if f.kind == "correction":
        return f.value["content"]
    if f.kind == "rating" and f.value.get("rating") == "up":
        return j.message.content
    if f.kind == "comparison" and f.value.get("choice") == "this":
        return j.message.content
    if f.kind == "comparison" and f.value.get("choice") == "other":
        other = others.get(f.value["other_message_id"])
        return other.content if other is not None else ""
    return ""


def _questions(store: Store, judgments: list[Judgment]) -> dict[str, str]:
    """The question each judged answer answers, by the answer's parent message id."""
    parents = store.messages_by_id({j.message.parent_id for j in judgments if j.message.parent_id})
    return {pid: m.content for pid, m in parents.items() if m.role == "user"}


def _peers(store: Store, questions: dict[str, str]) -> dict[str, list[Judgment]]:
    """Corrections not rejected, by their normalized question: those that may agree."""
    out: dict[str, list[Judgment]] = {}
    for j in store.judgments(("pending", "accepted", "held", "learned")):
        if j.feedback.kind == "correction" and j.message.parent_id in questions:
            out.setdefault(normalize(questions[j.message.parent_id]), []).append(j)
    return out


def _agree(peer: Judgment, answer: str, question: str) -> bool:
    other = peer.feedback.value["content"]
    return covers(other, answer, [question]) and covers(answer, other, [question])


# How each model is asked: greedy, then sampled twice (fixed seeds: the same verdict every time).
# A model that knows answers alike every time; one that makes up a founder for a made-up library
# names someone new each time (measured on the default model and the teacher).
ASKS = ((0.0, 7), (1.0, 1), (1.0, 2))


def _answer(asked: list[Asked], model: Path, who: str, threads: int | None) -> None:
    """The model's own answers to each question (ASKS), with no adapter and no history."""
    engine: Engine = open_engine(str(model), context_size=2048, parallel=4, threads=threads)
    try:
        def one(job: tuple[str, float, int]) -> str:
            return engine.generate([{"role": "user", "content": job[0]}],
                                   Sampling(temperature=job[1], max_tokens=48, seed=job[2])).text().strip()
        questions = list(dict.fromkeys(a.question for a in asked))  # people who agree asked the same
        jobs = [(q, t, seed) for q in questions for t, seed in ASKS]
        said: dict[str, list[str]] = {}
        for (q, _, _), text in zip(jobs, parallel_map(one, jobs, f"asking the {who} model", "answers", 4)):
            said.setdefault(q, []).append(text)
        for a in asked:
            a.answers[who] = said[a.question]
    finally:
        engine.close()


def _weigh(a: Asked) -> tuple[str, str]:
    """Held when the models agree on a claim, every time they are asked, that the correction
    does not hold; accepted otherwise."""
    claim = known(a.question, a.answers)
    if claim and not covers(a.judgment.feedback.value["content"], " ".join(sorted(claim)), [a.question]):
        said = " / ".join(f"{who}: {texts[0][:80]}" for who, texts in a.answers.items())
        return "held", f"it contradicts what the models answer every time they are asked ({said})"
    return "accepted", a.reason


def known(question: str, answers: dict[str, list[str]]) -> set[str]:
    """The claim (content units) that every answer of every model makes, when each model gave at
    least two answers that do not hedge; empty when they disagree: what counts as known."""
    claims = []
    for texts in answers.values():
        sure = [novel(t, question) for t in texts if not unsure(t)]
        if len(sure) < 2:
            return set()
        claims += sure
    if not claims:
        return set()
    shared = set.intersection(*claims)
    return shared if shared and len(shared) >= 0.5 * min(len(c) for c in claims) else set()
