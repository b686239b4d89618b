"""Instant memory: what people taught, retrieved at answer time until a verified version learns it.

Every correction is a memory (store/memories.py). Whom it reaches follows the trust policy:
- its author, at once (pending, held for review);
- everyone, once accepted (accepted, parked);
- nobody once rejected, or once the serving version or one of its ancestors learned it
  ("learned": kept for audit; a rollback to a version that never learned it revives it).
Retrieval is BM25 (bm25s) over each memory's question and answer, in words cut by jieba (it
cuts Chinese and leaves English words whole; English words are stemmed, so "headquarters" meets
"headquartered"). A memory applies when the message covers at least COVER of its question's
weight, where a word weighs more the rarer it is in the language at large (wordfreq): a question
about the Veltrane Observatory holds its rare name and finds what was taught about it, while
"Who founded Microsoft?" shares only the common "founded" and does not. COVER is measured
(bench/memory.py), not guessed."""

import logging
import threading
import time
from dataclasses import dataclass

from moss.inference.prompts import Message, extend_system
from moss.lang import detect
from moss.store import Store
from moss.store.memories import Remembered
from moss.words import weights, words

COVER = 0.5  # share of a memory's question weight the message must hold (bench/memory.py)
LIMIT = 5  # memories put into one prompt, the best first: several about one subject tie on its name
CHECK_EVERY = 1.0  # seconds between looks at the store for changes made by other processes

SCOPES = ("you", "everyone", "learned", "gone")  # whom a memory reaches (see the module's purpose)


def scope(r: Remembered, lineage: set[str]) -> str:
    """Whom a memory reaches, given the serving version and its ancestors (`lineage`)."""
    if r.state == "rejected":
        return "gone"
    if r.state == "learned" and r.learned_in in lineage and not r.unlearned_in:
        return "learned"
    if r.state in ("accepted", "parked", "learned"):
        return "everyone"
    return "you"  # pending, held: its author's until the policy or an admin accepts it


@dataclass
class _Words:
    source: tuple[str, str]  # the question and answer they were cut from
    text: list[str]  # what BM25 indexes: the question's and the answer's words
    question: dict[str, float]  # the question's words and their weights (weights())


@dataclass
class Recalled:
    """A memory put into a prompt, as the API's `moss.memories` lists it."""
    id: int
    question: str
    answer: str
    scope: str
    cover: float  # how much of its question the message holds


class _Index:
    """BM25 over the memories that reach anyone, with who each reaches."""

    def __init__(self, rows: list[tuple[Remembered, str]], tokens: dict[int, "_Words"]):
        import bm25s
        import numpy as np
        self.rows = rows
        self.questions = [tokens[r.memory.id].question for r, _ in rows]
        self.authors = np.array([r.memory.user_id for r, _ in rows])
        self.everyone = np.array([s == "everyone" for _, s in rows], dtype=float)
        self.bm25 = bm25s.BM25()
        if rows:
            self.bm25.index([tokens[r.memory.id].text for r, _ in rows], show_progress=False)

    def search(self, text: str, user_id: int, limit: int, cover: float) -> list[Recalled]:
        """The best memories by BM25 among those whose question the message covers enough of."""
        asked = words(text)
        if not self.rows or not asked:
            return []
        mask = ((self.everyone > 0) | (self.authors == user_id)).astype(float)
        found, scores = self.bm25.retrieve([asked], k=min(20, len(self.rows)), show_progress=False, weight_mask=mask)
        out, held = [], set(asked)
        for i, score in zip(found[0], scores[0]):
            question = self.questions[i]
            share = sum(weight for w, weight in question.items() if w in held) / (sum(question.values()) or 1)
            if score > 0 and share >= cover:
                r, reach = self.rows[i]
                out.append(Recalled(r.memory.id, r.memory.question, r.memory.answer, reach, round(share, 3)))
        return out[:limit]  # in BM25's order: the attribute asked about outranks the subject alone


