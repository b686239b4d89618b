"""The interactive terminal chat: streamed Markdown answers, slash commands (feedback too), Ctrl-C
stops an answer. Every exchange is logged, here or by the server answering (moss.backends)."""

import json

try:
    import readline  # noqa: F401  (line editing and history for input())
except ImportError:
    pass
import signal
import sys
import termios
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape

from moss.backends import Backend, FeedbackError
from moss.inference.engine import EngineError, Generation, Sampling
from moss.inference.prompts import META_INSTRUCTION, Message

HELP = """\
Commands / 命令:
  /reset          start over / 清空对话
  /regen          answer the last question again / 重新生成
  /save FILE      save the conversation (JSON) / 保存对话
  /load FILE      load a saved conversation / 载入对话
  /system [TEXT]  show or set the system prompt / 查看或设置系统提示
  /good           rate the last answer 👍 / 好评上一个回答
  /bad [REASON]   rate it 👎 (incorrect, unhelpful, unsafe, wrong_language, too_long) / 差评
  /correct TEXT   give the right answer: Moss learns it / 给出正确答案，Moss 会学习
  /help           this help / 帮助
  /quit           leave (or Ctrl-D) / 退出
Ctrl-C stops an answer without leaving / Ctrl-C 停止当前回答"""
FEEDBACK_COMMANDS = ("/good", "/bad", "/correct")


