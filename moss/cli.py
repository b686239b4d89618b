"""The `moss` command: chat, ask, serve, models, users and feedback."""

import dataclasses
import json
import os
import sys
from contextlib import closing
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from moss.inference import models
from moss.inference.engine import Engine, EngineError, Sampling
from moss.inference.loading import open_engine
from moss.learning import ledger, versions
from moss.learning.options import Options, rising
from moss.learning.review import ATTENTION

DEFAULTS = Options()

app = typer.Typer(help="Moss: a self-hosted bilingual (English / 中文) chat assistant.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # a long line (a path) stays one line

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


Url = Annotated[Optional[str], typer.Option(
    "--url", help="A running Moss server to talk to instead of loading the model here (key: MOSS_API_KEY).")]
Tools = Annotated[Optional[str], typer.Option(
    "--tools", help="Tools Moss runs itself when the model calls them, comma-separated: calculator,solver.")]


@app.command()
def chat(model: Model = None, temperature: Temperature = 0.7, max_tokens: MaxTokens = 1024,
         system: System = None, seed: Seed = None, ctx: Ctx = 4096, threads: Threads = None, url: Url = None,
         tools: Tools = None) -> None:
    """Chat in the terminal: answers stream, Ctrl-C stops one, /good /bad /correct give feedback,
    /help lists the commands. Every exchange is logged (moss feedback stats, moss learn)."""
    from moss.terminal import ChatSession
    sampling = _sampling(temperature, max_tokens, seed)
    with closing(_backend(url, model, ctx, threads, tools)) as backend:
        ChatSession(backend, sampling, system).run()


@app.command()
def ask(question: Annotated[Optional[str], typer.Argument(help="The question; '-' or none reads stdin.")] = None,
        model: Model = None, temperature: Temperature = 0.7, max_tokens: MaxTokens = 1024,
        system: System = None, seed: Seed = None, ctx: Ctx = 4096, threads: Threads = None, url: Url = None,
        tools: Tools = None) -> None:
    """Print one answer to a question, for scripts; the exchange is logged like any other."""
    if question in (None, "-"):
        if sys.stdin.isatty():
            fail("give a question as an argument, or pipe one on stdin")
        question = sys.stdin.read()
    if not question.strip():
        fail("the question is empty")
    sampling = _sampling(temperature, max_tokens, seed)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    with closing(_backend(url, model, ctx, threads, tools)) as backend:
        try:
            generation = backend.answer(messages, sampling)
            for piece in generation:
                sys.stdout.write(piece)
                sys.stdout.flush()
        except EngineError as exc:
            fail(str(exc))
        backend.keep(messages, generation, sampling)
    sys.stdout.write("\n")


def _backend(url: str | None, model: str | None, ctx: int, threads: int | None, tools: str | None = None):
    """Answers from a server at `url`, or from `model` run here (logged to this machine's store),
    with Moss's own `tools` if named."""
    from moss import backends
    chosen = _tools(tools)
    if url is None:
        store, engine = _store(), _engine(model, ctx, threads)
        _register(store, engine)
        if chosen:
            from moss.tools.turn import ToolEngine
            engine = ToolEngine(engine, chosen)
        return backends.Local(engine, store)
    if chosen:
        fail("--tools runs the tools here: leave out --url")
    if model is not None:
        fail("--url talks to a server, which serves its own model: leave out --model")
    return backends.Server(url)


def _tools(spec: str | None) -> list:
    """The built-in tools a --tools option names (none for none)."""
    from moss.tools import builtin
    try:
        return builtin.pick([t.strip() for t in (spec or "").split(",") if t.strip()])
    except ValueError as exc:
        fail(f"--tools: {exc}")


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


@app.command()
def serve(host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for all; needs --auth).")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
          model: Model = None, ctx: Ctx = 4096, threads: Threads = None,
          parallel: Annotated[int, typer.Option(help="Answers decoded together (continuous batching).")] = 4,
          max_queue: Annotated[int, typer.Option("--max-queue", help="Requests that may wait; beyond, 429.")] = 64,
          auth: Annotated[bool, typer.Option("--auth", help="Require API keys (moss users add NAME).")] = False,
          insecure: Annotated[bool, typer.Option("--insecure", help="Allow a non-loopback --host without --auth: "
                                                 "anyone who reaches the port can use it.")] = False,
          allowed_host: Annotated[Optional[list[str]], typer.Option(
              "--allowed-host", help="Another host name the server may be reached by (repeatable); "
                                     "other Host headers are refused.")] = None,
          rate_limit: Annotated[Optional[int], typer.Option(
              "--rate-limit", help="Chat completions per minute per key; 0 = off (default: 60 with "
                                   "--auth, off without).")] = None,
          api_rate_limit: Annotated[Optional[int], typer.Option(
              "--api-rate-limit", help="Other API requests per minute per key; 0 = off (default: 600 "
                                       "with --auth, off without).")] = None,
          user_share: Annotated[float, typer.Option(
              "--user-share", help="Most of the batch slots plus queue places one user may hold, "
                                   "with --auth (0.5 = half).")] = 0.5,
          daily_tokens: Annotated[int, typer.Option("--daily-tokens", help="Tokens per user per day; 0 = off.")] = 0,
          learn_every: Annotated[Optional[str], typer.Option(
              "--learn-every", help="Run the learning cycle this often (30m, 1h, 1d) while feedback waits; "
                                    "needs the training extra.")] = None,
          learn_when: Annotated[Optional[int], typer.Option(
              "--learn-when", help="Run the learning cycle as soon as this many pieces of feedback wait.")] = None,
          ) -> None:
    """Serve the OpenAI-compatible API (and the web page) over HTTP."""
    import uvicorn

    from moss.server.access import Exposure, Limits
    from moss.server.app import create_app
    from moss.server.schedule import Plan, duration
    if not 1 <= parallel <= 64:
        fail(f"--parallel must be 1..64, got {parallel}")
    if not 0 < user_share <= 1:
        fail(f"--user-share must be in (0, 1], got {user_share}")
    try:
        plan = Plan(duration(learn_every) if learn_every else None, learn_when)
    except ValueError as exc:
        fail(f"--learn-every: {exc}")
    if learn_when is not None and learn_when < 1:
        fail(f"--learn-when must be 1 or more, got {learn_when}")
    if plan.active:
        _require("train", "torch", "peft")
    exposure = Exposure(host, tuple(allowed_host or ()))
    if exposure.public and not auth and not insecure:
        fail(f"--host {host} makes Moss reachable from other machines, and without --auth anyone "
             f"there could use it and its admin API: add --auth (and moss users add NAME), or "
             f"--insecure if this network is yours alone")
    limits = Limits(rate_limit=_limit(rate_limit, 60 if auth else 0),
                    api_rate_limit=_limit(api_rate_limit, 600 if auth else 0),
                    daily_tokens=daily_tokens or None, user_share=user_share if auth else 1.0)
    store = _store()
    engine = _engine(model, ctx, threads, serving=False, parallel=parallel, max_queue=max_queue,
                     user_share=limits.user_share)  # the server follows the serving version itself
    _register(store, engine)
    if plan.active and not engine.adapters:
        fail("--learn-every and --learn-when need a model served here (a remote engine serves its own)")
    app = create_app(engine, store, auth=auth, limits=limits, exposure=exposure, plan=plan)
    if exposure.public and not auth:
        err.print(f"[bold red]WARNING: --insecure: Moss answers anyone who can reach {escape(host)}:{port}, "
                  f"with no key; conversations and feedback are shared by all of them.[/]")
    if exposure.public and exposure.hosts() is None:
        err.print("note: any Host name is accepted; --allowed-host NAME pins the names this server answers to")
    err.print(f"Moss serving [bold]{engine.model}[/] on http://{host}:{port} "
              f"(chat page at /, API at /v1, docs at /docs"
              f"{', API keys required' if auth else ''})")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)


