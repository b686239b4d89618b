"""Grammars that constrain what a model may write (llama.cpp's GBNF): any JSON object, JSON that
matches a schema (OpenAI's response_format), or tool calls whose arguments match their functions'
schemas (toolcalls.py). The grammar sampler masks every token that would break the grammar, so
the answer parses by construction; a lazy one waits for a trigger (a call's start), so the model
may also answer in plain text."""

import ctypes
import json

import llama_cpp
from llama_cpp.llama_grammar import SchemaConverter

from moss.inference.engine import EngineError


class Rules:
    """GBNF rules for several JSON schemas in one grammar (each schema's rules named apart)."""

    def __init__(self):
        self._converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)

    def schema(self, schema: dict, name: str) -> str:
        """Add the rules for `schema`; returns the name of its top rule, `name` ("": root), or
        EngineError if the schema cannot be used."""
        try:
            return self._converter.visit(self._converter.resolve_refs(schema, name or "stdin"), name)
        except Exception as exc:  # the converter raises whatever it meets: say which schema part failed
            raise EngineError(f"this JSON schema cannot be used: {exc}") from None

    def rule(self, name: str, body: str) -> None:
        self._converter._rules[name] = body

    def grammar(self) -> str:
        # The converter lets a string hold raw control characters (a newline), which JSON forbids.
        return self._converter.format_grammar().replace(r'char ::= [^"\\]', r'char ::= [^"\\\x7F\x00-\x1F]')


def json_grammar(schema: dict | None = None) -> str:
    """GBNF for a JSON object, or for one that matches `schema` (EngineError if it cannot be used)."""
    rules = Rules()
    rules.schema(schema if schema is not None else {"type": "object"}, "")
    return rules.grammar()


def literal(text: str) -> str:
    """`text` as a GBNF string literal."""
    return json.dumps(text)


def grammar_sampler(vocab, grammar: str, triggers: tuple[str, ...] = ()):
    """A llama.cpp grammar sampler for `vocab`, which the caller adds to a chain or frees; with
    `triggers` (regular expressions), lazy: it constrains nothing until one matches all the text so
    far, then holds the text from its first group on to the grammar. EngineError if llama.cpp
    cannot parse the grammar."""
    if not triggers:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
    else:
        patterns = (ctypes.c_char_p * len(triggers))(*(t.encode("utf-8") for t in triggers))
        sampler = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
            vocab, grammar.encode("utf-8"), b"root", patterns, len(triggers), (llama_cpp.llama_token * 1)(), 0)
    if not sampler:
        raise EngineError("the grammar cannot be parsed")
    return sampler


def check(vocab, grammar: str, triggers: tuple[str, ...] = ()) -> None:
    """Fail now, in the caller's thread, on a grammar llama.cpp cannot parse."""
    llama_cpp.llama_sampler_free(grammar_sampler(vocab, grammar, triggers))
