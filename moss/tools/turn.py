"""A turn with Moss's own tools, behind the one Engine interface: `ToolEngine(engine, tools)`
answers like `engine`, but the model may call the tools (tool_choice auto, held by the calls'
grammar); each call runs, its result goes back as a tool message, and the model goes on. Once it
makes no new call (small models repeat the one they made) or ROUNDS calls have run, a last round
answers in words from the results, given in the system message. Its Generation streams only the words meant for
the person, from every round, and reports the calls it ran (`runs`): the server, `moss ask` and
`moss eval --tools` all use it as they use any engine."""

import threading
from dataclasses import replace

from moss.inference import toolcalls
from moss.inference.engine import Engine, EngineError, Generation, Result, Sampling
from moss.inference.prompts import Message, extend_system
from moss.tools.builtin import Run, Tool, run

ROUNDS = 4  # calls in one turn, at most


class ToolGeneration(Generation):
    """The answer of a whole turn: its pieces are the text shown from each round, its result adds
    up the rounds' tokens and times, `runs` holds every call and its result."""

    def __init__(self, result: Result):
        super().__init__(result)
        self.runs: list[Run] = []
        self.current: Generation | None = None  # the round being generated, for cancel

    def cancel(self) -> None:
        super().cancel()
        if self.current is not None:
            self.current.cancel()


class ToolEngine:
    """`engine` with `tools` the model may call; everything but generate is the engine's own."""

    def __init__(self, engine: Engine, tools: list[Tool]):
        self.engine, self.tools = engine, tools
        self.functions = [t.function for t in tools]
        # the calls' grammar depends only on the tools: built once, not per request and round
        self.grammar, self.triggers = toolcalls.grammar(self.functions, toolcalls.Choice("auto"))

    def __getattr__(self, name):
        return getattr(self.engine, name)

    @property
    def version(self) -> str:
        """The engine's version with "+tools": evaluation results are kept apart from its own."""
        return f"{self.engine.version}+tools"

    def generate(self, messages: list[Message], sampling: Sampling | None = None,
                 system: str | None = None, user: str = "", owner: str = "") -> Generation:
        sampling = sampling or Sampling()
        first = self._round(messages, sampling, None, system, user, owner)  # a bad request fails here, at once
        turn = ToolGeneration(Result(prompt=first.result.prompt, seed=first.result.seed,
                                     model_version=first.result.model_version, memories=first.result.memories,
                                     dropped_messages=first.result.dropped_messages))
        threading.Thread(target=self._drive, args=(turn, first, messages, sampling, system, user, owner),
                         name="moss-tool-turn", daemon=True).start()
        return turn

    def _round(self, messages: list[Message], sampling: Sampling, runs: list[Run] | None, system, user,
               owner) -> Generation:
        """One generation: tools offered, or (`runs` given) the last, in words, from their results."""
        if runs is not None:
            return self.engine.generate(extend_system(messages, _results(runs)), sampling, system, user, owner)
        sampling = replace(sampling, grammar=self.grammar, grammar_triggers=self.triggers, special=True)
        return self.engine.generate(toolcalls.prompt(messages, self.functions), sampling, system, user, owner)

    def _drive(self, turn: ToolGeneration, generation: Generation, messages: list[Message], sampling: Sampling,
               system, user, owner) -> None:
        history, shown, last = list(messages), [], False
        try:
            while True:
                turn.current = generation
                splitter = toolcalls.Splitter() if not last else None
                for piece in generation:
                    self._show(turn, shown, splitter.feed(piece)[0] if splitter else piece)
                self._show(turn, shown, splitter.finish()[0] if splitter else "")
                self._add(turn.result, generation.result, first=not turn.runs)
                if last or not splitter.calls or turn.cancelled or generation.result.finish_reason != "stop":
                    break
                done = {(r.call.name, r.call.arguments) for r in turn.runs}
                fresh = [c for c in splitter.calls if (c.name, c.arguments) not in done]
                turn.runs += [run(call) for call in fresh]
                if turn.cancelled:
                    break
                history += [{"role": "assistant", "content": toolcalls.written("", splitter.calls)}] + \
                           [{"role": "tool", "content": r.result} for r in turn.runs[-len(fresh):]] if fresh else []
                # A call made again, or the rounds used up: the answer, in words, from the results.
                last = not fresh or len(turn.runs) >= ROUNDS
                generation = self._round(messages if last else history, sampling, turn.runs if last else None,
                                         system, user, owner)
            turn.result.text = "".join(shown)
            turn.result.finish_reason = "cancelled" if turn.cancelled else generation.result.finish_reason
            turn.result.tool_runs = [{"name": r.call.name, "arguments": r.call.arguments, "result": r.result,
                                      "ok": r.ok} for r in turn.runs]
            turn._emit_end()
        except Exception as exc:  # a later round refused (the queue full) or failed: the turn ends with it
            turn.result.text, turn.result.finish_reason = "".join(shown), "error"
            turn._emit_end(exc if isinstance(exc, EngineError) else EngineError(f"a tool turn failed: {exc}"))

    @staticmethod
    def _show(turn: ToolGeneration, shown: list[str], text: str) -> None:
        if text:
            shown.append(text)
            turn._emit(text)

    @staticmethod
    def _add(total: Result, part: Result, first: bool) -> None:
        """A round's tokens and times into the turn's (prompt tokens: the first round's)."""
        if first:
            total.prompt_tokens, total.cached_tokens = part.prompt_tokens, part.cached_tokens
            total.time_to_first_token = part.time_to_first_token
        total.completion_tokens += part.completion_tokens
        total.total_seconds += part.total_seconds


def _results(runs: list[Run]) -> str:
    """The calls made and what they returned, for the last round's system message."""
    lines = [f"- {r.call.name}({r.call.arguments}) -> {r.result}" for r in runs]
    return ("Tools were run for the user's last message; their results:\n" + "\n".join(lines) +
            "\nAnswer the user's last message using these results, in the user's language. "
            "工具结果已给出，请用它们回答。")