def _limit(given: int | None, default: int) -> int | None:
    """A per-minute limit from its option: None (not given) takes the default; 0 turns it off."""
    value = default if given is None else given
    if value < 0:
        fail(f"a rate limit must be 0 (off) or more, got {value}")
    return value or None


@app.command()
def doctor(smoke: Annotated[bool, typer.Option("--smoke", help="Only the one-token decode (setup runs this).")] = False,
           model: Model = None) -> None:
    """Check this machine: CPU features, llama.cpp's build, models, database, disk, one decode."""
    from moss import doctor as checking
    found = [checking.smoke(model)] if smoke else checking.checks()
    for check in found:
        mark = "[green]ok[/]  " if check.ok else "[bold red]FAIL[/]"
        err.print(f"{mark} {escape(check.name)}: {escape(check.detail)}", soft_wrap=True)
    if not all(check.ok for check in found):
        raise typer.Exit(1)


users = typer.Typer(help="Manage who may use a server started with --auth.", no_args_is_help=True)
app.add_typer(users, name="users")


@users.command("add")
def users_add(name: str,
              rate_limit: Annotated[Optional[int], typer.Option("--rate-limit", help="Requests per minute.")] = None,
              daily_tokens: Annotated[Optional[int], typer.Option("--daily-tokens", help="Tokens per day.")] = None,
              admin: Annotated[bool, typer.Option("--admin", help="May start learning, switch versions, review feedback.")] = False,
              trusted: Annotated[bool, typer.Option("--trusted", help="Their corrections need no second person.")] = False,
              ) -> None:
    """Add a user and print their API key (shown only this once)."""
    from moss.store import StoreError
    try:
        _, key = _store().add_user(name, rate_limit, daily_tokens, admin, trusted)
    except StoreError as exc:
        fail(str(exc))
    err.print(f"user [bold]{escape(name)}[/] added; their API key (it will not be shown again):")
    print(key)


