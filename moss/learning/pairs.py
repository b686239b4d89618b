"""Preference pairs that keep taught facts apart: the chosen answer over the rejected one, and,
when the rejected answer states another taught fact, the reverse on that fact's own question."""

import re
from difflib import SequenceMatcher

from moss.inference.engine import Engine
from moss.inference.prompts import with_system
from moss.learning.examples import Pair, Sequence
from moss.learning.taught import Taught
from moss.text import covers


class Tokens:
    """Training sequences tokenized exactly as the engine will see them."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def sequence(self, messages: list[dict], answer: str) -> Sequence:
        prompt = self.engine.encode(with_system(messages))
        return Sequence(prompt + self.engine.answer_tokens(answer), len(prompt))


def states(answer: str, t: Taught) -> bool:
    """Whether an answer states what a taught item answers."""
    return covers(answer, t.answer, [t.question, t.original])


def pairs(tokens: Tokens, prompt: list[dict], chosen: str, rejected: str, taught: list[Taught]) -> list[Pair]:
    """A preference pair, and, when its rejected answer states a taught fact, the reverse on that
    fact's own question. A model that has learned facts about a place gives them to neighbouring
    questions ("现任院长是韩青禾", 韩青禾 being the first director taught a cycle before: 17 of the
    20 corrected answers in bench/learn.py's second cycle). The pair pushes that answer down, and
    with it the fact where it was taught; the reverse pair ("第一任院长是韩青禾" over "第一任院长是
    苏砚秋") teaches the model to tell the two questions apart instead of forgetting either. One
    reverse pair, on the original question: with a second on a trained wording the old fact won
    instead (bench/learn.py: the current director was never learned, answered 韩青禾)."""
    out = [Pair(tokens.sequence(prompt, chosen), tokens.sequence(prompt, rejected))]
    for t in taught:
        if states(rejected, t) and not states(chosen, t):
            own = t.messages(t.question)
            out.append(Pair(tokens.sequence(own, t.answer), tokens.sequence(own, swapped(t.answer, rejected, chosen))))
    return out


def swapped(answer: str, rejected: str, chosen: str) -> str:
    """`answer` with the part where `rejected` and `chosen` differ swapped for the chosen one's:
    the taught answer as the mixed-up model would give it. When that part is not in `answer`
    (the rejected answer says it in other words), the chosen answer whole."""
    a, b = _pieces(rejected), _pieces(chosen)
    ops = [op for op in SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if op[0] != "equal"]
    old = "".join(a[ops[0][1]:ops[-1][2]]).strip() if ops else ""
    new = "".join(b[ops[0][3]:ops[-1][4]]).strip() if ops else ""
    return answer.replace(old, new) if old and new and old in answer else chosen


def _pieces(text: str) -> list[str]:
    """Words, Chinese characters, spaces and marks, in order: what a swap is made of."""
    return re.findall(r"[A-Za-z0-9'’-]+|\s+|.", text)
