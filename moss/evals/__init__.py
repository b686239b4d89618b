"""Evaluation: bilingual suites built from offline data (suites.py, data.py, prompts.py), their
scorers (scorers.py), running and keeping results per model version (evaluate.py), the HTML
report and the pairwise judge (judge.py); generated code runs in moss.tools.sandbox.

May import the basics, moss.inference (an engine answers the items) and moss.tools (the sandbox);
never the store, learning or server."""