class ChatSession:
    def __init__(self, backend: Backend, sampling: Sampling, system: str | None = None,
                 console: Console | None = None):
        self.backend, self.engine, self.sampling = backend, backend.engine, sampling
        self.system = system or META_INSTRUCTION
        self.history: list[Message] = []
        self.last: str | None = None  # the stored id of the last answer, for feedback
        self.console = console or Console(highlight=False)

    def run(self) -> None:
        c = self.console
        c.print(f"[bold green]Moss[/] · {self.engine.model} · /help for commands, /quit to leave "
                f"· /help 查看命令")
        while True:
            try:
                line = input("\n> " if c.is_terminal else "")
            except EOFError:
                break
            except KeyboardInterrupt:
                c.print("\n[dim](/quit to leave · /quit 退出)[/]")
                continue
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if self.command(line) == "quit":
                    break
            else:
                self.history.append({"role": "user", "content": line})
                self.answer()

    def command(self, line: str) -> str | None:
        name, _, arg = line.partition(" ")
        arg, c = arg.strip(), self.console
        if name in ("/quit", "/exit", "/q"):
            return "quit"
        if name == "/help":
            c.print(HELP)
        elif name == "/reset":
            self.history.clear()
            c.print("[dim]conversation cleared / 已清空[/]")
        elif name == "/regen":
            while self.history and self.history[-1]["role"] == "assistant":
                self.history.pop()
            if not self.history:
                c.print("[yellow]nothing to regenerate yet / 还没有可以重新生成的回答[/]")
            else:
                self.answer()
        elif name == "/system":
            if arg:
                self.system = arg
                c.print("[dim]system prompt set / 已设置系统提示[/]")
            else:
                c.print(self.system, markup=False)
        elif name in FEEDBACK_COMMANDS:
            self.feedback(name, arg)
        elif name == "/save" and arg:
            self.save(Path(arg).expanduser())
        elif name == "/load" and arg:
            self.load(Path(arg).expanduser())
        else:
            c.print(f"[yellow]unknown command or missing argument: {line}[/] (/help)", markup=True)
        return None

    def feedback(self, name: str, arg: str) -> None:
        """Rate or correct the last answer, as the page's buttons do."""
        c = self.console
        if self.last is None:
            c.print("[yellow]no stored answer to give feedback on yet / 还没有可以评价的回答[/]")
            return
        if name == "/good":
            kind, value, done = "rating", {"rating": "up"}, "👍 noted / 已记录"
        elif name == "/bad":
            kind, value, done = "rating", {"rating": "down", "reasons": arg.split()}, "👎 noted / 已记录"
        elif not arg:
            c.print("[yellow]/correct needs the right answer: /correct TEXT / 请写出正确答案[/]")
            return
        else:
            kind, value = "correction", {"content": arg}
            done = ("correction saved: Moss remembers it from the next question on; once the trust policy "
                    "accepts it, `moss learn` teaches it (moss feedback review) / "
                    "更正已保存：从下一个问题起 Moss 会记住它；通过信任检查后，`moss learn` 会学习它")
        try:
            self.backend.feedback(self.last, kind, **value)
        except FeedbackError as exc:
            c.print(f"[red]feedback not saved: {escape(str(exc))}[/]")
            return
        c.print(f"[dim]{done}[/]")

    def save(self, path: Path) -> None:
        data = {"model": self.engine.model, "system": self.system, "messages": self.history}
        try:
            path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        except OSError as exc:
            self.console.print(f"[red]cannot save {path}: {exc.strerror}[/]")
            return
        self.console.print(f"[dim]saved {len(self.history)} messages to {path}[/]")

    def load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            messages = data["messages"]
            if not all(m["role"] in ("user", "assistant") and isinstance(m["content"], str)
                       for m in messages):
                raise ValueError("messages need role user/assistant and text content")
        except OSError as exc:
            self.console.print(f"[red]cannot read {path}: {exc.strerror}[/]")
            return
        except (ValueError, KeyError, TypeError) as exc:
            self.console.print(f"[red]{path} is not a saved Moss conversation ({exc})[/]")
            return
        self.history = [{"role": m["role"], "content": m["content"]} for m in messages]
        self.system = data.get("system") or self.system
        self.console.print(f"[dim]loaded {len(self.history)} messages from {path}[/]")

    def answer(self) -> None:
        """Stream an answer to the history; a stopped answer is kept as far as it got."""
        messages = [{"role": "system", "content": self.system}, *self.history]
        try:
            generation = self.backend.answer(messages, self.sampling)
            with _ctrl_c_cancels(generation):
                text = self._show(generation)
        except EngineError as exc:
            self.console.print(f"[red]error: {escape(str(exc))}[/]")
            self.history.pop()
            return
        if text:
            self.history.append({"role": "assistant", "content": text})
        self.last = self.backend.keep(messages, generation, self.sampling)
        self._footer(generation)

    def _show(self, generation: Generation) -> str:
        c, text = self.console, ""
        if not c.is_terminal:  # piped: plain text as it comes
            for piece in generation:
                text += piece
                c.file.write(piece)
                c.file.flush()
            c.file.write("\n")
            return text
        with Live(Markdown(""), console=c, refresh_per_second=12, vertical_overflow="visible") as live:
            for piece in generation:
                text += piece
                live.update(Markdown(text))
        return text

    def _footer(self, generation: Generation) -> None:
        r = generation.result
        notes = [f"{r.completion_tokens} tokens", f"{r.tokens_per_second:.1f} tokens/s",
                 f"{r.time_to_first_token:.2f}s to first token"]
        if r.finish_reason == "cancelled":
            notes.append("stopped / 已停止")
        elif r.finish_reason == "length":
            notes.append("cut at --max-tokens")
        if r.dropped_messages:
            notes.append(f"{r.dropped_messages} oldest messages left out to fit the context")
        if r.memories:
            notes.append(f"used {len(r.memories)} thing(s) people taught / 用了 {len(r.memories)} 条记忆")
        self.console.print(f"[dim]{' · '.join(notes)}[/]")
        for run in r.tool_runs:  # what Moss's tools (--tools) computed for this answer
            self.console.print(f"[dim]🧮 {escape(run['name'])}({escape(run['arguments'])}) → {escape(run['result'])}[/]")


@contextmanager
def _ctrl_c_cancels(generation: Generation):
    """While an answer streams, Ctrl-C stops it cleanly (between tokens) instead of raising.

    Terminal echo is off meanwhile: an echoed "^C" or typed-ahead text would shift the lines
    that the live Markdown view redraws, and it would print parts of the answer twice."""
    previous = signal.signal(signal.SIGINT, lambda *_: generation.cancel())
    saved = _echo_off()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if saved is not None:
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)


def _echo_off() -> list | None:
    """Turn off echo on an interactive stdin; return the settings to restore."""
    if not sys.stdin.isatty():
        return None
    saved = termios.tcgetattr(sys.stdin)
    quiet = termios.tcgetattr(sys.stdin)
    quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
    termios.tcsetattr(sys.stdin, termios.TCSADRAIN, quiet)
    return saved
