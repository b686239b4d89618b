"""Sharing the CPU between serving and learning: people being answered come first.

On 2 cores, torch training and llama.cpp decoding running at once slow each other several fold
(../shared/FINDINGS.md). The server marks when it is answering, in a small file in the data
directory; a learning cycle (another process) checks it between training steps and waits while
the server is busy, so answers keep their speed and training uses the idle time, up to a
guaranteed share (Turns): under steady traffic a cycle still ends."""

import os
import time
from pathlib import Path
from typing import Callable

from moss import paths
from moss.progress import check_interrupt

QUIET = 1.0  # seconds without an answer in progress before training resumes
# Longest wait for an idle moment outside training (before asking a candidate, before a
# cycle's first model work): under steady traffic a cycle goes on after it.
PATIENCE = 30.0


def _marker() -> Path:
    return paths.home() / "serving.busy"


class Serving:
    """The server's side: counts answers in progress and keeps the marker file current."""

    def __init__(self):
        self.active = 0
        self.path = _marker()
        self.path.unlink(missing_ok=True)

    def started(self) -> None:
        self.active += 1
        if self.active == 1:
            self.path.write_text(str(os.getpid()))

    def ended(self) -> None:
        self.active = max(0, self.active - 1)
        if self.active == 0:
            self.path.unlink(missing_ok=True)
            _touch(paths.home() / "serving.last")


def _touch(path: Path) -> None:
    path.write_text(str(time.time()))


def answering() -> bool:
    """A server is answering now, or finished an answer under QUIET seconds ago."""
    marker = _marker()
    if marker.exists():
        try:
            os.kill(int(marker.read_text() or 0), 0)
            return True
        except PermissionError:
            return True  # alive, run by another user
        except (ValueError, ProcessLookupError):
            marker.unlink(missing_ok=True)  # left by a server that died
    last = paths.home() / "serving.last"
    try:
        return time.time() - float(last.read_text()) < QUIET
    except (OSError, ValueError):
        return False


def wait_for_idle(log: Callable[[str], None], poll: float = 0.2, limit: float | None = None) -> float:
    """Block while the server is answering, at most `limit` seconds; returns the seconds waited."""
    start = time.monotonic()
    if answering() and (limit is None or limit > 0):
        log("paused: the server is answering")
        while answering() and (limit is None or time.monotonic() - start < limit):
            check_interrupt()
            time.sleep(poll)
    return time.monotonic() - start


class Turns:
    """Training's turns on a busy machine: between steps it waits for the server to be idle, but
    never so long that training gets less than `share` of the time since it started."""

    def __init__(self, share: float, log: Callable[[str], None]):
        self.share, self.log = share, log
        self.worked = self.waited = 0.0
        self.mark = time.monotonic()

    def between_steps(self) -> None:
        now = time.monotonic()
        self.worked += now - self.mark
        allowed = self.worked * (1 - self.share) / self.share - self.waited
        self.waited += wait_for_idle(self.log, limit=max(0.0, allowed))
        self.mark = time.monotonic()
