"""The `moss` command: chat, ask and models (more verbs join as their parts land)."""

import dataclasses
import json
import os
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from moss import models
from moss.engine import EngineError, LlamaCppEngine, Sampling

app = typer.Typer(help="Moss: a self-hosted bilingual (English / 中文) chat assistant.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
err = Console(stderr=True, highlight=False)

Model = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Registry name, alias (default, small, teacher), .gguf path or hf:OWNER/REPO/FILE.gguf.")]
Temperature = Annotated[float, typer.Option(help="0 = greedy and deterministic.")]
MaxTokens = Annotated[int, typer.Option("--max-tokens", help="Longest answer, in tokens.")]
System = Annotated[Optional[str], typer.Option(help="System prompt instead of Moss's meta instruction.")]
Seed = Annotated[Optional[int], typer.Option(help="Fixed sampling seed for repeatable answers.")]
Ctx = Annotated[int, typer.Option("--ctx", help="Context window in tokens.")]
Threads = Annotated[Optional[int], typer.Option(help="CPU threads (default: all cores).")]


def fail(message: str) -> None:
    """One readable line on stderr and a non-zero exit: never a traceback for a user's mistake."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


@app.command()
def chat(model: Model = None, temperature: Temperature = 0.7, max_tokens: MaxTokens = 1024,
         system: System = None, seed: Seed = None, ctx: Ctx = 4096, threads: Threads = None) -> None:
    """Chat in the terminal: answers stream, Ctrl-C stops one, /help lists the commands."""
    from moss.terminal import ChatSession
    sampling = _sampling(temperature, max_tokens, seed)
    with _engine(model, ctx, threads) as engine:
        ChatSession(engine, sampling, system).run()


@app.command()
def ask(question: Annotated[Optional[str], typer.Argument(help="The question; '-' or none reads stdin.")] = None,
        model: Model = None, temperature: Temperature = 0.7, max_tokens: MaxTokens = 1024,
        system: System = None, seed: Seed = None, ctx: Ctx = 4096, threads: Threads = None) -> None:
    """Print one answer to a question, for scripts."""
    if question in (None, "-"):
        if sys.stdin.isatty():
            fail("give a question as an argument, or pipe one on stdin")
        question = sys.stdin.read()
    if not question.strip():
        fail("the question is empty")
    sampling = _sampling(temperature, max_tokens, seed)
    with _engine(model, ctx, threads) as engine:
        try:
            for piece in engine.generate([{"role": "user", "content": question}], sampling, system):
                sys.stdout.write(piece)
                sys.stdout.flush()
        except EngineError as exc:
            fail(str(exc))
    sys.stdout.write("\n")


@app.command("models")
def list_models(verify: Annotated[bool, typer.Option(help="Re-hash installed models now.")] = False,
                as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model.")] = False) -> None:
    """List the models Moss knows: size, location, and whether each is ready."""
    if verify:
        for spec in models.REGISTRY.values():
            if models.part_files(spec) is not None:
                _resolve(spec.name, verify=True)
    if as_json:
        for spec in models.REGISTRY.values():
            print(json.dumps(dataclasses.asdict(models.status(spec)), ensure_ascii=False))
        return
    table = Table(title=f"Models (data directory: {models.paths.home()})")
    for column in ("name", "languages", "size", "state", "location"):
        table.add_column(column, overflow="fold")
    for spec in models.REGISTRY.values():
        row = models.status(spec)
        table.add_row(row.name + (" (default)" if row.name == models.DEFAULT else ""),
                      row.languages, f"{row.size / 1e6:,.0f} MB", escape(row.state), row.location)
    Console().print(table)
    Console().print("Any local .gguf path, or hf:OWNER/REPO/FILE.gguf with a network, works too.")


def _sampling(temperature: float, max_tokens: int, seed: int | None) -> Sampling:
    sampling = Sampling(temperature=temperature, max_tokens=max_tokens, seed=seed)
    try:
        sampling.check()
    except EngineError as exc:
        fail(str(exc))
    return sampling


def _resolve(model: str | None, verify: bool = False):
    try:
        return models.resolve(model, verify=verify)
    except models.ModelError as exc:
        fail(str(exc))


def _engine(model: str | None, ctx: int, threads: int | None):
    if ctx < 256:
        fail(f"--ctx must be at least 256 tokens, got {ctx}")
    path = _resolve(model)
    try:
        return LlamaCppEngine(path, models.display_name(model, path), context_size=ctx, threads=threads)
    except EngineError as exc:
        fail(str(exc))


def main() -> None:
    """Entry point that turns any unexpected failure into one line (MOSS_DEBUG=1 shows the trace)."""
    try:
        app()
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(130)
    except Exception as exc:  # last resort: the user sees one line, developers can ask for more
        if os.environ.get("MOSS_DEBUG"):
            raise
        err.print(f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))} (MOSS_DEBUG=1 shows details)")
        sys.exit(1)
