"""Inference: everything that turns messages into an answer.

Owns the `Engine` protocol every caller uses (engine.py), the embedded llama.cpp engine and its
continuous batching (llama.py, batching.py), chat templates and context fitting (prompts.py),
the model registry (models.py), a remote OpenAI-compatible engine (remote.py), and the one
place engines are built (loading.py). May import the basics only (moss.paths, moss.lang,
moss.progress); never the store, evals, learning or server."""