@users.command("key")
def users_key(name: str) -> None:
    """Give a user one more API key."""
    from moss.store import StoreError
    try:
        print(_store().new_key(name))
    except StoreError as exc:
        fail(str(exc))


@users.command("list")
def users_list() -> None:
    """List users, their keys and limits."""
    table = Table()
    for column in ("name", "state", "role", "keys", "requests/min", "tokens/day", "created"):
        table.add_column(column)
    for user, keys in _store().users():
        role = "admin" if user.admin else "trusted" if user.trusted else "user"
        table.add_row(escape(user.name), "disabled" if user.disabled else "active", role, str(keys),
                      str(user.rate_limit or "default"), str(user.daily_tokens or "default"),
                      user.created_at.strftime("%Y-%m-%d %H:%M"))
    Console().print(table)


@users.command("disable")
def users_disable(name: str, reject_feedback: Annotated[bool, typer.Option(
        "--reject-feedback", help="Also reject all their feedback not yet learned.")] = False) -> None:
    """Disable a user: their keys stop working at once, and their feedback is never learned."""
    from moss.store import StoreError
    try:
        rejected = _store().set_disabled(name, reject_feedback=reject_feedback)
    except StoreError as exc:
        fail(str(exc))
    err.print(f"user {escape(name)} disabled" + (f"; {rejected} piece(s) of their feedback rejected" if reject_feedback else ""))


@users.command("trust")
def users_trust(name: str, off: Annotated[bool, typer.Option("--off", help="Trust them no more.")] = False) -> None:
    """Trust a user: their corrections are learned without a second person giving the same one
    (they are still checked for safety, language and what the models know)."""
    from moss.store import StoreError
    try:
        _store().set_trusted(name, not off)
    except StoreError as exc:
        fail(str(exc))
    err.print(f"user {escape(name)} is {'no longer ' if off else ''}trusted")


feedback = typer.Typer(help="Feedback people gave: review, statistics and training-data export.",
                       no_args_is_help=True)
app.add_typer(feedback, name="feedback")


@feedback.command("export")
def feedback_export(
        format: Annotated[str, typer.Option("--format", "-f", help="sft, dpo, kto or sharegpt.")] = "sft",
        since: Annotated[Optional[str], typer.Option(help="Only feedback given since DATE (YYYY-MM-DD).")] = None,
        lang: Annotated[Optional[str], typer.Option(help="Only conversations in en or zh.")] = None,
        output: Annotated[Optional[str], typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
) -> None:
    """Write feedback as JSONL training records."""
    from datetime import datetime, timezone

    from moss.learning import datasets
    if format not in datasets.FORMATS:
        fail(f"--format must be one of {', '.join(datasets.FORMATS)}, got '{format}'")
    if lang not in (None, "en", "zh"):
        fail(f"--lang must be en or zh, got '{lang}'")
    try:
        start = datetime.fromisoformat(since).replace(tzinfo=timezone.utc) if since else None
    except ValueError:
        fail(f"--since must be a date like 2026-11-01, got '{since}'")
    records = datasets.export(_store(), format, start, lang)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if output:
        try:
            with open(output, "w", encoding="utf-8") as f:
                f.write(lines)
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror}")
        err.print(f"wrote {len(records)} {format} records to {escape(output)}")
    else:
        sys.stdout.write(lines)


@feedback.command("review")
def feedback_review(state: Annotated[str, typer.Option(help="States to list, comma-separated, or 'all'.")] = ",".join(ATTENTION),
                    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False) -> None:
    """List feedback waiting for a decision (held, parked, pending) with why, and the base
    model's and teacher's answers beside each correction; then moss feedback accept/reject ID."""
    from moss.learning import review
    try:
        states = review.states(state)
    except ValueError as exc:
        fail(f"--state {exc}")
    found = review.entries(_store(), states)
    if as_json:
        for e in found:
            print(json.dumps(dataclasses.asdict(e), ensure_ascii=False, default=str))
        return
    table = Table(title=f"Feedback: {state}", show_lines=True)
    for column in ("id", "state", "by", "question / answer", "taught", "why", "models answer"):
        table.add_column(column, overflow="fold")
    for e in found:
        taught = e.value.get("content") or e.value.get("rating") or e.value.get("choice") or e.value.get("reason", "")
        table.add_row(str(e.id), e.state, escape(e.author), escape(f"{e.question}\n→ {e.answer}"[:300]),
                      escape(f"{e.kind}: {taught}"[:300]), escape(e.reason),
                      escape("\n".join(f"{who}: {text}"[:160] for who, text in e.checks.items())))
    Console().print(table)
    if not found:
        err.print("nothing to review")


