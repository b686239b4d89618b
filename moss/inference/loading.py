"""The one place engines are built: a model reference in, an `Engine` out.

A reference is a registry name or alias (default, small, teacher), a .gguf path,
hf:OWNER/REPO/FILE.gguf (with a network), or the URL of an OpenAI-compatible server."""

from moss.inference import models
from moss.inference.engine import Engine


def is_url(ref: str | None) -> bool:
    return bool(ref) and ref.startswith(("http://", "https://"))


def open_engine(ref: str | None = None, *, name: str | None = None, context_size: int = 4096, threads: int | None = None,
                parallel: int = 1, max_queue: int = 64, user_share: float = 1.0,
                remote_model: str = "default", api_key: str | None = None) -> Engine:
    """An engine for `ref` (None: the default model), called `name` (default: its registry name or
    file stem). Raises models.ModelError for a reference
    that names nothing, EngineError for a model that cannot be loaded."""
    if is_url(ref):
        from moss.inference.remote import RemoteEngine
        return RemoteEngine(ref, remote_model, api_key, context_size=context_size, parallel=parallel)
    from moss.inference.llama import LlamaCppEngine
    path = models.resolve(ref)
    return LlamaCppEngine(path, name or models.display_name(ref, path), context_size=context_size, threads=threads,
                          parallel=parallel, max_queue=max_queue, user_share=user_share)
