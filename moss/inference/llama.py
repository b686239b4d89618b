"""The embedded engine: a GGUF model run in-process by llama.cpp, several streams batched together."""

import ctypes
import os
import random
import time
from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaContext, LlamaModel
from llama_cpp._logger import set_verbose

from moss.inference import grammars
from moss.inference.batching import Job, Scheduler
from moss.inference.engine import Activity, EngineError, Generation, Result, Sampling
from moss.inference.prompts import ChatTemplate, Fitted, Message, fit, with_system


class LlamaCppEngine:
    """`parallel` sequences decode together, each with `context_size` tokens of its own KV cache.
    Requests beyond that wait in a queue of `max_queue`, served fairly across users."""

    adapters = True

    def __init__(self, model_path: str | Path, model: str | None = None, context_size: int = 4096,
                 threads: int | None = None, parallel: int = 1, batch_size: int = 512,
                 max_queue: int = 64, user_share: float = 1.0):
        self.path = Path(model_path)
        self.model = model or self.path.stem
        self.version = self.model  # the model version answering now: the base, or base + adapter
        self.adapter: Path | None = None
        self._adapters: dict[Path, object] = {}  # loaded once, kept until the model is freed
        self.context_size, self.parallel = context_size, parallel
        threads = threads or os.cpu_count() or 1
        set_verbose(False)  # llama.cpp's own log: errors only
        try:
            self._model = LlamaModel(path_model=str(model_path),
                                     params=llama_cpp.llama_model_default_params(), verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise EngineError(f"cannot load model {model_path}: {exc}") from None
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = context_size * parallel  # split evenly: each sequence gets context_size
        params.n_seq_max = parallel
        params.kv_unified = False
        # Flash attention makes a prompt's logits depend on which part of it was cached,
        # so temperature 0 would answer differently on a cold and a warm cache.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.n_batch = params.n_ubatch = batch_size
        params.n_threads = params.n_threads_batch = threads
        try:
            self._ctx = LlamaContext(model=self._model, params=params, verbose=False)
        except ValueError as exc:
            self._model.close()
            raise EngineError(f"cannot create a llama.cpp context for {model_path}: {exc}") from None
        vocab = self._model.vocab
        self._bos = self._model.token_bos()
        self._add_bos = self._bos >= 0 and self._model.add_bos_token()
        text = lambda t: self._model.token_get_text(t) if t >= 0 else ""  # noqa: E731
        self.template = ChatTemplate(self._model.metadata().get("tokenizer.chat_template"),
                                     text(self._bos), text(self._model.token_eos()))
        # Control tokens such as <|im_start|> also end a turn: text after one is template debris.
        ends_turn = lambda t: bool(llama_cpp.llama_vocab_is_eog(vocab, t)  # noqa: E731
                                   or llama_cpp.llama_vocab_is_control(vocab, t))
        self.scheduler = Scheduler(self._model, self._ctx, parallel, context_size, batch_size,
                                   max_queue, ends_turn, user_share)

    # ---- tokens and context ----

    def encode(self, messages: list[Message]) -> list[int]:
        """Tokens of the rendered prompt, with BOS where the model wants one, but never twice
        (some templates write it themselves). Special tokens are read only in the template's
        own text; in what people wrote, "<|im_start|>" is just text."""
        tokens: list[int] = []
        for text, template in self.template.render_parts(messages):
            tokens += self._model.tokenize(text.encode("utf-8"), add_bos=False, special=template)
        if self._add_bos and tokens[:1] != [self._bos]:
            tokens.insert(0, self._bos)
        return tokens

    def answer_tokens(self, text: str) -> list[int]:
        """An assistant answer as the model generates it: its tokens, then the end of turn."""
        eot = self._model.token_eot()
        return self._model.tokenize(text.encode("utf-8"), add_bos=False, special=False) + [
            eot if eot >= 0 else self._model.token_eos()]

    def _shorten(self, text: str, n: int) -> str:
        tokens = self._model.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return self._model.detokenize(tokens[n:]).decode("utf-8", errors="ignore")

    def fit(self, messages: list[Message], max_tokens: int) -> Fitted:
        """The messages that fit the context with room for the answer (at least half the window)."""
        budget = self.context_size - min(max_tokens, self.context_size // 2)
        fitted = fit(messages, budget, self.encode, self._shorten)
        if len(fitted.tokens) > budget:
            raise EngineError(f"the system prompt alone does not fit the context window of "
                              f"{self.context_size} tokens; shorten it or raise the context size")
        return fitted

    # ---- generation ----

    def generate(self, messages: list[Message], sampling: Sampling | None = None,
                 system: str | None = None, user: str = "", owner: str = "") -> Generation:
        start = time.perf_counter()
        sampling = sampling or Sampling()
        sampling.check()
        if not messages or any(not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant")
                               or not isinstance(m.get("content"), str) for m in messages):
            raise EngineError("messages must be a non-empty list of {role, content} with role "
                              "system, user or assistant")
        if sampling.grammar:
            # a 400 now, not a failed answer later
            grammars.check(self._model.vocab, sampling.grammar, sampling.grammar_triggers)
        if sampling.seed is None:
            sampling = Sampling(**{**sampling.__dict__, "seed": random.getrandbits(31)})
        fitted = self.fit(with_system(messages, system), sampling.max_tokens)
        generation = Generation(Result(prompt_tokens=len(fitted.tokens),
                                       dropped_messages=fitted.dropped, prompt=fitted.messages,
                                       seed=sampling.seed, model_version=self.version))
        self.scheduler.submit(Job(fitted.tokens, sampling, user, generation, start=start,
                                  owner=owner or user))
        return generation

    def set_adapter(self, path: Path | None, version: str | None = None) -> None:
        """Serve with a LoRA adapter GGUF (None: the base model alone), from the next answer on.
        Answers already running finish first; cached prompts are dropped, as their keys and values
        came from the other weights."""
        adapter = None
        if path is not None:
            path = Path(path)
            if path not in self._adapters:
                loaded = llama_cpp.llama_adapter_lora_init(self._model.model, str(path).encode())
                if not loaded:
                    raise EngineError(f"cannot load the LoRA adapter {path}")
                self._adapters[path] = loaded
            adapter = self._adapters[path]

        def swap() -> None:
            if adapter is None:
                code = llama_cpp.llama_set_adapters_lora(self._ctx.ctx, None, 0, None)
            else:
                code = llama_cpp.llama_set_adapters_lora(
                    self._ctx.ctx, (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter), 1,
                    (ctypes.c_float * 1)(1.0))
            if code != 0:
                raise EngineError(f"llama.cpp refused the adapter {path} ({code})")
            self.scheduler.clear_cache()
            self.adapter, self.version = path, version or (self.model if path is None else path.stem)
        self.scheduler.call(swap, when_idle=True)

    def activity(self) -> Activity:
        return Activity(active=self.scheduler.active, queued=self.scheduler.queued)

    def clear_cache(self) -> None:
        """Forget cached prompts, so the next request prefills from scratch."""
        self.scheduler.call(self.scheduler.clear_cache)

    def close(self) -> None:
        """Stop the decoder (cancelling what runs) and free the model."""
        if self._ctx.ctx is None:
            return
        self.scheduler.close()
        self._ctx.close()
        self._model.close()

    def __enter__(self) -> "LlamaCppEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
