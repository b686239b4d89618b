"""Scorers for evaluation answers that only evaluation needs: true/false verdicts, code, language.
Matching and refusal are moss.text, shared with learning."""

import re

from moss.lang import detect
from moss.tools.sandbox import Limits, run_python

_FALSE = re.compile(r"\b(?:false|not true|incorrect|untrue|wrong|inaccurate)\b|错误|不正确|不对|假的|不是真的|错的|虚假",
                    re.IGNORECASE)
_TRUE = re.compile(r"\b(?:true|correct|accurate|right)\b|正确|对的|是真的|真的|属实", re.IGNORECASE)


def verdict(answer: str) -> str | None:
    """'false', 'true' or None for a true-or-false answer, from whichever word comes first."""
    head = answer[:200]
    f, t = _FALSE.search(head), _TRUE.search(head)
    if f and (not t or f.start() <= t.start()):
        return "false"
    return "true" if t else None


def language_ok(question_lang: str, answer: str) -> bool:
    return detect(answer) == question_lang


def extract_code(answer: str) -> str:
    """The first fenced code block of an answer (preferring python), or the answer itself."""
    blocks = re.findall(r"```([a-zA-Z0-9_+-]*)\n(.*?)```", answer, re.DOTALL)
    for lang, body in blocks:
        if lang.lower() in ("python", "py", "python3"):
            return body
    return blocks[0][1] if blocks else answer


def humaneval_program(prompt: str, answer: str, test: str, entry_point: str) -> str:
    """A runnable program: the model's function (whole, or as a completion of the prompt) + tests."""
    code = extract_code(answer)
    if re.search(rf"^\s*def {re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        imports = "\n".join(line for line in prompt.splitlines() if line.startswith(("import ", "from ")))
        body = f"{imports}\n\n{code}"
    else:
        body = prompt + code
    return f"{body}\n\n{test}\n\ncheck({entry_point})\n"


def humaneval_passes(prompt: str, answer: str, test: str, entry_point: str) -> bool:
    result = run_python(humaneval_program(prompt, answer, test, entry_point),
                        limits=Limits(seconds=10, cpu_seconds=8, memory_mb=1024))
    return result.ok
