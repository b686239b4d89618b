"""The scheduled learner (`moss serve --learn-every 1h --learn-when 20`): runs the verified
learning cycle with no one at the terminal, through the same child process the admin API starts,
when enough feedback waits or the interval has passed with something waiting."""

import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

from moss.server.admin import Learner, LearnIn
from moss.store import Store

WAITING = ("pending", "accepted")  # feedback a cycle would decide or learn


@dataclass
class Plan:
    every: float | None = None  # seconds between cycles while anything waits
    when: int | None = None  # start as soon as this many pieces of feedback wait

    @property
    def active(self) -> bool:
        return self.every is not None or self.when is not None


def duration(text: str) -> float:
    """Seconds in "90s", "30m", "1h", "2h30m" or "1d"; ValueError otherwise."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower().replace(" ", ""):
        raise ValueError(f"'{text}' is not a duration such as 30m, 1h or 2h30m")
    seconds = sum(float(n) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[u] for n, u in parts)
    if seconds < 60:
        raise ValueError(f"'{text}' is shorter than a minute: a cycle alone takes minutes")
    return seconds


class Schedule:
    """Starts a cycle when `plan` says so. After a cycle that promoted nothing, the count that
    triggers the next is counted from what waited then, so a failing batch is not retried
    back to back: it waits for new feedback or the next interval."""

    def __init__(self, plan: Plan, learner: Learner, store: Store, clock: Callable[[], float] = time.monotonic):
        self.plan, self.learner, self.store, self.clock = plan, learner, store, clock
        self.last_start = clock()
        self.baseline = 0  # what waited when the last cycle that promoted nothing started
        self._waiting_then = 0

    def due(self) -> bool:
        """Whether a cycle should start now (none running)."""
        status = self.learner.status()
        if status.running:
            return False
        if status.exit_code is not None:  # the last cycle ended: was it one of ours that failed?
            self.baseline = self._waiting_then if status.exit_code != 0 else 0
        waiting = self.waiting()
        if self.plan.when is not None and waiting - self.baseline >= self.plan.when:
            return True
        return (self.plan.every is not None and waiting > 0
                and self.clock() - self.last_start >= self.plan.every)

    def waiting(self) -> int:
        return len(self.store.judgments(WAITING)) + len(self.store.records(status="pending"))

    def start(self) -> None:
        self._waiting_then, self.last_start = self.waiting(), self.clock()
        self.learner.start(LearnIn())

    def run(self, stop: threading.Event, poll: float = 30.0) -> None:
        """Look every `poll` seconds until `stop` is set."""
        while not stop.wait(poll):
            try:
                if self.due():
                    self.start()
            except Exception as exc:  # the database may be briefly unavailable: look again later
                print(f"moss: scheduled learning check failed: {exc}")
