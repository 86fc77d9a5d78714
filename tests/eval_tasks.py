"""A user task for the evaluation tests (``task: eval_tasks:plain_task``): it trains like burgers but
has none of the optional evaluation members (no default questions, no predictor)."""

from __future__ import annotations

from trainkit.tasks import Task
from trainkit.tasks.burgers import BurgersTask


class PlainTask(Task):
    name = "plain"

    def build_data(self, data, cache_dir):
        return BurgersTask().build_data({"seed": 0, "n_train": 64, "n_val": 16, "nx": 16, "viscosity": 0.01,
                                         "t_final": 0.3, "modes": 4}, cache_dir)

    def build_model(self, model, data):
        return BurgersTask().build_model({"width": 16, "depth": 1, "dropout": 0.0}, data)


def plain_task() -> PlainTask:
    return PlainTask()
