"""Serving benchmark: Moss's API vs its engine, and aggregate throughput vs llama.cpp's servers.

(a) one streaming client: decode tokens/s through `moss serve` vs the engine called directly,
    and the time to first token the server adds;
(b) 1, 2, 4, 8 concurrent streaming clients against `moss serve --parallel 8`, llama.cpp's
    `llama-server --parallel 8` (built by bench/build_llama_server.sh) and
    `python -m llama_cpp.server`, same GGUF, prompts, threads and greedy sampling, in one run.
Tokens are counted by tokenizing each answer with the model's own tokenizer, the same way for
every server. Prints one comparison per line.
    python bench/serve.py [--model default] [--tokens 128] [--clients 1,2,4,8]"""

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx
import llama_cpp

from moss.inference.engine import Sampling
from moss.inference.loading import open_engine
from moss.inference.models import display_name, resolve

SYSTEM = "You are a helpful assistant."
TOPICS = ["the ocean", "mountains", "ancient Rome", "bicycles", "volcanoes", "coffee", "trains", "the moon"]


def prompt(i: int, part: int = 0) -> list[dict]:
    """Distinct prompts (beyond the shared system prompt), so no run reuses another's cache."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Write a long, detailed essay about {TOPICS[i % len(TOPICS)]}"
                                        f" (part {part})."}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server process started for the benchmark, stopped when leaving the block."""

    def __init__(self, name: str, argv: list[str], port: int, env: dict | None = None):
        self.name, self.argv, self.port, self.env = name, argv, port, env
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> "Server":
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, **(self.env or {})})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/v1/models", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not start")

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def stream_one(http: httpx.AsyncClient, url: str, model: str, messages: list[dict],
                     max_tokens: int) -> tuple[str, float, float]:
    """Text, time to first content and total time of one streamed completion."""
    start, first, pieces = time.perf_counter(), 0.0, []
    # Same sampling everywhere: the servers' defaults differ (repeat_penalty 1.0, 1.05, 1.1).
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
            "repeat_penalty": 1.0, "stream": True}
    async with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            content = choices[0].get("delta", {}).get("content")
            if content:
                first = first or time.perf_counter() - start
                pieces.append(content)
    return "".join(pieces), first, time.perf_counter() - start


async def load(url: str, model: str, clients: int, max_tokens: int, count,
               part: int = 0) -> tuple[float, float]:
    """Aggregate tokens/s and median time to first token with `clients` concurrent streams."""
    async with httpx.AsyncClient(timeout=600) as http:
        start = time.perf_counter()
        results = await asyncio.gather(*(stream_one(http, url, model, prompt(i, part), max_tokens)
                                         for i in range(clients)))
        wall = time.perf_counter() - start
    return sum(count(text) for text, _, _ in results) / wall, statistics.median(r[1] for r in results)


def single_stream(args, path: Path, count) -> None:
    """(a): the same request through the API and straight to the engine, alternately."""
    api, direct = [], []
    port = free_port()
    moss = [sys.executable, "-m", "moss", "serve", "--port", str(port), "-m", str(path),
            "--parallel", "8", "--ctx", "2048", "--rate-limit", "0", "--threads", str(args.threads)]
    for _ in range(args.reps):
        with Server("moss", moss, port) as server:
            asyncio.run(load(server.url, "moss", 1, 8, count, part=99))  # warm up, another prompt
            async def one():
                async with httpx.AsyncClient(timeout=600) as http:
                    return await stream_one(http, server.url, "moss", prompt(0), args.tokens)
            text, ttft, total = asyncio.run(one())
            api.append(((count(text) - 1) / (total - ttft), ttft))
        with closing(open_engine(str(path), parallel=8, context_size=2048, threads=args.threads)) as engine:
            engine.generate(prompt(0, 99)[1:], Sampling(max_tokens=8), system=SYSTEM).text()  # warm up
            g = engine.generate(prompt(0)[1:], Sampling(temperature=0, repeat_penalty=1.0,
                                                        max_tokens=args.tokens), system=SYSTEM)
            g.text()
            direct.append((g.result.tokens_per_second, g.result.time_to_first_token))
    a_tps, e_tps = statistics.median(x[0] for x in api), statistics.median(x[0] for x in direct)
    a_ttft, e_ttft = statistics.median(x[1] for x in api), statistics.median(x[1] for x in direct)
    print(f"(a) decode tokens/s, one stream: API {a_tps:.1f} vs engine {e_tps:.1f} -> ratio "
          f"{a_tps / e_tps:.3f} (target >= 0.95)")
    print(f"(a) time to first token: API {a_ttft * 1000:.0f} ms vs engine {e_ttft * 1000:.0f} ms -> "
          f"server adds {(a_ttft - e_ttft) * 1000:.0f} ms")


def servers(args, path: Path) -> list[tuple[str, list[str], int, str]]:
    port = free_port()
    out = [("moss serve", [sys.executable, "-m", "moss", "serve", "--port", str(port), "-m", str(path),
                           "--parallel", "8", "--ctx", "2048", "--rate-limit", "0",
                           "--threads", str(args.threads)], port, "moss")]
    if args.llama_server:
        port = free_port()
        out.append(("llama-server", [args.llama_server, "-m", str(path), "--port", str(port),
                                     "--parallel", "8", "-c", str(8 * 2048), "-t", str(args.threads),
                                     "-tb", str(args.threads)], port, "default"))
    port = free_port()
    out.append(("llama_cpp.server", [sys.executable, "-m", "llama_cpp.server", "--model", str(path),
                                     "--port", str(port), "--n_ctx", "2048",
                                     "--n_threads", str(args.threads),
                                     # by default a new request aborts the one streaming
                                     "--interrupt_requests", "False"], port, "default"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--clients", default="1,2,4,8")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--llama-server", default=None,
                        help="path to llama-server (default: build it with bench/build_llama_server.sh)")
    args = parser.parse_args()
    path = resolve(args.model)
    if args.llama_server is None:
        built = subprocess.run(["bash", str(Path(__file__).parent / "build_llama_server.sh")],
                               capture_output=True, text=True)
        args.llama_server = built.stdout.strip().splitlines()[-1] if built.returncode == 0 else ""
        if not args.llama_server:
            print(f"llama-server could not be built; comparing without it:\n{built.stderr[-2000:]}")
    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    count = lambda text: len(vocab.tokenize(text.encode(), add_bos=False, special=False))  # noqa: E731
    print(f"model {display_name(args.model, path)}, {args.threads} threads, {args.tokens} tokens per answer")
    single_stream(args, path, count)
    clients = [int(c) for c in args.clients.split(",")]
    table: dict[str, dict[int, float]] = {}
    for name, argv, port, model in servers(args, path):
        with Server(name, argv, port) as server:
            asyncio.run(load(server.url, model, 1, 8, count, part=99))  # warm up
            table[name] = {}
            for n in clients:
                tps, ttft = asyncio.run(load(server.url, model, n, args.tokens, count, part=n))
                table[name][n] = tps
                print(f"(b) {name}: {n} clients -> {tps:.1f} tokens/s aggregate, "
                      f"median time to first token {ttft * 1000:.0f} ms")
    top = max(clients)
    ours = table["moss serve"][top]
    for name, target in (("llama_cpp.server", 2.5), ("llama-server", 0.9)):
        if name in table:
            print(f"(b) at {top} clients: moss serve {ours:.1f} vs {name} {table[name][top]:.1f} tokens/s "
                  f"-> {ours / table[name][top]:.2f}x (target >= {target}x)")


if __name__ == "__main__":
    main()
