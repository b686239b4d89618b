"""Progress for long work: a Rich bar in a terminal, a line per step with time left otherwise."""

import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, Protocol, TypeVar

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn


_interrupted = threading.Event()


def catch_interrupts() -> None:
    """Make Ctrl-C and SIGTERM stop long work within seconds, every time. Python raises
    KeyboardInterrupt in whatever runs in the main thread when the signal arrives; inside a C
    library's callback (llama.cpp's log callback runs there while a model loads, with stderr
    silenced) it is dropped without a word. So the signal is also remembered, and every
    progress step and stage raises it again (`check_interrupt`)."""
    def interrupt(signum, frame):
        _interrupted.set()
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def check_interrupt() -> None:
    """Raise KeyboardInterrupt if Ctrl-C came (after catch_interrupts), even if it was lost."""
    if _interrupted.is_set() and threading.current_thread() is threading.main_thread():
        raise KeyboardInterrupt


class Tracker(Protocol):
    def advance(self, amount: float) -> None: ...

    def resize(self, total: float) -> None: ...  # the work grew or shrank on the way


class _LineTracker:
    """For logs and pipes: one line every `every` seconds, with counts and time left."""

    def __init__(self, label: str, total: float, unit: str, every: float = 2.0):
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.done = 0.0
        self.start = self.last = time.monotonic()  # first line after `every` seconds, or at the end

    def advance(self, amount: float) -> None:
        check_interrupt()
        self.done += amount
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-6)
            left = (self.total - self.done) / rate if rate > 0 else 0
            print(f"{self.label}: {_fmt(self.done, self.unit)}/{_fmt(self.total, self.unit)}"
                  f" ({100 * self.done / max(self.total, 1):.0f}%), {left:.0f}s left",
                  file=sys.stderr, flush=True)

    def resize(self, total: float) -> None:
        self.total = total


def _fmt(value: float, unit: str) -> str:
    return f"{value / 1e6:.0f} MB" if unit == "bytes" else f"{value:.0f}"


@contextmanager
def track(label: str, total: float, unit: str = "bytes") -> Iterator[Tracker]:
    """Report progress of `total` units of work on stderr."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield _LineTracker(label, total, unit)
        return
    columns = [TextColumn("{task.description}"), BarColumn()]
    columns += [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [
        TextColumn("{task.completed:.0f}/{task.total:.0f}")]
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=False) as bar:
        task = bar.add_task(label, total=total)

        class _Bar:
            def advance(self, amount: float) -> None:
                check_interrupt()
                bar.advance(task, amount)

            def resize(self, total: float) -> None:
                bar.update(task, total=total)

        yield _Bar()


T = TypeVar("T")


def parallel_map(fn: Callable[..., T], items: list, label: str, unit: str, workers: int = 4) -> list[T]:
    """fn over items, `workers` at a time (the engine batches them), in order, with progress.
    On Ctrl-C or an error nothing more starts and nothing waits for the calls in flight: the
    caller's cleanup (closing the engine cancels its answers) runs at once."""
    out: list[T] = []
    pool = ThreadPoolExecutor(max(1, workers))
    finished = False
    try:
        with track(label, len(items), unit=unit) as bar:
            for result in pool.map(fn, items):
                out.append(result)
                bar.advance(1)
        finished = True
    finally:
        pool.shutdown(wait=finished, cancel_futures=True)
    return out
