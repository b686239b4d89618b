"""A teacher: a stronger model Moss learns from, reached over an OpenAI-compatible API or run locally."""

import os
from dataclasses import dataclass
from typing import Callable

import httpx

from moss.engine import Engine, Sampling


@dataclass
class Reply:
    text: str
    finish_reason: str  # "stop" or "length" (cut off: not a usable answer)


Ask = Callable[[list[dict], float, int], Reply]  # messages, temperature, max_tokens -> reply


@dataclass
class Teacher:
    name: str
    ask: Ask
    close: Callable[[], None] = lambda: None


def remote(url: str, model: str, api_key: str | None = None) -> Teacher:
    """Any OpenAI-compatible endpoint: vLLM, another Moss, a paid API. The key comes from
    MOSS_TEACHER_API_KEY or OPENAI_API_KEY unless given."""
    key = api_key or os.environ.get("MOSS_TEACHER_API_KEY") or os.environ.get("OPENAI_API_KEY") or ""
    base = url.rstrip("/")
    base = base if base.endswith("/v1") else base + "/v1"
    client = httpx.Client(timeout=300, headers={"Authorization": f"Bearer {key}"} if key else {})

    def ask(messages: list[dict], temperature: float = 0, max_tokens: int = 512) -> Reply:
        r = client.post(f"{base}/chat/completions", json={
            "model": model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens})
        if r.status_code != 200:
            raise TeacherError(f"the teacher at {url} answered {r.status_code}: {r.text[:200]}")
        choice = r.json()["choices"][0]
        return Reply(choice["message"].get("content") or "", choice.get("finish_reason") or "stop")
    return Teacher(f"{model}@{url}", ask, client.close)


def local(engine: Engine) -> Teacher:
    """A model Moss runs itself (default: the 1.5B teacher from the `teacher` extra)."""
    def ask(messages: list[dict], temperature: float = 0, max_tokens: int = 512) -> Reply:
        g = engine.generate(messages, Sampling(temperature=temperature, max_tokens=max_tokens))
        text = g.text()
        return Reply(text, g.result.finish_reason)
    return Teacher(engine.model, ask, engine.close)


class TeacherError(Exception):
    """The teacher could not be reached or refused the request."""