class Memories:
    """The memories of one data directory, for the served base model `base`: an index rebuilt
    when the store changes (at once after a write through `changed`, within CHECK_EVERY seconds
    after another process's), searched per message."""

    def __init__(self, store: Store, base: str | None, cover: float = COVER, limit: int = LIMIT):
        self.store, self.base, self.cover, self.limit = store, base, cover, limit
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._index: _Index | None = None
        self._tokens: dict[int, _Words] = {}
        self._checked = 0.0
        self._watched = False
        self._lineage: set[str] = set()

    def recall(self, text: str, user_id: int) -> list[Recalled]:
        """The memories that apply to a message from `user_id`, best first (at most `limit`)."""
        if self._index is None or (not self._watched and time.monotonic() - self._checked > CHECK_EVERY):
            self.changed()
        return self._index.search(text, user_id, self.limit, self.cover) if self._index else []

    def changed(self) -> None:
        """Look at the store now and rebuild the index if anything changed (a memory added, edited
        or removed, a feedback state, the serving version)."""
        with self._lock:
            self._checked = time.monotonic()
            serving = self.store.serving_version(self.base)
            stamp = (*self.store.memory_stamp(), serving.id if serving else None)
            if stamp == self._stamp:
                return
            self._lineage = self.lineage()
            rows = [(r, scope(r, self._lineage)) for r in self.store.memories()]
            live = [(r, s) for r, s in rows if s in ("you", "everyone")]
            self._index = _Index(live, self._words(live))
            self._stamp = stamp

    def watch(self, stop: threading.Event) -> None:
        """Keep the index current from a thread of its own (the server's), so that no request
        waits for a rebuild; returns when `stop` is set."""
        self._watched = True
        weights("Moss 记忆")  # jieba's and wordfreq's dictionaries load here, not in the first question's time
        while not stop.wait(CHECK_EVERY):
            try:
                self.changed()
            except Exception as exc:  # a database hiccup: the old index serves until the next look
                logging.getLogger("moss").warning("memory index not refreshed: %s", exc)

    def listing(self, user_id: int | None = None) -> list[tuple[Remembered, str]]:
        """Memories with whom each reaches: one author's, or all (for admins)."""
        lineage = self.lineage()
        return [(r, scope(r, lineage)) for r in self.store.memories(user_id)]

    def scope_of(self, r: Remembered) -> str:
        """Whom a memory reaches, as of the index's last look at the store (at most a second old)."""
        return scope(r, self._lineage)

    def lineage(self) -> set[str]:
        """The serving version and its ancestors: the versions whose learning retires a memory
        (with no `base`, those of every base model's serving version)."""
        serving = [self.store.serving_version(self.base)] if self.base else \
            [v for v in self.store.all_versions() if v.status == "serving"]
        out = set()
        for version in serving:
            while version is not None:
                out.add(version.id)
                version = self.store.version(version.parent_id) if version.parent_id else None
        return out

    def _words(self, rows: list[tuple[Remembered, str]]) -> dict[int, "_Words"]:
        """Each memory's words, cut once per text (jieba takes ~0.1 ms a line)."""
        for r, _ in rows:
            m = r.memory
            if m.id not in self._tokens or self._tokens[m.id].source != (m.question, m.answer):
                self._tokens[m.id] = _Words((m.question, m.answer), words(m.question + " " + m.answer),
                                            weights(m.question))
        return self._tokens


HEADER = {
    "en": "People have taught you these facts. When the user asks about one of them, answer with it, "
          "even where you believed otherwise:",
    "zh": "用户教过你以下事实。问题涉及其中一条时，请以它为准回答，即使你原先以为不是这样：",
}


def with_memories(messages: list[Message], used: list[Recalled]) -> list[Message]:
    """The messages with the memories at the end of the system message."""
    if not used:
        return messages
    return extend_system(messages, HEADER[detect(latest_question(messages))]
                         + "".join(f"\n- {m.question} → {m.answer}" for m in used))


def latest_question(messages: list[Message]) -> str:
    """What retrieval searches for: the newest user message."""
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
