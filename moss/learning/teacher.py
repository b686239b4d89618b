"""A teacher: a stronger model Moss learns from, run here or reached over an OpenAI-compatible API."""

import os
from dataclasses import dataclass

from moss.inference.engine import Engine, EngineError, Sampling
from moss.inference.remote import RemoteEngine


@dataclass
class Reply:
    text: str
    finish_reason: str  # "stop" or "length" (cut off: not a usable answer)


class TeacherError(Exception):
    """The teacher could not be reached or refused the request."""


class Teacher:
    """Any engine asked for greedy or sampled answers, one at a time or from several threads."""

    def __init__(self, engine: Engine):
        self.engine, self.name = engine, engine.version

    def ask(self, messages: list[dict], temperature: float = 0, max_tokens: int = 512) -> Reply:
        try:
            g = self.engine.generate(messages, Sampling(temperature=temperature, max_tokens=max_tokens))
            return Reply(g.text(), g.result.finish_reason)
        except EngineError as exc:
            raise TeacherError(f"the teacher {self.name} failed: {exc}") from None

    def close(self) -> None:
        self.engine.close()


def remote(url: str, model: str, api_key: str | None = None) -> Teacher:
    """Any OpenAI-compatible endpoint: vLLM, another Moss, a paid API. The key comes from
    MOSS_TEACHER_API_KEY or OPENAI_API_KEY unless given."""
    key = api_key or os.environ.get("MOSS_TEACHER_API_KEY") or os.environ.get("OPENAI_API_KEY") or ""
    return Teacher(RemoteEngine(url, model, key))


def local(engine: Engine) -> Teacher:
    """A model Moss runs itself (default: the 1.5B teacher from the `teacher` extra)."""
    return Teacher(engine)
