"""A complete Lightning run with trainkit's logger: a tiny regression model, a few epochs.

    python examples/lightning_tiny.py [RUN_DIR]
    trainkit status experiments          # the run shows up (and in trainmon)

What a user adds to their own script: ``logger=TrainkitLogger()`` (or ``callbacks=[TrainkitCallback()]``).
"""

from __future__ import annotations

import sys
import tempfile

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from trainkit.integrations.lightning import TrainkitLogger


class TinyRegressor(L.LightningModule):
    def __init__(self, width: int = 16, lr: float = 1e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Tanh(), torch.nn.Linear(width, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def loaders(n: int = 128, batch_size: int = 16, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]])).sin()
    cut = n * 3 // 4
    return (DataLoader(TensorDataset(x[:cut], y[:cut]), batch_size=batch_size, shuffle=False),
            DataLoader(TensorDataset(x[cut:], y[cut:]), batch_size=batch_size))


def main(run_dir: str | None = None) -> None:
    torch.manual_seed(0)
    train, val = loaders()
    logger = TrainkitLogger(run_dir, monitor={"layers_every_steps": 4}, relaunch=True)
    trainer = L.Trainer(max_epochs=4, accelerator="cpu", devices=1, log_every_n_steps=1, logger=logger,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tempfile.mkdtemp(prefix="lightning-tiny-"))
    trainer.fit(TinyRegressor(), train, val)
    print(f"run folder: {logger.log_dir}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
