"""A user task for the DDP tests (``task: ddp_tasks:recording_task``; tests/ is on PYTHONPATH).

Its inputs carry each sample's index in their last column, and its loss appends, per call, the
rank, the indices it received and a checksum of the parameters to ``DDP_RECORD_DIR/rank<R>.jsonl``:
the test checks the shards (disjoint, contiguous, their union the global batch) and that every rank
holds the same parameters at every step. No dropout: the run must match a single process.
"""

from __future__ import annotations

import os
import time

import orjson
import torch
from torch import nn

from trainkit.tasks import Task, TaskData

N_TRAIN, N_VAL, DIM = 96, 16, 8


class Recording(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(DIM, 32), nn.Tanh(), nn.Linear(32, 1))

    def forward(self, x):
        return self.net(x[:, :DIM])


class RecordingTask(Task):
    name = "ddp-recording"

    def build_data(self, data, cache_dir):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(N_TRAIN + N_VAL, DIM, generator=g)
        y = (x.sum(dim=1, keepdim=True) > 0).float()
        ids = torch.arange(N_TRAIN + N_VAL, dtype=torch.float32)[:, None]
        x = torch.cat([x, ids], dim=1)
        return TaskData(train=(x[:N_TRAIN], y[:N_TRAIN]), val=(x[N_TRAIN:], y[N_TRAIN:]))

    def build_model(self, model, data):
        return Recording()

    def loss(self, model, batch):
        x, y = batch
        out = nn.functional.mse_loss(model(x), y)
        if model.training and os.environ.get("DDP_SLOW_S"):  # a step that takes a while, for pause tests
            time.sleep(float(os.environ["DDP_SLOW_S"]))
        folder = os.environ.get("DDP_RECORD_DIR")
        if folder and model.training:
            params = (model.module if hasattr(model, "module") else model).parameters()
            checksum = float(sum(p.detach().double().sum() for p in params))
            rank = int(os.environ.get("RANK", "0"))
            with open(os.path.join(folder, f"rank{rank}.jsonl"), "ab") as f:
                f.write(orjson.dumps({"rank": rank, "ids": x[:, DIM].long().tolist(), "params": checksum}) + b"\n")
        return out


def recording_task() -> RecordingTask:
    return RecordingTask()
