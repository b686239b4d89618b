"""The HTTP server: the OpenAI-compatible API and the chat page (app.py), typed request and
response models (api_types.py), errors (errors.py), keys, limits and exposure (access.py), the
admin API and the housekeeping that follows the serving version (admin.py), metrics, web/.

May import everything below it (basics, inference, store, tools, evals, learning); nothing imports it
but the CLI."""
