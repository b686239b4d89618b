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
