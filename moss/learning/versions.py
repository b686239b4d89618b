"""Model versions on disk and in the store: the version folders and the cycle's lock, a
version's lineage, and serving a version in an engine (what a version holds: ledger.py).

A cycle writes into versions/<id>.partial and renames it when the store records the version, so
a crash leaves at most a partial folder, which the next cycle removes."""

import fcntl
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from moss import paths
from moss.inference.engine import Engine, EngineError
from moss.store import Store
from moss.store.schema import ModelVersion


class LearnError(Exception):
    """A cycle that cannot run (nothing to learn, another cycle running); the message says why."""


def versions_dir() -> Path:
    path = paths.home() / "versions"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def lock() -> Iterator[None]:
    """One cycle at a time per data directory."""
    handle = open(versions_dir() / "learn.lock", "w")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LearnError("another learning cycle is running; wait for it to finish") from None
        yield
    finally:
        handle.close()


def clean_partial(log: Callable[[str], None]) -> None:
    for partial in versions_dir().glob("*.partial"):
        log(f"removing {partial.name}, left by an interrupted cycle")
        shutil.rmtree(partial, ignore_errors=True)


def lineage(store: Store, version: ModelVersion) -> list[ModelVersion]:
    """A version and its ancestors, newest first."""
    out = [version]
    while out[-1].parent_id:
        out.append(store.version(out[-1].parent_id))
    return out


def state_path(adapter: Path) -> Path:
    """The LoRA weights beside an adapter GGUF, kept so the next version continues from them."""
    return adapter.with_suffix(".safetensors")


def serve(engine: Engine, version: ModelVersion) -> None:
    """Answer with `version` from the next request on: its adapter, or none for a base model."""
    engine.set_adapter(Path(version.path) if version.parent_id else None, version.id)


def follow(engine: Engine, store: Store) -> None:
    """Serve the store's serving version of the engine's base model, if it is not served already."""
    if not engine.adapters:
        return  # a remote engine serves what its server serves
    version = store.serving_version(engine.model)
    if version is None or version.id == engine.version:
        return
    try:
        serve(engine, version)
    except EngineError as exc:
        print(f"moss: cannot serve {version.id}: {exc}", file=sys.stderr)
