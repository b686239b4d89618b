"""Sharing the CPU between serving and learning: people being answered come first.

On 2 cores, torch training and llama.cpp decoding running at once slow each other several fold
(../shared/FINDINGS.md). The server marks when it is answering, in a small file in the data
directory; a learning cycle (another process) checks it between training steps and waits while
the server is busy, so answers keep their speed and training uses the idle time."""

import os
import time
from pathlib import Path
from typing import Callable

from moss import paths
from moss.progress import check_interrupt

QUIET = 1.0  # seconds without an answer in progress before training resumes


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


def wait_for_idle(log: Callable[[str], None], poll: float = 0.2) -> float:
    """Block while the server is answering; returns the seconds waited."""
    start = time.monotonic()
    if answering():
        log("paused: the server is answering")
        while answering():
            check_interrupt()
            time.sleep(poll)
    return time.monotonic() - start