@feedback.command("accept")
def feedback_accept(ids: Annotated[list[int], typer.Argument(help="Feedback ids (moss feedback review).")]) -> None:
    """Accept feedback: the next cycle learns it, whatever the automatic checks said."""
    _decide(ids, accept=True, why="")


@feedback.command("reject")
def feedback_reject(ids: Annotated[list[int], typer.Argument(help="Feedback ids (moss feedback review).")],
                    reason: Annotated[str, typer.Option(help="Why, for its author.")] = "") -> None:
    """Reject feedback, learned or not: never learned, and unlearned by the next cycle if a
    serving version learned it."""
    _decide(ids, accept=False, why=reason)


def _decide(ids: list[int], accept: bool, why: str) -> None:
    from moss.learning import review
    store = _store()
    for feedback_id in ids:
        try:
            entry = review.accept(store, feedback_id, "admin") if accept else review.reject(store, feedback_id, "admin", why)
        except LookupError as exc:
            fail(str(exc))
        err.print(f"{entry.id}: {entry.state} ({escape(entry.reason)})"
                  + ("; the next moss learn unlearns it" if entry.state == "rejected" and entry.learned_in else ""))


memory = typer.Typer(help="What corrections taught: used at once in answers, until a version learns it.",
                     no_args_is_help=True)
app.add_typer(memory, name="memories")


