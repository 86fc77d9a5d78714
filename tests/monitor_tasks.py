"""User tasks for the monitor tests (``task: monitor_tasks:NAME``; tests/ is on PYTHONPATH).

* :func:`sampling_task`: a small regression task that can ``generate``, and whose generation draws
  from torch's global RNG on purpose: if sampling leaked into the training RNG, the weights of a
  run with samples would differ from one without. Dropout is on, so the RNG matters to training.
  With ``MONITOR_HOLD_AT=N`` and ``MONITOR_HOLD_FILE=path`` in the environment, its training step
  ``N`` (counted from 0 in this process) creates the file and waits there until the process is
  killed, unless the file exists already (a resumed run goes on): a test kills it at a known step.
* :func:`nan_task`: its loss becomes NaN from global step ``MONITOR_NAN_AT`` (environment).
* :func:`spike_task`: its loss is multiplied by 1000 at global step ``MONITOR_SPIKE_AT``.
* :func:`slow_validation_task`: each training step takes 30 ms, each validation batch 0.5 s (an
  epoch's end that lasts longer than its steps, as on a busy machine).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from trainkit.tasks import Task
from trainkit.tasks.burgers import BurgersTask

DATA = {"seed": 0, "n_train": 128, "n_val": 16, "nx": 16, "viscosity": 0.01, "t_final": 0.3, "modes": 4}


class _Base(Task):
    name = "monitor-test"

    def __init__(self) -> None:
        self.calls = 0

    def build_data(self, data, cache_dir):
        return BurgersTask().build_data(DATA, cache_dir)

    def build_model(self, model, data):
        return BurgersTask().build_model({"width": 32, "depth": 2, "dropout": 0.2}, data)


class SamplingTask(_Base):
    def loss(self, model, batch):
        hold = os.environ.get("MONITOR_HOLD_FILE")
        if model.training and hold and self.calls == int(os.environ.get("MONITOR_HOLD_AT", "0")) \
                and not Path(hold).exists():
            Path(hold).touch()
            while True:  # until killed
                time.sleep(1)
        self.calls += model.training
        return super().loss(model, batch)

    def sample_prompts(self):
        return [{"prompt": "1", "expected": "1"}, {"prompt": "2", "expected": "3"}]

    def generate(self, model, prompts, *, device, max_new_tokens):
        noise = torch.rand(len(prompts))  # touches the global RNG: the monitor must fork it
        x = torch.zeros(len(prompts), DATA["nx"], device=device)
        y = model(x).mean(dim=1).cpu() + 0 * noise
        return [p if i == 0 else f"{float(v):.3f}" for i, (p, v) in enumerate(zip(prompts, y, strict=True))]


class NanTask(_Base):
    def loss(self, model, batch):
        self.calls += model.training  # training steps only (validation calls the loss too)
        loss = super().loss(model, batch)
        return loss * float("nan") if model.training and self.calls > int(os.environ.get("MONITOR_NAN_AT", "5")) \
            else loss


class SpikeTask(_Base):
    def loss(self, model, batch):
        self.calls += model.training
        loss = super().loss(model, batch)
        return loss * 1000 if model.training and self.calls == int(os.environ.get("MONITOR_SPIKE_AT", "20")) + 1 \
            else loss


class SlowValidationTask(_Base):
    def loss(self, model, batch):
        time.sleep(0.03 if model.training else 0.5)
        return super().loss(model, batch)


def slow_validation_task() -> SlowValidationTask:
    return SlowValidationTask()


def sampling_task() -> SamplingTask:
    return SamplingTask()


def nan_task() -> NanTask:
    return NanTask()


def spike_task() -> SpikeTask:
    return SpikeTask()
