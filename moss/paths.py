"""Where Moss keeps its data: the platform's user data directory, or $MOSS_HOME."""

import os
from pathlib import Path

import platformdirs


def home() -> Path:
    """The data directory, created on first use; MOSS_HOME overrides the platform default."""
    root = Path(os.environ.get("MOSS_HOME") or platformdirs.user_data_dir("moss", appauthor=False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def models_dir() -> Path:
    path = home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Files Moss can make again from others (a model's training copy, its anchor answers, built
    wheels), shared by every data directory: $MOSS_CACHE_DIR, or the platform's cache directory."""
    root = Path(os.environ.get("MOSS_CACHE_DIR") or platformdirs.user_cache_dir("moss", appauthor=False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def write_shared(path: Path, text: str) -> None:
    """Write a file of the shared cache that other processes may be writing at the same time:
    each writes its own partial file and renames it, so a reader finds it whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
