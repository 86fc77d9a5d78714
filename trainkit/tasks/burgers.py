"""Built-in task ``burgers``: a neural surrogate for the 1D viscous Burgers' equation.

    u_t + (u^2 / 2)_x = nu * u_xx   on x in [0, 1), periodic.

The data are generated here with a finite-difference solver (Rusanov flux for the convective
term, central differences for diffusion, SSP-RK2 in time), deterministically from ``data.seed``.
The model maps the initial condition u(x, 0) to the solution u(x, T) on the same grid; its
validation metric is the NRMSE ``||pred - true||_2 / ||true||_2`` over the validation set.

Evaluation: the default question set is ``EVAL_QUESTIONS`` initial conditions drawn from a generator
seeded with :func:`eval_seed` (derived from ``data.seed``, never equal to it: held out from the
training and validation data); each answer is the solver's u(x, T). The metric is ``nrmse`` pooled
over the items (see :mod:`trainkit.scoring`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import torch
from torch import nn

from trainkit.config import _f
from trainkit.files import atomic_write
from trainkit.tasks.base import Task, TaskData

SOLVER_VERSION = 1
EVAL_QUESTIONS = 64


@dataclass
class BurgersData:
    seed: int = _f(0, "seed of the generated initial conditions")
    n_train: int = _f(2048, "training samples")
    n_val: int = _f(256, "validation samples")
    nx: int = _f(64, "grid points")
    viscosity: float = _f(0.01, "nu")
    t_final: float = _f(0.3, "time T the model predicts")
    modes: int = _f(4, "Fourier modes in each random initial condition")


@dataclass
class BurgersModel:
    width: int = _f(256, "hidden units")
    depth: int = _f(3, "hidden layers")
    dropout: float = _f(0.0, "dropout after each hidden layer")


def random_initial_conditions(n: int, nx: int, modes: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth periodic initial conditions: random Fourier sums scaled to max |u| = 1."""
    x = torch.arange(nx, dtype=torch.float64) / nx
    k = torch.arange(1, modes + 1, dtype=torch.float64)
    amp = torch.randn(n, modes, generator=generator, dtype=torch.float64) / k
    phase = torch.rand(n, modes, generator=generator, dtype=torch.float64) * 2 * math.pi
    u = (amp[:, :, None] * torch.sin(2 * math.pi * k[None, :, None] * x[None, None, :] + phase[:, :, None])).sum(1)
    return u / u.abs().amax(dim=1, keepdim=True)


def solve_burgers(u0: torch.Tensor, viscosity: float, t_final: float) -> torch.Tensor:
    """March ``u0`` (batch, nx) to ``t_final`` on the periodic unit interval."""
    nx = u0.shape[1]
    dx = 1.0 / nx

    def rhs(u: torch.Tensor) -> torch.Tensor:
        up = torch.roll(u, -1, dims=1)
        speed = torch.maximum(u.abs(), up.abs())
        flux = 0.25 * (u * u + up * up) - 0.5 * speed * (up - u)  # Rusanov flux at i + 1/2
        conv = (flux - torch.roll(flux, 1, dims=1)) / dx
        diff = viscosity * (up - 2 * u + torch.roll(u, 1, dims=1)) / dx**2
        return diff - conv

    u = u0.clone()
    t = 0.0
    while t < t_final - 1e-12:
        umax = float(u.abs().max()) + 1e-12
        dt = min(0.4 * dx / umax, 0.2 * dx * dx / max(viscosity, 1e-12), t_final - t)
        u1 = u + dt * rhs(u)
        u = 0.5 * (u + u1 + dt * rhs(u1))
        t += dt
    return u


def generate(cfg: BurgersData) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(cfg.seed)
    n = cfg.n_train + cfg.n_val
    u0 = random_initial_conditions(n, cfg.nx, cfg.modes, g)
    uT = solve_burgers(u0, cfg.viscosity, cfg.t_final)
    return {"u0": u0.float(), "uT": uT.float()}


