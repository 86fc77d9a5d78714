"""trainkit: local-first PyTorch training with true resume, early stopping and live run files.

The Python API does exactly what the CLI does (the CLI is a thin wrapper around it)::

    import trainkit

    result = trainkit.run_job("examples/burgers.yaml", epochs=20, overrides={"lr": 3e-4})
    print(result.state, result.run_dir, result.best_metric, result.best_value)
    ev = trainkit.evaluate(result.run_dir)
    print(ev.summary["nrmse"], ev.report["gates_passed"])

Importing ``trainkit`` imports no torch; ``run_job`` and ``evaluate`` import what they need.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "evaluate", "run_job"]


def run_job(config, **options):
    """Train or resume a run: see :func:`trainkit.train.run.run_job` (returns a ``RunResult``)."""
    from trainkit.train.run import run_job as _run_job

    return _run_job(config, **options)


def evaluate(run_dir, **options):
    """Evaluate a run: see :func:`trainkit.evaluation.run.evaluate_job` (returns an ``EvalResult``)."""
    from trainkit.evaluation.run import evaluate_job

    return evaluate_job(run_dir, **options)