@memory.command("list")
def memories_list(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per memory.")] = False) -> None:
    """Every memory (this machine's user is its admin), newest first, with whom it reaches: you
    (its author, until accepted), everyone, learned (retired), gone (rejected)."""
    from moss.learning.memory import Memories
    rows = Memories(_store(), None).listing()[::-1]
    if as_json:
        for r, reach in rows:
            print(json.dumps({"id": r.memory.id, "question": r.memory.question, "answer": r.memory.answer,
                              "lang": r.memory.lang, "scope": reach, "state": r.state, "author": r.author,
                              "feedback_id": r.memory.feedback_id, "learned_in": r.learned_in}, ensure_ascii=False))
        return
    table = Table(title=f"Memories ({len(rows)})")
    for column in ("id", "reaches", "author", "question", "taught"):
        table.add_column(column, overflow="fold")
    for r, reach in rows:
        table.add_row(str(r.memory.id), reach + (f" ({r.learned_in})" if reach == "learned" else ""), r.author,
                      escape(r.memory.question), escape(r.memory.answer))
    Console().print(table)


@memory.command("forget")
def memories_forget(ids: Annotated[list[int], typer.Argument(help="Memory ids (moss memories list).")]) -> None:
    """Forget memories: their corrections are rejected (unlearned by the next cycle if learned)."""
    from moss.learning import review
    store = _store()
    for memory_id in ids:
        found = store.memories(ids={memory_id})
        if not found:
            fail(f"no memory {memory_id} (moss memories list)")
        entry = review.reject(store, found[0].memory.feedback_id, "admin", "forgotten (moss memories forget)")
        err.print(f"memory {memory_id} forgotten"
                  + ("; the next moss learn unlearns it" if entry.learned_in else ""))


kb = typer.Typer(help="The knowledge base the knowledge_search tool searches (--tools knowledge_search).",
                 no_args_is_help=True)
app.add_typer(kb, name="kb")


@kb.command("add")
def kb_add(files: Annotated[list[Path], typer.Argument(help="txt, md, html or pdf files (one added again replaces it).")]) -> None:
    """Add documents: cut into passages and indexed for search, English and Chinese."""
    from moss.tools.knowledge import KnowledgeBase, KnowledgeError
    base = KnowledgeBase()
    for path in files:
        try:
            err.print(f"{escape(path.name)}: {base.add(path)} passages")
        except KnowledgeError as exc:
            fail(str(exc))


@kb.command("list")
def kb_list() -> None:
    """The documents in the knowledge base and their passage counts."""
    from moss.tools.knowledge import KnowledgeBase
    for source, count in sorted(KnowledgeBase().sources().items()):
        print(f"{source}\t{count} passages")


@kb.command("remove")
def kb_remove(sources: Annotated[list[str], typer.Argument(help="Document names, as moss kb list shows them.")]) -> None:
    from moss.tools.knowledge import KnowledgeBase
    base = KnowledgeBase()
    for source in sources:
        if not base.remove(source):
            fail(f"no document {source} (moss kb list)")
        err.print(f"{escape(source)} removed")


@kb.command("search")
def kb_search(query: Annotated[str, typer.Argument(help="What to look for.")]) -> None:
    """What the knowledge_search tool would give the model for QUERY."""
    from moss.tools.knowledge import search_result
    print(search_result(query))


@feedback.command("check")
def feedback_check(model: Model = None, threads: Threads = None,
                   agree: Annotated[int, typer.Option(help="People who must give the same correction when none is trusted.")] = DEFAULTS.agree,
                   teacher: Annotated[str, typer.Option(help="The second opinion on known facts ('none': the base model's own).")] = "teacher",
                   ) -> None:
    """Run the trust policy on pending feedback now (moss learn runs it first anyway)."""
    from moss.learning import trust
    if agree < 1:
        fail("--agree must be 1 or more")
    path = _resolve(model)
    tally = trust.review(_store(), trust.Policy(agree=agree), path, None if teacher == "none" else _rewriter(teacher),
                         threads, log=lambda line: err.print(escape(line)))
    print(json.dumps(dict(tally), ensure_ascii=False))


@feedback.command("stats")
def feedback_stats() -> None:
    """Count feedback by kind and language."""
    from moss.learning import datasets
    counts = datasets.stats(_store())
    table = Table(title="Feedback")
    for column in ("kind", "en", "zh", "total"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind in ("rating up", "rating down", "correction", "comparison", "flag"):
        en, zh = counts[(kind, "en")], counts[(kind, "zh")]
        table.add_row(kind, str(en), str(zh), str(en + zh))
    Console().print(table)


evaluation = typer.Typer(help="Evaluate model versions: bilingual suites, a pairwise judge, reports.",
                         no_args_is_help=True)
app.add_typer(evaluation, name="eval")


@evaluation.command("run")
def eval_run(model: Annotated[Optional[str], typer.Option(
                 "--model", "-m", help="A model (its base weights, no adapter) or a version id from `moss versions` "
                                       "(default: the version serving now).")] = None,
             suite: Annotated[Optional[str], typer.Option(help="Comma-separated suites (default: all).")] = None,
             full: Annotated[bool, typer.Option("--full", help="Every item the data has (slow).")] = False,
             quick: Annotated[bool, typer.Option("--quick", help="The few-minute check the learning loop uses.")] = False,
             parallel: Annotated[int, typer.Option(help="Answers decoded together.")] = 4,
             threads: Threads = None, tools: Tools = None) -> None:
    """Run the evaluation suites and store the results for this model version (with --tools,
    as "VERSION+tools": the model may call Moss's own tools while it answers)."""
    _require("eval", "reasoning_gym", "yaml")
    from moss.evals import data, evaluate
    from moss.evals.suites import DEFAULT, SUITES
    names, chosen = [s.strip() for s in suite.split(",")] if suite else list(DEFAULT), _tools(tools)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        fail(f"unknown suite {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    if model is not None:
        engine, what = _version_engine(model, 2048, threads, parallel=parallel, max_queue=1000)
    else:
        engine = _engine(None, 2048, threads, parallel=parallel, max_queue=1000)
        what = f"{engine.version} (the version serving now)"
    if chosen:
        from moss.tools.turn import ToolEngine
        engine, what = ToolEngine(engine, chosen), what + f" with tools: {tools}"
    err.print(f"evaluating {escape(what)}")
    try:
        result = evaluate.run(engine, names, full=full, quick=quick)
    except data.EvalDataError as exc:
        fail(str(exc))
    finally:
        engine.close()
    path = evaluate.save(result)
    _print_summary(result)
    err.print(f"{len(result['items'])} items in {result['seconds']:.0f} s; saved {path}")


def _print_summary(result: dict) -> None:
    from moss.evals.report import _title
    table = Table(title=f"{result['version']} ({result['created']})")
    for column in ("suite", "English", "中文"):
        table.add_column(column)
    for name, langs in result["suites"].items():
        cells = [f"{langs[lang]['score']:.1%} (n={langs[lang]['n']})" if lang in langs else "-"
                 for lang in ("en", "zh")]
        table.add_row(escape(_title(name)), *cells)
    Console().print(table)


@evaluation.command("report")
def eval_report(output: Annotated[str, typer.Option("--output", "-o", help="HTML file to write.")] = "moss-report.html") -> None:
    """Write an HTML report with plots of every stored result."""
    from moss.evals import evaluate as evals
    from moss.evals import report as eval_report
    results = evals.load_all()
    if not results:
        fail("no evaluation results yet: run `moss eval run` first")
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(eval_report.render(results))
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    err.print(f"report of {len(results)} results written to {escape(output)}")


@evaluation.command("compare")
def eval_compare(a: Annotated[str, typer.Argument(help="Model A: a model (its base weights, no adapter) or a "
                                                     "version id from `moss versions` (with its adapter).")],
                 b: Annotated[str, typer.Argument(help="Model B, the same way.")],
                 judge: Annotated[str, typer.Option(help="Judge: a local model, or an OpenAI-compatible URL.")] = "teacher",
                 judge_model: Annotated[str, typer.Option("--judge-model", help="Model name at the judge URL.")] = "default",
                 limit: Annotated[int, typer.Option(help="How many prompts (0 = all).")] = 0,
                 threads: Threads = None) -> None:
    """Have a judge model compare A's and B's answers, in both orders; wins, ties, losses."""
    from moss.evals import judge as judging
    from moss.evals.evaluate import answer_all
    from moss.evals.suites import Item
    questions = judging.prompts()[:limit or None]
    items = [Item("compare", "", q, "none", None, 256) for q in questions]
    answers = []
    for side, ref in (("A", a), ("B", b)):
        engine, what = _version_engine(ref, 2048, threads, parallel=4, max_queue=1000)
        err.print(f"{side}: {escape(what)}")
        try:
            answers.append([text for text, _ in answer_all(engine, items, 4)])
        finally:
            engine.close()
    judge_engine = _engine(judge, 2048, threads, serving=False, remote_model=judge_model,
                           api_key=os.environ.get("MOSS_JUDGE_API_KEY"))
    try:
        tallies = judging.compare(questions, *answers, judging.engine_judge(judge_engine))
    finally:
        judge_engine.close()
    table = Table(title=f"{a} (A) vs {b} (B), judged by {judge}, both orders")
    for column in ("questions", "A wins", "ties", "B wins", "A win rate", "95% interval"):
        table.add_column(column)
    for key, tally in tallies.items():
        low, high = tally.interval()
        table.add_row({"all": "all", "en": "English", "zh": "中文"}[key], str(tally.wins), str(tally.ties),
                      str(tally.losses), f"{tally.win_rate:.0%}", f"{low:.0%}–{high:.0%}")
    Console().print(table)
    votes = judging.votes(tallies["all"])
    err.print(f"the judge's {sum(votes.values())} verdicts: first answer {votes['A']}, second {votes['B']}, "
              f"tie {votes['tie']} (a judge that always picks one position gives only ties above)")


@app.command("versions")
def list_versions(as_json: Annotated[bool, typer.Option("--json", help="One JSON object per version.")] = False) -> None:
    """List model versions: which serves, what each learned, its checks and latest evaluation."""
    from moss.evals import evaluate
    latest = {r["version"]: r for r in evaluate.load_all()}
    known = {v.id: v for v in _store().all_versions()}
    if as_json:
        for v in known.values():
            print(json.dumps({"id": v.id, "status": v.status, "parent": v.parent_id, "base": v.base_model,
                              "created": v.created_at.isoformat(), "learned": len(v.details.get("learned", [])),
                              "reasons": v.details.get("report", {}).get("reasons", []),
                              "general": v.details.get("general")}, ensure_ascii=False))
        return
    table = Table(title="Model versions")
    for column in ("version", "status", "parent", "created", "learned / checks", "latest evaluation (English / 中文)"):
        table.add_column(column, overflow="fold")
    for name in list(known) + [v for v in latest if v not in known]:
        version, result = known.get(name), latest.get(name)
        pct = lambda cell: f"{cell['score']:.0%}" if cell else "-"  # noqa: E731
        scores = " · ".join(f"{suite} {pct(c.get('en'))}/{pct(c.get('zh'))}"
                            for suite, c in result["suites"].items()) if result else "not evaluated"
        status = version.status if version else "-"
        table.add_row(escape(name), f"[bold green]{status}[/]" if status == "serving" else status,
                      escape(version.parent_id or "-") if version else "-",
                      version.created_at.strftime("%Y-%m-%d %H:%M") if version else "-",
                      escape(_checks(version)) if version else "-", escape(scores))
    Console().print(table)


def _checks(version) -> str:
    """One cell: how many items a trained version learned, and its verification's outcome."""
    report = version.details.get("report")
    if not report:
        return "base model"
    chosen = report.get("chosen") or {}
    taught = " ".join(f"{lang} {cell['passed']:.0%}" for lang, cell in chosen.get("taught", {}).items())
    general = report.get("general", {})
    text = f"{len(version.details.get('learned', []))} learned ({taught})"
    if general.get("candidate"):
        text += " · general " + "/".join(f"{general['parent'].get(k, 0):.0%}→{v:.0%}"
                                         for k, v in general["candidate"].items())
    if asked := report.get("neighbours", {}).get("asked"):
        kept = sum(c["asked"] - c["changed"] for c in asked.values())
        text += f" · neighbours {kept}/{sum(c['asked'] for c in asked.values())} kept"
    if report.get("reasons"):
        text += " · " + "; ".join(report["reasons"])
    return text


@app.command()
def learn(model: Model = None, threads: Threads = None,
          min_items: Annotated[int, typer.Option("--min-items", help="Fewest new items worth a cycle.")] = DEFAULTS.min_items,
          agree: Annotated[int, typer.Option(help="People who must give the same correction when none is trusted.")] = DEFAULTS.agree,
          check_known: Annotated[bool, typer.Option("--check-known/--no-check-known", help="Hold corrections that contradict "
                                                    "what the base model and the teacher both answer.")] = DEFAULTS.check_known,
          margin: Annotated[float, typer.Option(help="Largest drop allowed on the general suite (0.05 = 5 points).")] = DEFAULTS.margin,
          general_check: Annotated[bool, typer.Option("--general-check/--no-general-check",
                                                      help="Run the general bilingual suite before promoting.")] = DEFAULTS.general_check,
          neighbour_check: Annotated[bool, typer.Option("--neighbour-check/--no-neighbour-check", help="Ask well-known "
                                                        "questions shaped like the taught ones before promoting.")] = DEFAULTS.neighbour_check,
          neighbour_margin: Annotated[float, typer.Option(help="Largest share of those neighbours a new version may "
                                                                "change (0.02 = 2%).")] = DEFAULTS.neighbour_margin,
          contrast: Annotated[int, typer.Option(help="Pairs per taught item that train \"the taught name is not the "
                                                     "answer\" on neighbouring questions (0: none).")] = DEFAULTS.contrast,
          rewriter: Annotated[str, typer.Option(help="Model that rewrites taught questions: a model name, or "
                                                     "'served' (default: the teacher when installed).")] = "teacher",
          epochs: Annotated[str, typer.Option(help="Candidate epochs, e.g. 2,3,4: training stops at the first "
                                                   "that learned every taught item.")] = ",".join(map(str, DEFAULTS.epochs)),
          prepare: Annotated[bool, typer.Option("--prepare", help="Only make ahead what every cycle asks of the base "
                                                "model (once per model file; setup.sh train runs it).")] = False,
          ) -> None:
    """Learn from feedback not yet learned: train, verify, and serve the result only if it passes."""
    _require("train", "torch", "transformers", "peft", "safetensors", "gguf", "reasoning_gym", "yaml")
    from moss.learning import cycle
    from moss.progress import catch_interrupts
    catch_interrupts()  # Ctrl-C stops any stage within seconds
    candidates = _epochs(epochs)
    path = _resolve(model)
    if agree < 1:
        fail("--agree must be 1 or more")
    if not 0 <= neighbour_margin <= 1 or contrast < 0:
        fail("--neighbour-margin takes a share from 0 to 1, --contrast a count from 0")
    options = Options(min_items=min_items, margin=margin, threads=threads, general_check=general_check,
                      rewriter=None if prepare else _rewriter(rewriter), epochs=candidates, agree=agree,
                      check_known=check_known, neighbour_check=neighbour_check, neighbour_margin=neighbour_margin,
                      contrast=contrast)
    if prepare:
        cycle.prepare(path, options, log=lambda line: err.print(escape(line)))
        return
    try:
        report = cycle.run(_store(), models.display_name(model, path), path, options,
                           log=lambda line: err.print(escape(line)))
    except versions.LearnError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted: the served model and the store are unchanged")
    print(json.dumps({"version": report.version, "status": report.status, "reasons": report.reasons,
                      "taught": report.chosen.taught if report.chosen else None, "general": report.general,
                      "neighbours": report.neighbours, "seconds": report.seconds}, ensure_ascii=False))
    if report.status != "serving":
        raise typer.Exit(1)


def _require(extra: str, *modules: str) -> None:
    """Fail at once, naming every missing module, when an extra is not installed."""
    import importlib
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        fail(f"this needs the {extra} extra (missing: {', '.join(missing)}): bash scripts/setup.sh {extra}")


def _epochs(text: str) -> tuple[int, ...]:
    try:
        epochs = tuple(int(e) for e in text.split(","))
    except ValueError:
        epochs = ()
    if not rising(epochs):
        fail(f"--epochs takes rising whole numbers from 1, such as 2,3,4 (got {text!r})")
    return epochs


def _rewriter(ref: str) -> Path | None:
    """The rewriter's GGUF; None (the served model rewrites) for 'served' or a teacher not installed."""
    if ref == "served":
        return None
    try:
        return models.resolve(ref)
    except models.ModelError as exc:
        if ref != "teacher":
            fail(str(exc))
        err.print(escape("the teacher is not installed (bash scripts/setup.sh teacher): the served model "
                         "rewrites questions"))
        return None


@app.command()
def distill(teacher_url: Annotated[Optional[str], typer.Option("--teacher-url", help="OpenAI-compatible endpoint of the teacher (key: MOSS_TEACHER_API_KEY or OPENAI_API_KEY).")] = None,
            teacher_model: Annotated[str, typer.Option("--teacher-model", help="Model name at --teacher-url.")] = "moss",
            teacher: Annotated[str, typer.Option("--teacher", help="Without --teacher-url: a model Moss runs itself.")] = "teacher",
            model: Model = None, threads: Threads = None,
            limit: Annotated[Optional[int], typer.Option(help="At most this many prompts per stage.")] = None,
            answers: Annotated[bool, typer.Option("--answers/--no-answers", help="The teacher answers stored prompts (SFT).")] = True,
            judge_samples: Annotated[int, typer.Option("--judge-samples", help="Student answers per prompt the teacher ranks (DPO); 0 = skip.")] = 0,
            self_instruct: Annotated[int, typer.Option("--self-instruct", help="New prompts the teacher writes and answers.")] = 0,
            ) -> None:
    """Learn from another model: teacher answers to real prompts, AI preferences, self-instruct.
    The records go through `moss learn` (and its verification) like people's corrections."""
    from moss.learning import distill as distilling
    from moss.learning import self_instruct as instructing
    from moss.learning.teacher import TeacherError, local, remote
    store = _store()
    chosen = remote(teacher_url, teacher_model) if teacher_url else local(_engine(teacher, 4096, threads, serving=False, parallel=4))
    counts = {}
    try:
        if answers:
            counts["teacher answers"] = distilling.answers(store, chosen, limit)
        if judge_samples > 1:
            with closing(_engine(model, 4096, threads, parallel=4)) as student:
                counts["AI preferences"] = distilling.preferences(store, student, chosen, limit, judge_samples)
        if self_instruct:
            counts["self-instruct"] = instructing.generate(store, chosen, self_instruct)
    except TeacherError as exc:
        fail(str(exc))
    finally:
        chosen.close()
    for stage, tally in counts.items():
        err.print(f"{stage}: {tally.get('kept', 0)} kept, " + (", ".join(
            f"{n} dropped ({reason})" for reason, n in tally.items() if reason != "kept") or "none dropped"))
    print(json.dumps({stage: dict(tally) for stage, tally in counts.items()}, ensure_ascii=False))
    err.print("next: moss learn (trains on them, verifies, serves only if it passes)")


@app.command()
def rollback(version: Annotated[Optional[str], typer.Argument(help="Version to serve (default: the serving one's parent).")] = None,
             model: Model = None) -> None:
    """Switch back to an earlier model version; a running server follows within seconds."""
    from moss.store import StoreError
    path = _resolve(model)
    try:
        chosen = ledger.rollback(_store(), models.display_name(model, path), version)
    except (versions.LearnError, StoreError) as exc:
        fail(str(exc))
    err.print(f"now serving [bold]{escape(chosen.id)}[/]; what the versions rolled back learned is held for "
              "review (moss feedback review)")


def _store():
    from moss.store import Store
    try:
        return Store()
    except Exception as exc:  # a bad URL or an unreachable database: one line, not a trace
        fail(f"cannot open the database ({type(exc).__name__}: {str(exc).splitlines()[0]})")


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


def _engine(model: str | None, ctx: int, threads: int | None, serving: bool = True, **options) -> Engine:
    """An engine for `model` (a reference or a server URL); with `serving`, answering with the
    version that serves now (a trained one, after moss learn), as the server would."""
    if ctx < 256:
        fail(f"--ctx must be at least 256 tokens, got {ctx}")
    try:
        engine = open_engine(model, context_size=ctx, threads=threads, **options)
    except (models.ModelError, EngineError) as exc:
        fail(str(exc))
    if serving:
        versions.follow(engine, _store())
    return engine


def _register(store, engine: Engine) -> None:
    """Record the engine's base model as a version (the first time it answers here)."""
    spec = models.REGISTRY.get(engine.model)
    store.register_version(engine.model, engine.model, str(engine.path), spec.sha256 if spec else None)


def _version_engine(ref: str, ctx: int, threads: int | None, **options) -> tuple[Engine, str]:
    """An engine for an evaluation side, and what it is: a version id from `moss versions` is
    that version (its base model with its adapter); anything else is a base model alone."""
    from moss.store import StoreError
    store = _store()
    try:
        version = store.version(ref) if "@" in ref else None
    except StoreError:
        version = None  # hf:OWNER/REPO... or a path with an @ in it: a model
    if version is None:
        engine = _engine(ref, ctx, threads, serving=False, **options)
        return engine, f"{engine.model} (base model, no adapter)"
    root = versions.lineage(store, version)[-1]  # the base model's own version: its file
    engine = _engine(root.path or version.base_model, ctx, threads, serving=False, name=version.base_model,
                     **options)
    if not version.parent_id:
        return engine, f"{version.id} (base model, no adapter)"
    versions.serve(engine, version)
    return engine, f"{version.id} ({engine.model} + adapter {version.path})"


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