def eval_seed(seed: int) -> int:
    """The seed of the held-out evaluation set: a hash of ``data.seed``, never ``data.seed`` itself."""
    derived = int.from_bytes(hashlib.sha256(f"burgers-eval-{seed}".encode()).digest()[:7], "big")
    return derived if derived != seed else derived + 1


def eval_questions(cfg: BurgersData, n: int = EVAL_QUESTIONS) -> list[dict]:
    """``n`` held-out questions: ``question`` is u(x, 0) on the grid, ``answer`` the solver's u(x, T).

    Values are rounded to float32 (the precision the model and the training data use), so that the
    last-bit differences float64 math may show between CPUs or libraries do not change the questions
    (their hash identifies the evaluation's plan when it is resumed, possibly on another machine)."""
    g = torch.Generator().manual_seed(eval_seed(cfg.seed))
    u0 = random_initial_conditions(n, cfg.nx, cfg.modes, g)
    uT = solve_burgers(u0, cfg.viscosity, cfg.t_final)
    u0, uT = u0.float(), uT.float()
    return [{"id": i, "question": u0[i].tolist(), "answer": uT[i].tolist()} for i in range(n)]


def _cache_key(cfg: BurgersData) -> str:
    blob = orjson.dumps({"solver": SOLVER_VERSION, **cfg.__dict__}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()[:16]


class ResidualMLP(nn.Module):
    """u(T) = u(0) + MLP(u(0))."""

    def __init__(self, nx: int, width: int, depth: int, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(nx if i == 0 else width, width), nn.GELU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width, nx))
        self.net = nn.Sequential(*layers)

    def forward(self, u0: torch.Tensor) -> torch.Tensor:
        return u0 + self.net(u0)


class BurgersTask(Task):
    name = "burgers"
    model_config = BurgersModel
    data_config = BurgersData
    metric = "nrmse"

    def build_data(self, data: dict, cache_dir: Path | None) -> TaskData:
        cfg = BurgersData(**data)
        tensors = None
        path = cache_dir / f"burgers-{_cache_key(cfg)}.pt" if cache_dir else None
        if path is not None and path.is_file():
            try:
                tensors = torch.load(path, weights_only=True)
            except Exception:  # a damaged cache is regenerated, never trusted
                tensors = None
        if tensors is None:
            tensors = generate(cfg)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, lambda f: torch.save(tensors, f))
        u0, uT = tensors["u0"], tensors["uT"]
        n = cfg.n_train
        return TaskData(train=(u0[:n], uT[:n]), val=(u0[n:], uT[n:]))

    def build_model(self, model: dict, data: TaskData) -> nn.Module:
        cfg = BurgersModel(**model)
        return ResidualMLP(data.train[0].shape[1], cfg.width, cfg.depth, cfg.dropout)

    @torch.no_grad()
    def validate(self, model: nn.Module, val: tuple[torch.Tensor, ...], batch_size: int) -> dict[str, float]:
        x, y = val[0], val[1]
        preds = torch.cat([model(x[i:i + 1024]) for i in range(0, x.shape[0], 1024)])
        err = preds - y
        return {
            "val_loss": float(err.pow(2).mean()),
            "nrmse": float(err.norm() / y.norm()),
        }

    def default_questions(self, data: dict) -> list[dict]:
        return eval_questions(BurgersData(**data))

    def build_eval_model(self, model: dict, data: dict, cache_dir: Path | None) -> nn.Module:
        cfg = BurgersModel(**model)
        return ResidualMLP(BurgersData(**data).nx, cfg.width, cfg.depth, cfg.dropout)

    def predictor(self, model: nn.Module, device: torch.device) -> Callable[[dict], Any]:
        def predict(item: dict) -> dict:
            u0 = torch.as_tensor(item["question"], dtype=torch.float32)
            if u0.ndim != 1:
                raise ValueError(f"question must be a flat list of grid values, got shape {tuple(u0.shape)}")
            with torch.no_grad():
                out = model(u0.to(device)[None])[0]
            return {"answer": out.cpu().tolist()}

        return predict
