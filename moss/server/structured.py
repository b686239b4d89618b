"""OpenAI's response_format: "text", "json_object" (any JSON object) or "json_schema" (JSON that
matches a schema, as structured outputs and `client.beta.chat.completions.parse` send). The answer
is held to it by a grammar (inference/grammars.py), and told in the system message what to write,
so that it fills the structure with what was asked rather than merely parsing."""

import json
from dataclasses import dataclass
from typing import Any

from moss.inference.engine import EngineError
from moss.inference.grammars import json_grammar
from moss.server.errors import ApiError


@dataclass
class Structure:
    grammar: str | None = None
    instruction: str = ""


def structured(response_format: dict[str, Any] | None) -> Structure:
    """The grammar and instruction for a request's response_format; ApiError 400 for one that
    cannot be served."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return Structure()
    if kind == "json_object":
        return Structure(json_grammar(), "Answer with one JSON object only, no other text. "
                                         "只用一个 JSON 对象回答，不要写其他文字。")
    if kind != "json_schema":
        raise ApiError(400, f"response_format type must be text, json_object or json_schema, not '{kind}'",
                       param="response_format")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
        raise ApiError(400, "response_format json_schema needs {name, schema}", param="response_format")
    schema = spec.get("schema") or {"type": "object"}
    try:
        grammar = json_grammar(schema)
    except EngineError as exc:
        raise ApiError(400, str(exc), param="response_format")
    return Structure(grammar, "Answer with one JSON object that matches this JSON schema, no other text. "
                              "只用一个符合此 JSON schema 的 JSON 对象回答：\n"
                              + json.dumps(schema, ensure_ascii=False))
