"""Tool calls in the format Moss's default model (Qwen2.5) was trained on, which its GGUF chat
template writes (the Hermes format): the functions listed in the system message, each call
written as <tool_call>{"name": ..., "arguments": {...}}</tool_call>, each result given back in a
user turn as <tool_response>...</tool_response>. Messages are put in this form as text before
they reach the engine, so every model and every engine sees the same thing; a grammar built from
the functions' JSON schemas holds the calls to it, so a call always parses."""

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Literal

from moss.inference.grammars import Rules, literal
from moss.inference.prompts import Message, extend_system

OPEN, CLOSE = "<tool_call>", "</tool_call>"
BARE = '{"name": '  # a call written without its tags starts so
_CALL = re.compile(re.escape(OPEN) + r"\s*(.*?)\s*" + re.escape(CLOSE), re.S)


@dataclass(frozen=True)
class Function:
    """A function the model may call: OpenAI's tools[].function."""
    name: str
    description: str = ""
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True)
class Choice:
    """OpenAI's tool_choice: the model decides (auto), may not call (none), must call one or more
    (required), or must call the named function."""
    mode: Literal["auto", "none", "required", "function"] = "auto"
    name: str | None = None
    parallel: bool = True  # several calls in one turn


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON object as text, as OpenAI sends it


def instructions(functions: list[Function]) -> str:
    """The tools block of the system message, in the words of Qwen2.5's chat template."""
    listed = "\n".join(json.dumps({"type": "function", "function": {
        "name": f.name, "description": f.description, "parameters": f.parameters}}, ensure_ascii=False)
        for f in functions)
    return ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
            f"{listed}\n</tools>\n\nFor each function call, return a json object with function name and "
            f"arguments within {OPEN}{CLOSE} XML tags:\n{OPEN}\n"
            f'{{"name": <function-name>, "arguments": <args-json-object>}}\n{CLOSE}')


def written(content: str, calls: list[ToolCall]) -> str:
    """An assistant turn with its calls, as the model writes it."""
    parts = [content] if content else []
    for call in calls:
        parts.append(f'{OPEN}\n{{"name": {json.dumps(call.name)}, "arguments": {call.arguments or "{}"}}}\n{CLOSE}')
    return "\n".join(parts)


def prompt(messages: list[Message], functions: list[Function]) -> list[Message]:
    """The messages as the model reads them: the functions in the system message (none when
    `functions` is empty), and the results of calls (role "tool") in user turns."""
    out: list[Message] = []
    for m in messages:
        if m["role"] != "tool":
            out.append(m)
            continue
        result = f"<tool_response>\n{m['content']}\n</tool_response>"
        if out and out[-1]["role"] == "user" and out[-1]["content"].endswith("</tool_response>"):
            out[-1] = {"role": "user", "content": out[-1]["content"] + "\n" + result}  # one turn per batch
        else:
            out.append({"role": "user", "content": result})
    return extend_system(out, instructions(functions)) if functions else out


def grammar(functions: list[Function], choice: Choice) -> tuple[str, tuple[str, ...]]:
    """The GBNF for the calls `choice` allows, and its triggers: where a call starts when the model
    may also answer in words (auto), none when it must call. Left to choose, small models (the
    default Qwen2.5-Coder-0.5B among them) often write a call as the bare JSON object that
    answers the whole turn, without the tags: the grammar takes that form too."""
    allowed = [f for f in functions if choice.mode != "function" or f.name == choice.name]
    rules = Rules()
    for i, f in enumerate(allowed):
        arguments = rules.schema(f.parameters or {"type": "object"}, f"arguments-{i}")
        # the same text as `written`: <tool_call>\n{"name": "NAME", "arguments": ARGUMENTS}\n</tool_call>
        rules.rule(f"object-{i}", " ".join((literal(BARE + json.dumps(f.name) + ', "arguments": '),
                                            arguments, literal("}"))))
    rules.rule("object", " | ".join(f"object-{i}" for i in range(len(allowed))))
    rules.rule("call", literal(OPEN + "\n") + " object " + literal("\n" + CLOSE))
    rules.rule("calls", 'call ("\\n" call)*' if choice.parallel and choice.mode != "function" else "call")
    if choice.mode != "auto":
        rules.rule("root", "calls")
        return rules.grammar(), ()
    rules.rule("root", "calls | object")
    return rules.grammar(), (r"[\s\S]*?(" + re.escape(OPEN) + r")[\s\S]*", r"\s*(" + re.escape(BARE) + r")[\s\S]*")


def parse(text: str) -> tuple[str, list[ToolCall]]:
    """An answer's text before its calls, and the calls that parse (an unfinished one, cut by
    the token limit, is left in the text); an answer that is one bare call is that call."""
    calls, first = [], None
    for match in _CALL.finditer(text):
        call = _call(match.group(1))
        if call is not None:
            calls.append(call)
            first = match.start() if first is None else first
    if not calls and text.lstrip().startswith(BARE) and (call := _call(text.strip())) is not None:
        return "", [call]
    return (text if first is None else text[:first]).strip(), calls


def _call(body: str) -> ToolCall | None:
    try:
        found = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(found, dict) or not isinstance(found.get("name"), str):
        return None
    arguments = found.get("arguments", {})
    return ToolCall("call_" + uuid.uuid4().hex[:24], found["name"],
                    arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False))


class Splitter:
    """Splits a streamed answer into the text shown as it comes and the calls, each given whole
    once its closing tag arrives; text that might begin a call is held back until it cannot, and
    an answer that begins as a bare call is held to its end."""

    def __init__(self):
        self._held = ""
        self._in_call = False
        self._shown = False  # some text went out: the answer is not a bare call
        self.calls: list[ToolCall] = []

    def feed(self, piece: str) -> tuple[str, list[ToolCall]]:
        """The text to show now, and the calls completed by `piece`."""
        self._held += piece
        shown, done = "", []
        while True:
            if self._in_call:
                end = self._held.find(CLOSE)
                if end < 0:
                    return shown, done
                if (call := _call(self._held[:end].strip())) is not None:
                    done.append(call)
                    self.calls.append(call)
                self._held, self._in_call = self._held[end + len(CLOSE):].lstrip("\n"), False
                continue
            start = self._held.find(OPEN)
            if start >= 0:
                shown += self._held[:start] if not self.calls else ""
                self._held, self._in_call = self._held[start + len(OPEN):], True
                continue
            head = self._held.lstrip()
            if not self._shown and not self.calls and (head.startswith(BARE) or BARE.startswith(head)):
                return shown, done  # perhaps a bare call: nothing shows until it is known
            keep = _partial(self._held)
            if not self.calls:  # after the calls, only whitespace between them
                shown += self._held[:len(self._held) - keep]
            self._held = self._held[len(self._held) - keep:]
            self._shown = self._shown or bool(shown)
            return shown, done

    def finish(self) -> tuple[str, list[ToolCall]]:
        """What was held back when the answer ended: the bare call it was, or its text (an
        unfinished call is shown as text)."""
        held, self._held = (OPEN if self._in_call else "") + self._held, ""
        if not self.calls and not self._in_call:
            text, calls = parse(held)
            if calls:
                self.calls += calls
                return "", calls
        return (held if not self.calls else ""), []


def _partial(text: str) -> int:
    """How many characters at the end of `text` could start the opening tag."""
    for n in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if OPEN.startswith(text[-n:]):
            return n
    return 0
