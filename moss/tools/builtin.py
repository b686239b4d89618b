"""The tools Moss runs itself (calculator, solver, python, knowledge_search), each with the function a model sees
(name, description, JSON schema of its arguments), and `run`, which runs a call in a worker
process (python's code further inside the sandbox): sympy can take minutes on a hard integral,
and a call that runs past its time limit has its worker killed and replaced, so a model's call
can neither hang nor crash the server."""

import json
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

from moss.inference.toolcalls import Function, ToolCall
from moss.tools import knowledge, maths, sandbox
from moss.tools.expressions import MathError

TIME_LIMIT = 10.0  # seconds a call may take


class ToolError(ValueError):
    """A call that could not be done; the message, which the model reads, says why."""


@dataclass(frozen=True)
class Tool:
    function: Function
    run: Callable[[dict], str]  # the arguments the model wrote -> the result it reads


@dataclass
class Run:
    """One call and its result, as stored with the answer and shown in the page."""
    call: ToolCall
    result: str
    ok: bool
    seconds: float


def _one_string(name: str, description: str) -> dict:
    """The arguments schema of a tool that takes one string."""
    return {"type": "object", "properties": {name: {"type": "string", "description": description}},
            "required": [name], "additionalProperties": False}


CALCULATOR = Tool(Function(
    "calculator",
    "Exact arithmetic: + - * / ^ %, sqrt, log, sin, factorial..., and unit conversion "
    "('3.5 km to mi', '100 km/h to m/s'). Use it for every calculation. 精确计算与单位换算。",
    _one_string("expression", "e.g. 17*23 or 2^10/3")),
    lambda a: maths.calculate(a["expression"]))

SOLVER = Tool(Function(
    "solver",
    "Algebra and calculus: solve equations or systems (separate equations with ';'), derivative, "
    "integral (with lower and upper for a definite one), limit (at upper), simplify, expand, factor. "
    "解方程、求导、积分、化简。",
    {"type": "object", "properties": {
        "operation": {"type": "string", "enum": ["solve", "derivative", "integral", "limit", "simplify", "expand",
                                                 "factor"]},
        "expression": {"type": "string", "description": "the equation or expression, e.g. 2x + 3 = 11"},
        "variable": {"type": "string"}, "lower": {"type": "string"}, "upper": {"type": "string"}},
        "required": ["operation", "expression"], "additionalProperties": False}),
    lambda a: maths.solve(**a))


def python(arguments: dict) -> str:
    """Run the code in the sandbox (no network, no files of Moss's, limits): what it printed."""
    done = sandbox.run_python(arguments["code"], limits=sandbox.Limits(seconds=TIME_LIMIT - 2, cpu_seconds=6,
                                                                         memory_mb=512, output_bytes=8192))
    if done.timed_out:
        raise ToolError(f"the code ran over {TIME_LIMIT - 2:g} s and was stopped")
    out = done.stdout.strip()[-2000:]
    if not done.ok:
        raise ToolError(f"the code failed: {(done.stderr.strip() or out)[-800:]}")
    return out or "(the code printed nothing: print the result)"


PYTHON = Tool(Function(
    "python",
    "Run Python 3 code (standard library only, no network, no files) and get what it prints: for "
    "calculations with several steps, counting, dates, strings. Print the result. 运行 Python 代码并返回输出。",
    _one_string("code", "a Python script that prints")),
    python)

KNOWLEDGE = Tool(Function(
    "knowledge_search",
    "Search the knowledge base (documents added to this Moss) for passages about the question; "
    "answer from them and cite them as [1], [2]. 搜索知识库并引用 [1]、[2]。",
    _one_string("query", "what to look for")),
    lambda a: knowledge.search_result(a["query"]))

TOOLS = {t.function.name: t for t in (CALCULATOR, SOLVER, PYTHON, KNOWLEDGE)}


def pick(names: list[str]) -> list[Tool]:
    """The tools named (ValueError for a name Moss has no tool for)."""
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        raise ValueError(f"no built-in tool {', '.join(unknown)} (there are: {', '.join(TOOLS)})")
    return [TOOLS[n] for n in names]


def run(call: ToolCall, time_limit: float = TIME_LIMIT) -> Run:
    """Run a call; a failure is a result too (the model reads what went wrong and may try again)."""
    started = time.perf_counter()
    try:
        arguments = json.loads(call.arguments or "{}")
        if call.name not in TOOLS:
            raise ToolError(f"there is no tool {call.name!r}")
        result, ok = _WORKER.call(call.name, arguments, time_limit), True
    except (ValueError, TypeError, KeyError) as exc:  # ToolError, MathError, bad JSON among them
        result, ok = f"error: {exc}", False
    except TimeoutError:
        result, ok = f"error: the calculation took over {time_limit:g} s and was stopped", False
    return Run(call, result, ok, time.perf_counter() - started)


def serve() -> None:
    """The worker's loop, on its stdin and stdout: one JSON line [tool name, arguments] in, one
    JSON line ["ok" | "error", text] out."""
    for line in sys.stdin:
        name, arguments = json.loads(line)
        try:
            answer = ["ok", TOOLS[name].run(arguments)]
        except Exception as exc:  # the tool's own message (ToolError, MathError...) or sympy's
            told = isinstance(exc, (ToolError, MathError, knowledge.KnowledgeError))
            answer = ["error", str(exc) if told else f"{type(exc).__name__}: {exc}"]
        print(json.dumps(answer, ensure_ascii=False), flush=True)


class _Worker:
    """One process that runs calls one at a time, started on first use and after a kill. A plain
    subprocess, not multiprocessing: spawning that re-imports the parent's __main__."""

    def __init__(self):
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None

    def call(self, name: str, arguments: dict, time_limit: float) -> str:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._process = subprocess.Popen(
                    [sys.executable, "-c", "from moss.tools.builtin import serve; serve()"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8")
            self._process.stdin.write(json.dumps([name, arguments], ensure_ascii=False) + "\n")
            self._process.stdin.flush()
            ready, _, _ = select.select([self._process.stdout], [], [], time_limit)
            if not ready:
                self._process.kill()
                self._process.wait()
                self._process = None
                raise TimeoutError
            status, text = json.loads(self._process.stdout.readline())
        if status == "error":
            raise ToolError(text)
        return text


_WORKER = _Worker()
