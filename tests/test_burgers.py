"""The built-in burgers task: a correct solver, deterministic cached data, a model that learns."""

from __future__ import annotations

import torch

from trainkit.tasks.burgers import BurgersData, BurgersTask, generate, random_initial_conditions, solve_burgers


def test_solver_conserves_mass_and_dissipates_energy():
    u0 = random_initial_conditions(8, 64, 4, torch.Generator().manual_seed(1))
    uT = solve_burgers(u0, viscosity=0.01, t_final=0.3)
    assert torch.allclose(uT.mean(1), u0.mean(1), atol=1e-10)  # periodic conservative scheme
    assert bool((uT.pow(2).sum(1) < u0.pow(2).sum(1)).all())   # viscosity removes energy
    assert uT.abs().max() <= u0.abs().max() + 1e-9              # no new extrema (maximum principle)


def test_solver_converges_under_refinement():
    x = torch.arange(256, dtype=torch.float64) / 256
    fine = solve_burgers(torch.sin(2 * torch.pi * x)[None], 0.05, 0.2)[0]
    coarse = solve_burgers(torch.sin(2 * torch.pi * x[::4])[None], 0.05, 0.2)[0]
    err = (coarse - fine[::4]).abs().max()
    assert err < 0.02


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
