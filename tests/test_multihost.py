"""Many machines, one shared folder: a run written by another host is judged by its heartbeat alone
(its pid means nothing here), with up to a minute of clock skew between the hosts allowed."""

from __future__ import annotations

import socket
import time

import orjson
import pytest
from helpers import trainkit

from trainkit import status as S
from trainkit.launcher import plan
from trainkit.testing import dead_pid, synthetic_run

HERE = socket.gethostname()
OTHER = "gpu-node-17"


def status(host: str | None, hb_age: float, *, pid: int = 12345, interval: float = 5.0) -> dict:
    now = 1_000_000.0
    out = {"state": "running", "pid": pid, "heartbeat_at": now - hb_age, "started_at": now - 3600,
           "heartbeat_interval_s": interval, "current_epoch": 1, "step": 10}
    if host is not None:
        out["host"] = host
    return out


def judge(st: dict, *, host: str = HERE, pid_alive: bool = False) -> tuple[str, str]:
    return S.derive_state(st, S.Progress(1, 5), now=1_000_000.0, host=host, pid_alive=lambda p, t: pid_alive,
                          has_outputs=True)


@pytest.mark.parametrize("host,hb_age,state", [
    (OTHER, 1.0, "running"),  # fresh: a pid that is not ours is never checked here
    (OTHER, 59.0, "running"),
    (OTHER, 110.0, "running"),  # 60 s limit + up to 60 s of another host's clock skew
    (OTHER, -60.0, "running"),  # a heartbeat "from the future": that host's clock is ahead
    (OTHER, -3600.0, "running"),
    (OTHER, 121.0, "crashed"),  # stale even with the skew allowance
    (OTHER, 7200.0, "crashed"),
    (None, 100.0, "running"),  # no host recorded: heartbeat alone, as for another host
    (None, 200.0, "crashed"),
    (HERE, 1.0, "crashed"),  # this host: the pid decides (gone here)
])
def test_another_hosts_run_is_judged_by_its_heartbeat(host, hb_age, state):
    assert judge(status(host, hb_age))[0] == state


def test_this_hosts_run_gets_no_skew_allowance():
    assert judge(status(HERE, 61.0), pid_alive=True)[0] == "crashed"
    assert judge(status(HERE, 59.0), pid_alive=True)[0] == "running"


def test_the_reason_names_the_allowance_and_the_host():
    state, reason = judge(status(OTHER, 300.0))
    assert state == "crashed" and f"+ 60 s for the clock of {OTHER}" in reason


def test_the_heartbeat_interval_scales_the_limit_on_other_hosts_too():
    assert judge(status(OTHER, 149.0, interval=30.0))[0] == "running"  # 3 x 30 s + 60 s
    assert judge(status(OTHER, 151.0, interval=30.0))[0] == "crashed"


def write_status(run, **fields) -> None:
    st = orjson.loads(run.status.read_bytes())
    st.update(fields)
    run.status.write_bytes(orjson.dumps(st))


def test_a_shared_root_seen_from_this_host(tmp_path, env):
    root = tmp_path / "exp"
    now = time.time()
    # another host's live run, pid that is dead here (it lives on the other host), clock 50 s behind
    live = synthetic_run(root, "a-other-live", scores=[1.0], pid=dead_pid())
    write_status(live, host=OTHER, heartbeat_at=now - 50 - 2)
    ahead = synthetic_run(root, "b-other-ahead", scores=[1.0], pid=dead_pid())
    write_status(ahead, host=OTHER, heartbeat_at=now + 60)  # clock 60 s ahead
    skewed = synthetic_run(root, "c-other-skewed", scores=[1.0], pid=dead_pid())
    write_status(skewed, host=OTHER, heartbeat_at=now - 100)  # 60 s limit, 40 s past it: skew allowed
    stale = synthetic_run(root, "d-other-stale", scores=[1.0], pid=dead_pid())
    write_status(stale, host=OTHER, heartbeat_at=now - 600)
    synthetic_run(root, "e-here-dead", scores=[1.0], pid=dead_pid())
    runs = {r.name: r for r in S.scan(root)}
    assert {n: r.state for n, r in runs.items()} == {
        "a-other-live": "running", "b-other-ahead": "running", "c-other-skewed": "running",
        "d-other-stale": "crashed", "e-here-dead": "crashed"}
    assert runs["a-other-live"].host == OTHER and runs["b-other-ahead"].heartbeat_age_s == 0.0
    assert "pid" in runs["e-here-dead"].reason and "no heartbeat" in runs["d-other-stale"].reason
    # the launcher on this host relaunches only what is crashed, never another host's live run
    assert sorted(a.name for a in plan(root)) == ["d-other-stale", "e-here-dead"]
    res = trainkit("status", root, "--json", cwd=tmp_path, env=env)
    assert res.returncode == 0
    assert {r["name"]: r["state"] for r in orjson.loads(res.stdout)}["c-other-skewed"] == "running"
