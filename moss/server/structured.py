"""What a request asks the answer's form to be: OpenAI's response_format ("text", "json_object",
or "json_schema", as structured outputs and `client.chat.completions.parse` send) and its tools
(tools, tool_choice, parallel_tool_calls). Either is held by a grammar (inference/grammars.py):
a JSON answer is told in the system message what to write, so that it fills the structure with
what was asked rather than merely parsing; tools are listed there (inference/toolcalls.py)."""

import json
from dataclasses import dataclass, field
from typing import Any

from moss.inference.engine import EngineError
from moss.inference.grammars import json_grammar
from moss.inference.toolcalls import Choice, Function, grammar
from moss.server.api_types import ChatRequest
from moss.server.errors import ApiError


@dataclass
class Structure:
    grammar: str | None = None
    triggers: tuple[str, ...] = ()  # the grammar holds once one matches (a call's start), not from the first token
    instruction: str = ""
    functions: list[Function] = field(default_factory=list)  # offered to the model (none: no tools)
    choice: Choice = Choice("none")


def structure(body: ChatRequest) -> Structure:
    """The grammar, instruction and tools of a request; ApiError 400 for what cannot be served."""
    tools = _tools(body)
    if tools.functions and body.response_format and body.response_format.get("type", "text") != "text":
        raise ApiError(400, "response_format and tools cannot be used together here: send one of them",
                       param="response_format")
    return tools if tools.functions else _format(body.response_format)


def _tools(body: ChatRequest) -> Structure:
    if body.functions and body.function_call != "none":
        raise ApiError(400, "the legacy functions parameter is not supported: send tools instead", param="functions")
    functions = [Function(t.function.name, t.function.description, t.function.parameters or
                          {"type": "object", "properties": {}}) for t in body.tools or []]
    if len({f.name for f in functions}) < len(functions):
        raise ApiError(400, "two tools have the same name", param="tools")
    picked = body.tool_choice or ("auto" if functions else "none")
    if isinstance(picked, str):
        choice = Choice(picked, parallel=body.parallel_tool_calls)
    else:
        choice = Choice("function", picked.function.name, parallel=False)
        if picked.function.name not in {f.name for f in functions}:
            raise ApiError(400, f"tool_choice names '{picked.function.name}', which is not in tools", param="tool_choice")
    if choice.mode == "required" and not functions:
        raise ApiError(400, "tool_choice 'required' needs tools", param="tool_choice")
    if choice.mode == "none":
        return Structure()
    try:
        rules, triggers = grammar(functions, choice)
    except EngineError as exc:
        raise ApiError(400, str(exc), param="tools")
    return Structure(rules, triggers, functions=functions, choice=choice)


def _format(response_format: dict[str, Any] | None) -> Structure:
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return Structure()
    if kind == "json_object":
        return Structure(json_grammar(), instruction="Answer with one JSON object only, no other text. "
                                                     "只用一个 JSON 对象回答，不要写其他文字。")
    if kind != "json_schema":
        raise ApiError(400, f"response_format type must be text, json_object or json_schema, not '{kind}'",
                       param="response_format")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
        raise ApiError(400, "response_format json_schema needs {name, schema}", param="response_format")
    schema = spec.get("schema") or {"type": "object"}
    try:
        rules = json_grammar(schema)
    except EngineError as exc:
        raise ApiError(400, str(exc), param="response_format")
    return Structure(rules, instruction="Answer with one JSON object that matches this JSON schema, no other text. "
                                        "只用一个符合此 JSON schema 的 JSON 对象回答：\n"
                                        + json.dumps(schema, ensure_ascii=False))
