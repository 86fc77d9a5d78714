"""The built-in burgers task: a correct solver, deterministic cached data, a model that learns."""

from __future__ import annotations

import math

import pytest
import torch

from trainkit.tasks import burgers
from trainkit.tasks.burgers import BurgersData, BurgersTask, generate, random_initial_conditions, solve_burgers


def hopf_reference(u0: torch.Tensor, modes: int, viscosity: float, t: float, points: int = 1024) -> torch.Tensor:
    """Exact u(x, t) on the grid by quadrature of the Hopf formula on the whole line, independent of the module.

    u(x, t) = int (x - y) / t * w dy / int w dy,  w = exp(-(U(y) + (x - y)^2 / (2 t)) / (2 nu)),  U' = u0,
    with U = mean * y + (its periodic part from the first ``modes`` Fourier modes), the trapezoid rule on
    ``points`` nodes per period over [-1, 2) (at these settings the weights outside are below exp(-40))."""
    b, nx = u0.shape
    coef = torch.fft.rfft(u0.double(), dim=1)[:, : modes + 1] / nx
    k = torch.arange(1, modes + 1, dtype=torch.float64)
    y = torch.arange(-points, 2 * points, dtype=torch.float64) / points
    waves = torch.exp(2j * math.pi * k[:, None] * y[None, :])                      # (modes, ny)
    periodic = 2 * ((coef[:, 1:] / (2j * math.pi * k)) @ waves).real              # (b, ny)
    potential = coef[:, :1].real * y + periodic
    d = torch.arange(nx, dtype=torch.float64)[:, None] / nx - y[None, :]           # x - y, (nx, ny)
    w = torch.softmax(-(potential[:, None, :] + d**2 / (2 * t)) / (2 * viscosity), dim=-1)
    return (w * d / t).sum(-1)


def relative_l2(pred: torch.Tensor, exact: torch.Tensor) -> float:
    """||pred - exact|| / ||exact|| pooled over all samples."""
    return float((pred.double() - exact).norm() / exact.norm())


def test_solver_conserves_mass_and_dissipates_energy():
    # the exact solution conserves the integral of u; on a fine grid the samples' mean is that integral
    u0 = random_initial_conditions(8, 512, 4, torch.Generator().manual_seed(1))
    uT = solve_burgers(u0, viscosity=0.01, t_final=0.3)
    assert torch.allclose(uT.mean(1), u0.mean(1), atol=1e-10)
    assert bool((uT.pow(2).sum(1) < u0.pow(2).sum(1)).all())   # viscosity removes energy
    assert uT.abs().max() <= u0.abs().max() + 1e-9              # no new extrema (maximum principle)


def test_solver_converges_under_refinement():
    x = torch.arange(256, dtype=torch.float64) / 256
    fine = solve_burgers(torch.sin(2 * torch.pi * x)[None], 0.05, 0.2)[0]
    coarse = solve_burgers(torch.sin(2 * torch.pi * x[::4])[None], 0.05, 0.2)[0]
    err = (coarse - fine[::4]).abs().max()
    assert err < 0.02


@pytest.mark.parametrize("nx", [64, 32])
def test_targets_match_the_exact_solution(nx):
    cfg = BurgersData(n_train=12, n_val=4, nx=nx)  # the defaults otherwise: viscosity 0.01, t_final 0.3, 4 modes
    out = generate(cfg)
    exact = hopf_reference(out["u0"], cfg.modes, cfg.viscosity, cfg.t_final)
    assert relative_l2(out["uT"], exact) <= 1e-3


def test_solver_handles_a_nonzero_mean():
    u0 = random_initial_conditions(4, 64, 4, torch.Generator().manual_seed(2)) + 0.3
    exact = hopf_reference(u0, 4, 0.01, 0.3)
    assert relative_l2(solve_burgers(u0, 0.01, 0.3), exact) <= 1e-6


def test_solver_refuses_what_float64_cannot_resolve():
    u0 = random_initial_conditions(4, 64, 4, torch.Generator().manual_seed(0))
    for viscosity, t_final in [(0.0, 0.3), (0.01, -1.0), (0.002, 0.3)]:
        with pytest.raises(ValueError):
            solve_burgers(u0, viscosity, t_final)


def test_cache_key_depends_on_the_solver_version(monkeypatch):
    cfg = BurgersData()
    key = burgers._cache_key(cfg)
    monkeypatch.setattr(burgers, "SOLVER_VERSION", 1)
    assert burgers._cache_key(cfg) != key


def test_data_deterministic_and_cached(tmp_path):
    task = BurgersTask()
    small = {"n_train": 32, "n_val": 8, "nx": 16}
    full = {**BurgersData().__dict__, **small}
    a = task.build_data(full, tmp_path)
    assert len(list(tmp_path.glob("burgers-*.pt"))) == 1
    b = task.build_data(full, tmp_path)  # from the cache
    c = task.build_data(full, None)      # regenerated
    for x, y, z in zip(a.train + a.val, b.train + b.val, c.train + c.val, strict=True):
        assert torch.equal(x, y) and torch.equal(x, z)
    other = task.build_data({**full, "seed": 1}, tmp_path)
    assert not torch.equal(a.train[0], other.train[0])
    next(tmp_path.glob("burgers-*.pt")).write_bytes(b"damaged")
    d = task.build_data(full, tmp_path)
    assert torch.equal(a.train[0], d.train[0])


def test_generate_shapes():
    out = generate(BurgersData(n_train=4, n_val=2, nx=16))
    assert out["u0"].shape == out["uT"].shape == (6, 16) and out["u0"].dtype == torch.float32


@pytest.mark.slow
def test_default_questions_are_the_same_bits_in_every_process():
    """The evaluation's plan is identified by the hash of its questions and answers: a resume in another
    process must find the same hash. torch's vectorized float64 ``sin`` and MKL FFT gave other last bits in
    about one process out of six, which changed some float32 answers and refused the resume."""
    import subprocess
    import sys

    code = ("from trainkit.tasks.burgers import eval_questions, BurgersData\n"
            "from trainkit.evaluation.plan import questions_hash\n"
            "print(questions_hash(eval_questions(BurgersData(n_train=256, n_val=64, nx=32))))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(10)]
    hashes = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert len(hashes) == 1 and all(len(h) == 64 for h in hashes), hashes
