"""Tools Moss runs itself when a model calls them: the calculator and the equation solver (on
sympy, without eval), Python in the sandbox (sandbox.py, which also runs the code suite's
answers), search of the knowledge base (knowledge.py), each call run in a worker process with a
time limit, and the turn that lets a model call them and answer from their results.

May import: basics, inference, store."""
