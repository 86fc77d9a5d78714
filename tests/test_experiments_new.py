"""`trainkit experiments new NAME` enforces the rule its help gives: letters, digits, -, _ and . (a
name with a space, a tab, `!` or `$` made a folder that every shell command then trips over)."""

from __future__ import annotations

import pytest
from helpers import trainkit


@pytest.mark.parametrize("name,bad", [
    ("my idea", "' '"),
    ("tab\tname", "'\\t'"),
    ("wow!", "'!'"),
    ("cost$", "'$'"),
    ("a;b*c", "'*', ';'"),
])
def test_names_outside_the_rule_are_refused(tmp_path, env, name, bad):
    r = trainkit("experiments", "new", name, cwd=tmp_path, env=env)
    assert r.returncode == 2, r.stdout
    assert r.stderr.strip() == (f"trainkit experiments: error: {name!r}: an experiment name may hold letters, "
                                f"digits, '-', '_' and '.' only (not {bad})")
    assert not (tmp_path / "experiments").exists() or list((tmp_path / "experiments").iterdir()) == []


@pytest.mark.parametrize("name", ["lr-sweep", "wide_2", "v1.2", "2026-11-22-given", "données"])
def test_names_within_the_rule_are_made(tmp_path, env, name):
    r = trainkit("experiments", "new", name, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    made = [p.name for p in (tmp_path / "experiments").iterdir()]
    assert len(made) == 1 and made[0].endswith(name)
