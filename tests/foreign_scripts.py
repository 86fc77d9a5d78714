"""Training scripts of other tools, written from their own documentation, for tests/test_foreign.py:
a tiny Hugging Face ``Trainer`` run (``report_to="tensorboard"``, evaluation and checkpoints every
few steps, early stopping), a Lightning run with ``CSVLogger`` and ``TensorBoardLogger``, a bare
``SummaryWriter``, and one that appends when asked (``live``: trainmon's tests and benchmarks). Run as
``python foreign_scripts.py KIND OUT [options]``."""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn


def dataset(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, x.sum(1)


def hf(out: str, max_steps: int, patience: int | None, greater_is_better: bool, crash_at: int | None,
       save_model: bool = False) -> None:
    from transformers import (
        EarlyStoppingCallback,
        PretrainedConfig,
        PreTrainedModel,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    class TinyConfig(PretrainedConfig):
        model_type = "tiny-regressor"

    class Tiny(PreTrainedModel):
        config_class = TinyConfig

        def __init__(self, config):
            super().__init__(config)
            self.linear = nn.Linear(4, 1)

        def forward(self, x=None, labels=None):
            pred = self.linear(x).squeeze(-1)
            return {"loss": nn.functional.mse_loss(pred, labels), "logits": pred}

    class Rows(torch.utils.data.Dataset):
        def __init__(self, n, seed):
            self.x, self.y = dataset(n, seed)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    class CrashAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if crash_at is not None and state.global_step == crash_at:
                raise RuntimeError("the machine went away")

    args = TrainingArguments(
        output_dir=out, max_steps=max_steps, per_device_train_batch_size=8, learning_rate=1e-2, logging_steps=5,
        eval_strategy="steps", eval_steps=10, save_steps=10, save_total_limit=2, report_to=["tensorboard"],
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=greater_is_better,
        use_cpu=True, disable_tqdm=True, seed=0)
    callbacks = [CrashAt()]
    if patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience))
    trainer = Trainer(model=Tiny(TinyConfig()), args=args, train_dataset=Rows(400, 0), eval_dataset=Rows(40, 1),
                      callbacks=callbacks)
    trainer.train()
    if save_model:  # the model and its config.json in the output folder itself, as most scripts end
        trainer.save_model()
        trainer.save_state()


def lightning(out: str, max_epochs: int) -> None:
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    class Regressor(L.LightningModule):
        def __init__(self, lr: float = 0.01, max_epochs: int = max_epochs):
            super().__init__()
            self.save_hyperparameters()
            self.linear = nn.Linear(4, 1)

        def training_step(self, batch, i):
            x, y = batch
            loss = nn.functional.mse_loss(self.linear(x).squeeze(-1), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch, i):
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.linear(x).squeeze(-1), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    x, y = dataset(256)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    trainer = L.Trainer(max_epochs=max_epochs, default_root_dir=out, log_every_n_steps=4,
                        logger=[CSVLogger(out), TensorBoardLogger(out)], enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(Regressor(), loader, loader)


def writer(out: str, steps: int, hold_file: str | None) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(out)
    for step in range(steps):
        w.add_scalar("train/loss", 1.0 / (step + 1), step)
        if step % 10 == 0:
            w.add_scalar("val/loss", 2.0 / (step + 1) + 0.01 * step, step)
    w.flush()
    if hold_file:  # keep the writer (and its event file) open until the test removes hold_file
        print("holding", flush=True)
        import os

        while os.path.exists(hold_file):
            time.sleep(0.05)
    w.close()


def live(out: str) -> None:
    """A ``SummaryWriter`` that appends when asked: each line ``N`` on stdin writes N more steps of
    ``train/loss`` (1 / (step + 1)), flushes, and answers ``wrote STEP TIME`` (the last step, and the
    time of the flush); end of input closes it."""
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(out)
    step = 0
    print("ready", flush=True)
    for line in sys.stdin:
        for _ in range(int(line)):
            w.add_scalar("train/loss", 1.0 / (step + 1), step)
            step += 1
        w.flush()
        print(f"wrote {step - 1} {time.time():.6f}", flush=True)  # the last step, and when it was flushed
    w.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=("hf", "lightning", "writer", "live"))
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--patience", type=int)
    ap.add_argument("--greater-is-better", action="store_true")
    ap.add_argument("--crash-at", type=int)
    ap.add_argument("--save-model", action="store_true")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--hold")
    a = ap.parse_args()
    if a.kind == "hf":
        hf(a.out, a.steps, a.patience, a.greater_is_better, a.crash_at, a.save_model)
    elif a.kind == "lightning":
        lightning(a.out, a.epochs)
    elif a.kind == "live":
        live(a.out)
    else:
        writer(a.out, a.steps, a.hold)


if __name__ == "__main__":
    sys.exit(main())
