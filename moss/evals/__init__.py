"""Evaluation: bilingual suites built from offline data (suites.py, data.py, prompts.py), their
scorers (scorers.py), running and keeping results per model version (evaluate.py), the HTML
report, the pairwise judge (judge.py) and the code sandbox that runs generated code.

May import the basics and moss.inference (an engine answers the items); never the store,
learning or server."""
