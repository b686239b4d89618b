"""Conversation shaping: Moss's meta instruction, the model's chat template, fitting the context window."""

import re
from dataclasses import dataclass
from typing import Callable

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

# In the spirit of MOSS's meta instruction (helpful, honest, harmless), plus the language rule
# that MOSS's users asked for. Numbered, concrete rules: small models follow them better than prose.
META_INSTRUCTION = (
    "You are Moss, a helpful, honest and harmless AI assistant.\n"
    "Rules:\n"
    "1. Reply in the language of the user's latest message: English for English, 中文 for Chinese.\n"
    "2. Never help with weapons, explosives, drugs, hacking, violence, self-harm or other crimes: "
    "reply only \"Sorry, I can't help with that.\" (中文: \"抱歉，我不能帮助你做这件事。\") "
    "and a one-sentence reason, with no steps.\n"
    "3. Be accurate; if you do not know something, say so instead of making it up.\n"
    "4. Use Markdown when it helps: lists, tables, and code blocks with a language tag."
)

# A plain ChatML template for GGUF files that carry none of their own.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

Message = dict[str, str]


def with_system(messages: list[Message], system: str | None = None) -> list[Message]:
    """Messages with exactly one leading system message: the caller's, or Moss's meta instruction."""
    if messages and messages[0]["role"] == "system":
        return messages
    return [{"role": "system", "content": system or META_INSTRUCTION}, *messages]


def extend_system(messages: list[Message], text: str) -> list[Message]:
    """The messages with `text` at the end of the system message (Moss's meta instruction, or the
    client's own system prompt): after it, so the instruction's cached prefix still serves."""
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": messages[0]["content"] + "\n\n" + text}, *messages[1:]]
    return [{"role": "system", "content": META_INSTRUCTION + "\n\n" + text}, *messages]


class ChatTemplate:
    """Renders messages with the model's own Jinja chat template, ready for generation."""

    def __init__(self, template: str | None, bos_token: str, eos_token: str):
        self._formatter = Jinja2ChatFormatter(template or CHATML, eos_token, bos_token)

    def render(self, messages: list[Message]) -> str:
        return self._formatter(messages=messages).prompt

    def render_parts(self, messages: list[Message]) -> list[tuple[str, bool]]:
        """The rendered prompt as (text, is_template) pieces. Only the template's own text may
        hold special tokens: a message that contains "<|im_end|>" must stay text, or a user could
        close their turn and write a system prompt of their own. So each message's content is
        rendered as a marker, and the message text is put back as a piece of its own."""
        marked = [{**m, "content": _MARK.format(i)} for i, m in enumerate(messages)]
        rendered = self._formatter(messages=marked).prompt
        parts: list[tuple[str, bool]] = []
        for i, piece in enumerate(_MARKS.split(rendered)):
            if i % 2 == 0:
                parts.append((piece, True))
            else:
                parts.append((messages[int(piece)]["content"], False))
        return [(text, template) for text, template in parts if text]


# A message's place in a rendered template: no template writes these characters itself.
_MARK = "\x1emoss-message-{}\x1e"
_MARKS = re.compile("\x1emoss-message-(\\d+)\x1e")


@dataclass
class Fitted:
    messages: list[Message]
    tokens: list[int]
    dropped: int  # messages left out, oldest first
    truncated: bool  # the newest message itself had to be cut


def fit(messages: list[Message], budget: int, encode: Callable[[list[Message]], list[int]],
        shorten: Callable[[str, int], str]) -> Fitted:
    """Drop the oldest turns (never the system prompt) until the prompt fits `budget` tokens.

    `encode` renders and tokenizes messages; `shorten(text, n)` removes about n tokens from the
    start of a text. Turns are dropped whole, from a user message on, so roles keep alternating."""
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    body = messages[len(head):]
    tokens = encode(messages)
    if len(tokens) <= budget:
        return Fitted(messages, tokens, 0, False)
    # Candidate cut points: each user message; the last one must stay.
    starts = [i for i, m in enumerate(body) if m["role"] == "user"] or [len(body) - 1]
    lo, hi = 0, len(starts) - 1  # smallest cut index that fits, found by binary search
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        trial = encode(head + body[starts[mid]:])
        if len(trial) <= budget:
            best, hi = (mid, trial), mid - 1
        else:
            lo = mid + 1
    if best is not None:
        cut = starts[best[0]]
        return Fitted(head + body[cut:], best[1], cut, False)
    # Even the newest turn alone is too long: keep its end, which usually holds the question.
    kept = head + body[starts[-1]:]
    last = dict(kept[-1])
    overflow = len(encode(kept)) - budget
    last["content"] = "…" + shorten(last["content"], overflow + 8)
    kept[-1] = last
    return Fitted(kept, encode(kept), starts[-1], True)
