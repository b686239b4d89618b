"""Learning: turning feedback into a verified model version.

The cycle (cycle.py) runs typed stages: data (datasets.py, data.py, pairs.py) -> wordings
(wordings.py) -> training (trainer.py, adapters.py) -> candidates (candidates.py) ->
verification (verify.py, with anchors.py) -> promotion (versions.py). Teachers and AI feedback
(teacher.py, distill.py, self_instruct.py) add training records that go through the same cycle.

May import the basics, moss.inference, moss.store and moss.evals; never moss.server."""
