"""Grammars that constrain what a model may write (llama.cpp's GBNF): any JSON object, or JSON
that matches a schema (OpenAI's response_format). The grammar sampler masks every token that
would break the grammar, so the answer parses by construction."""

import json

import llama_cpp
from llama_cpp.llama_grammar import json_schema_to_gbnf

from moss.inference.engine import EngineError


def json_grammar(schema: dict | None = None) -> str:
    """GBNF for a JSON object, or for one that matches `schema` (EngineError if it cannot be used)."""
    try:
        grammar = json_schema_to_gbnf(json.dumps(schema if schema is not None else {"type": "object"}))
    except Exception as exc:  # the converter raises whatever it meets: say which schema part failed
        raise EngineError(f"this JSON schema cannot be used: {exc}") from None
    # The converter lets a string hold raw control characters (a newline), which JSON forbids.
    return grammar.replace(r'char ::= [^"\\]', r'char ::= [^"\\\x7F\x00-\x1F]')


def grammar_sampler(vocab, grammar: str):
    """A llama.cpp grammar sampler for `vocab`, which the caller adds to a chain or frees;
    EngineError if llama.cpp cannot parse the grammar (it returns no sampler then)."""
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
    if not sampler:
        raise EngineError("the grammar cannot be parsed")
    return sampler


def check(vocab, grammar: str) -> None:
    """Fail now, in the caller's thread, on a grammar llama.cpp cannot parse."""
    llama_cpp.llama_sampler_free(grammar_sampler(vocab, grammar))
