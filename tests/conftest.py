"""Shared fixtures: a private Moss data directory and real engines on the real models."""

import os

import pytest

from moss.engine import LlamaCppEngine
from moss.models import resolve


@pytest.fixture(scope="session", autouse=True)
def moss_home(tmp_path_factory):
    """Each test run gets its own data directory, as a fresh machine would.
    MOSS_TEST_HOME keeps one between runs (saves re-assembling the default model)."""
    home = os.environ.get("MOSS_TEST_HOME") or str(tmp_path_factory.mktemp("moss-home"))
    os.environ["MOSS_HOME"] = home
    return home


@pytest.fixture(scope="session")
def small_engine(moss_home):
    """SmolLM2-135M: fast, English only."""
    with LlamaCppEngine(resolve("small"), "smollm2-135m-instruct", context_size=2048) as engine:
        yield engine


@pytest.fixture(scope="session")
def default_engine(moss_home):
    """The default Qwen2.5-Coder-0.5B model, assembled from its wheels on first use."""
    with LlamaCppEngine(resolve("default"), "qwen2.5-coder-0.5b-instruct") as engine:
        yield engine
