"""A remote engine: any OpenAI-compatible server (vLLM, llama-server, another Moss, a paid API)
behind the same `Engine` interface, streamed over HTTP. Used for teachers and judges that run
elsewhere; it serves what its server serves, so it takes no adapter."""

import json
import os
import threading
import time
from pathlib import Path

import httpx

from moss.inference.engine import Activity, EngineBusy, EngineError, Generation, Result, Sampling
from moss.inference.prompts import Message, with_system


def api_base(url: str) -> str:
    """The /v1 base of a server URL given with or without it."""
    base = url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


class RemoteEngine:
    adapters = False
    path: Path | None = None

    def __init__(self, url: str, model: str = "default", api_key: str | None = None,
                 context_size: int = 4096, parallel: int = 4, timeout: float = 300):
        self.url, self.model, self.context_size, self.parallel = url, model, context_size, parallel
        self.version = f"{model}@{url}"
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self._client = httpx.Client(base_url=api_base(url), timeout=timeout,
                                    headers={"Authorization": f"Bearer {key}"} if key else {})
        self._running = 0
        self._lock = threading.Lock()

    def generate(self, messages: list[Message], sampling: Sampling | None = None,
                 system: str | None = None, user: str = "", owner: str = "") -> Generation:
        sampling = sampling or Sampling()
        sampling.check()
        if sampling.grammar:
            raise EngineError("constrained answers (JSON, schemas) need a model served here, not a remote engine")
        body = {"model": self.model, "messages": with_system(messages, system) if system else messages,
                "stream": True, "temperature": sampling.temperature, "top_p": sampling.top_p,
                "max_tokens": sampling.max_tokens, "stop": sampling.stop or None, "seed": sampling.seed}
        generation = Generation(Result(prompt=messages, seed=sampling.seed, model_version=self.version))
        threading.Thread(target=self._stream, args=(body, generation), daemon=True).start()
        return generation

    def _stream(self, body: dict, generation: Generation) -> None:
        result, start = generation.result, time.perf_counter()
        with self._lock:
            self._running += 1
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    text = response.read().decode("utf-8", errors="replace")[:200]
                    error = EngineBusy if response.status_code == 429 else EngineError
                    raise error(f"{self.url} answered {response.status_code}: {text}")
                for line in response.iter_lines():
                    if generation.cancelled:
                        result.finish_reason = "cancelled"
                        break
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    self._take(json.loads(line[6:]), generation, start)
            result.total_seconds = time.perf_counter() - start
            generation._emit_end()
        except (httpx.HTTPError, ValueError, EngineError) as exc:
            result.finish_reason = "error"
            generation._emit_end(exc if isinstance(exc, EngineError)
                                 else EngineError(f"{self.url}: {type(exc).__name__}: {exc}"))
        finally:
            with self._lock:
                self._running -= 1

    @staticmethod
    def _take(chunk: dict, generation: Generation, start: float) -> None:
        result = generation.result
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content") or ""
            if piece:
                if not result.text:
                    result.time_to_first_token = time.perf_counter() - start
                result.text += piece
                result.completion_tokens += 1  # pieces, until the server's usage says otherwise
                generation._emit(piece)
            result.finish_reason = choice.get("finish_reason") or result.finish_reason
        if chunk.get("moss"):  # a Moss server says where it stored the exchange
            result.message_id = chunk["moss"]["message_ids"][-1]
            result.memories = [m["id"] for m in chunk["moss"].get("memories", [])]
        if chunk.get("usage"):
            result.prompt_tokens = chunk["usage"].get("prompt_tokens", 0)
            result.completion_tokens = chunk["usage"].get("completion_tokens", result.completion_tokens)

    def set_adapter(self, path: Path | None, version: str | None = None) -> None:
        raise EngineError(f"{self.url} serves its own model: a remote engine takes no adapter")

    def encode(self, messages: list[Message]) -> list[int]:
        raise EngineError("a remote engine's tokenizer is on its server: token counts come with each answer")

    def answer_tokens(self, text: str) -> list[int]:
        raise EngineError("a remote engine's tokenizer is on its server")

    def activity(self) -> Activity:
        return Activity(active=self._running)

    def clear_cache(self) -> None:
        pass  # the server keeps its own cache

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "RemoteEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
