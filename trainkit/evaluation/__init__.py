"""Evaluation: plan, items, writer, runner, scoring, report and display are torch-free; ``model``
loads a run's own checkpoint (torch); ``run`` is the eval command's body."""
