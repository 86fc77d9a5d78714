"""Built-in task ``burgers``: a neural surrogate for the 1D viscous Burgers' equation.

    u_t + (u^2 / 2)_x = nu * u_xx   on x in [0, 1), periodic.

The initial conditions are random Fourier sums drawn deterministically from ``data.seed``; the
targets are the exact solution at time T, sampled on the same grid, computed with the Cole-Hopf
transform (E. Hopf, Comm. Pure Appl. Math. 3, 1950; J. D. Cole, Quart. Appl. Math. 9, 1951):

    u = -2 nu phi_x / phi,   phi_t = nu phi_xx,   phi(x, 0) = exp(-U(x) / (2 nu)),   U' = u(x, 0).

:func:`solve_burgers` takes u(x, 0) to be the trigonometric interpolant of its grid values (exact for
these initial conditions, which have fewer Fourier modes than half the grid), integrates it in Fourier
space to the periodic potential U (a non-zero mean c is removed first and restored by the Galilean
shift u(x, t) = c + v(x - c t, t)), and solves the heat equation for phi exactly in Fourier space, on
a finer grid that resolves phi(x, 0) to round-off. It works in float64, subtracting the maximum of the
exponent; phi then spans many orders of magnitude when nu is small, and the solver raises
``ValueError`` when it spans more than float64 resolves (for these initial conditions, at T = 0.3,
below nu of about 0.0065). At the defaults the solution matches an independent quadrature of the
Hopf integral to about 1e-12 (relative L2; the stored float32 targets to about 3e-8); the first-order
finite-difference solver used before (``SOLVER_VERSION`` 1) was about 7 % off at nx 64, 14 % at nx 32.

The model maps the initial condition u(x, 0) to the solution u(x, T) on the same grid; its
validation metric is the NRMSE ``||pred - true||_2 / ||true||_2`` over the validation set.

Evaluation: the default question set is ``EVAL_QUESTIONS`` initial conditions drawn from a generator
seeded with :func:`eval_seed` (derived from ``data.seed``, never equal to it: held out from the
training and validation data); each answer is the exact u(x, T) from :func:`solve_burgers`. The
metric is ``nrmse`` pooled over the items (see :mod:`trainkit.evaluation.scoring`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch
from torch import nn

from trainkit.config import setting
from trainkit.runfolder.files import atomic_write
from trainkit.tasks.base import Task, TaskData
from trainkit.tasks.defaults import BURGERS

SOLVER_VERSION = 3  # 1: first-order finite differences (about 7 % off); 2: exact (Cole-Hopf); 3: the same, with
# numpy's FFT (the same bits in every process)
EVAL_QUESTIONS = 64
PHI_RESOLVED = 1e-13  # largest Fourier coefficient allowed in the top half of phi(x, 0)'s spectrum
PHI_RANGE = 1e-10  # smallest min(phi) / max(phi) at time T that float64 resolves well enough
MAX_HEAT_GRID = 4096  # finest grid tried for phi (unless nx is finer)


@dataclass
class BurgersData:
    seed: int = setting(0, "seed of the generated initial conditions")
    n_train: int = setting(2048, "training samples")
    n_val: int = setting(256, "validation samples")
    nx: int = setting(64, "grid points")
    viscosity: float = setting(0.01, "nu")
    t_final: float = setting(0.3, "time T the model predicts")
    modes: int = setting(4, "Fourier modes in each random initial condition")


@dataclass
class BurgersModel:
    width: int = setting(256, "hidden units")
    depth: int = setting(3, "hidden layers")
    dropout: float = setting(0.0, "dropout after each hidden layer")


def random_initial_conditions(n: int, nx: int, modes: int, generator: torch.Generator) -> torch.Tensor:
    """Smooth periodic initial conditions: random Fourier sums scaled to max |u| = 1 (float64).

    The random numbers come from the torch ``generator``; the sums are computed with numpy, whose float64 ``sin``
    gives the same bits in every process (torch's vectorized one did not, in about one process out of six)."""
    x = np.arange(nx, dtype=np.float64) / nx
    k = np.arange(1, modes + 1, dtype=np.float64)
    amp = torch.randn(n, modes, generator=generator, dtype=torch.float64).numpy() / k
    phase = torch.rand(n, modes, generator=generator, dtype=torch.float64).numpy() * 2 * math.pi
    u = (amp[:, :, None] * np.sin(2 * math.pi * k[None, :, None] * x[None, None, :] + phase[:, :, None])).sum(1)
    return torch.from_numpy(u / np.abs(u).max(axis=1, keepdims=True))


def _potential(u0: np.ndarray, m: int) -> np.ndarray:
    """The periodic antiderivative of the trigonometric interpolant of ``u0`` (batch, nx; zero mean), on ``m`` points.

    ``m`` is at least nx. For even nx the Nyquist coefficient is split evenly between +-nx/2, as usual."""
    n = u0.shape[1]
    coef = np.fft.rfft(u0, axis=1) / n
    if n % 2 == 0:
        coef[:, -1] *= 0.5
    k = np.arange(1, coef.shape[1], dtype=np.float64)
    fine = np.zeros((u0.shape[0], m // 2 + 1), dtype=np.complex128)
    fine[:, 1:coef.shape[1]] = coef[:, 1:] / (2j * math.pi * k)
    return np.fft.irfft(fine * m, n=m, axis=1)


def _heat_initial_spectrum(v0: np.ndarray, viscosity: float) -> np.ndarray:
    """Normalized rfft coefficients of phi(x, 0) = exp(-(U - max U) / (2 nu)) for zero-mean ``v0`` (batch, nx).

    The grid is nx * 2**j points, the coarsest on which the top half of the spectrum is below ``PHI_RESOLVED``
    (phi(x, 0) is entire, so the modes past the grid are far smaller still and aliasing is negligible)."""
    n = v0.shape[1]
    m = n
    while True:
        exponent = -_potential(v0, m) / (2 * viscosity)
        phi0 = np.exp(exponent - exponent.max(axis=1, keepdims=True))
        spectrum = np.fft.rfft(phi0, axis=1) / m
        if np.abs(spectrum[:, m // 4:]).max() <= PHI_RESOLVED:
            return spectrum
        if m >= max(MAX_HEAT_GRID, n):
            raise ValueError(f"viscosity {viscosity} too small: exp(-U / (2 nu)) is not resolved on {m} points")
        m *= 2


def solve_burgers(u0: torch.Tensor, viscosity: float, t_final: float) -> torch.Tensor:
    """The exact solution at ``t_final`` of periodic viscous Burgers on [0, 1) from ``u0`` (batch, nx) on the grid.

    Cole-Hopf (see the module docstring): computed in float64 with numpy's FFT (pocketfft gives the same bits in
    every process; torch's MKL FFT did not, which changed the float32 answers, and with them the hash of the
    evaluation's questions, in about one process out of ten), returned as a tensor of ``u0``'s dtype. Raises
    ``ValueError`` for a non-positive viscosity, a negative time, or a viscosity too small for float64 to resolve
    phi."""
    if viscosity <= 0 or t_final < 0:
        raise ValueError(f"need viscosity > 0 and t_final >= 0, got {viscosity} and {t_final}")
    v0 = u0.detach().cpu().to(torch.float64).numpy()
    n = v0.shape[1]
    mean = v0.mean(axis=1, keepdims=True)
    spectrum = _heat_initial_spectrum(v0 - mean, viscosity)
    m = 2 * (spectrum.shape[1] - 1)
    wave = 2j * math.pi * np.arange(spectrum.shape[1], dtype=np.float64)
    spectrum = spectrum * m * np.exp((viscosity * wave**2 - wave * mean) * t_final)  # heat flow, Galilean shift
    phi = np.fft.irfft(spectrum, n=m, axis=1)
    if bool((phi.min(axis=1) < PHI_RANGE * phi.max(axis=1)).any()):
        raise ValueError(f"viscosity {viscosity} too small at t_final {t_final}: phi spans more than float64 resolves")
    phi_x = np.fft.irfft(wave * spectrum, n=m, axis=1)
    u = mean - 2 * viscosity * phi_x[:, :: m // n] / phi[:, :: m // n]
    return torch.from_numpy(u).to(u0.dtype)


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
    """``n`` held-out questions: ``question`` is u(x, 0) on the grid, ``answer`` the exact u(x, T).

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
    uses_profile = False  # numbers, not conversations
    defaults = BURGERS

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

    def validation_metrics(self) -> tuple[str, ...]:
        return ("val_loss", "nrmse")

    def default_questions(self, data: dict) -> list[dict]:
        return eval_questions(BurgersData(**data))

    def validation_questions(self, data: dict, cache_dir: Path | None = None) -> list[dict]:
        """The validation samples as questions (u(x, 0) -> u(x, T)): their pooled NRMSE is ``nrmse``."""
        val = self.build_data(data, cache_dir).val
        return [{"id": i, "question": u0.tolist(), "answer": uT.tolist()}
                for i, (u0, uT) in enumerate(zip(*val, strict=True))]

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
