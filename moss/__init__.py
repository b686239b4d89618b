"""Moss: a self-hosted bilingual chat assistant that learns from feedback.

The house, from the ground up (a package imports only packages below it; tests/test_layers.py
holds the code to this):

    basics      paths, lang, progress, text, words, busy, safety: data directory, language,
                progress bars, text matching, the words search matches on, the CPU turn-taking
                between the server and learning, the safety screen of what people teach
    inference   engines: the Engine protocol, llama.cpp with continuous batching, prompt
                templates, the model registry, remote OpenAI-compatible models
    store       the database: conversations, feedback, users, model versions (SQLAlchemy)
    tools       what Moss runs when a model calls it: calculator, equation solver, Python in the
                sandbox (which also runs the code suite's answers); the tool turn
    evals       bilingual evaluation suites, scorers, the pairwise judge
    learning    the trust policy and review, then the learning cycle: feedback -> data -> LoRA
                -> verification -> promotion; what each version learned and unlearned
    server      the HTTP face: OpenAI-compatible API, access control, admin API, chat page
    cli, terminal, doctor   the `moss` command's faces
"""

__version__ = "0.1.0"
