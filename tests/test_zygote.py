"""The zygote (tests/zygote.py) gives what `subprocess.run([python, "-m", module, ...])` gives: the
exit code (SystemExit's, 1 after a traceback, minus the signal), stdout and stderr apart, the
folder, environment and PYTHONPATH asked for, a timeout that kills, no zombie left, and a real
interpreter where a startup setting differs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import zygote

pytestmark = pytest.mark.skipif(not zygote.usable(dict(os.environ)), reason="no zygote on this machine")

PROBE = """
import json, os, sys, time
what = sys.argv[1]
if what == "facts":
    print(json.dumps({"cwd": os.getcwd(), "env": os.environ.get("PROBE_VALUE"), "argv0": sys.argv[0],
                      "name": __name__, "path0": sys.path[0], "pid": os.getpid(), "ppid": os.getppid(),
                      "torch": "torch" in sys.modules}))
    print("to stderr", file=sys.stderr)
elif what == "exit":
    sys.exit(int(sys.argv[2]))
elif what == "raise":
    raise ValueError("the probe raised")
elif what == "kill":
    os.kill(os.getpid(), 9)
elif what == "message":
    sys.exit("a message")
elif what == "interrupt":
    raise KeyboardInterrupt
elif what == "atexit":
    import atexit, threading
    atexit.register(lambda: print("atexit ran", flush=True))
    threading.Thread(target=lambda: (time.sleep(0.5), print("thread done", flush=True))).start()
elif what == "lines":
    import signal
    signal.signal(signal.SIGTERM, lambda *a: (print("terminated", flush=True), sys.exit(5)))
    for i in range(3):
        print(f"line {i}", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    time.sleep(60)
elif what == "sleep":
    print(os.getpid(), flush=True)
    time.sleep(60)
"""


def probe(tmp_path, *args, timeout=60, **env_over):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "probe_mod.py").write_text(textwrap.dedent(PROBE))
    env = {**os.environ, "PYTHONPATH": str(site), **env_over}
    return zygote.run("probe_mod", list(args), cwd=tmp_path, env=env, timeout=timeout)


def test_the_command_sees_its_folder_environment_path_and_argv(tmp_path):
    import json

    r = probe(tmp_path, "facts", PROBE_VALUE="v1")
    facts = json.loads(r.stdout)
    assert r.returncode == 0 and r.stderr == "to stderr\n"
    assert facts["cwd"] == str(tmp_path) and facts["env"] == "v1" and facts["name"] == "__main__"
    assert facts["argv0"].endswith("probe_mod.py") and facts["path0"] == str(tmp_path)
    assert facts["pid"] != os.getpid() and facts["torch"]  # its own process; torch already there
    again = json.loads(probe(tmp_path, "facts", PROBE_VALUE="v2").stdout)
    assert again["env"] == "v2" and again["pid"] != facts["pid"]


@pytest.mark.parametrize("args", [("exit", "3"), ("raise",), ("kill",), ("message",), ("interrupt",), ("atexit",)],
                         ids=lambda a: a[0])
def test_exit_codes_and_last_words_are_the_interpreters(tmp_path, args):
    """The same exit code, stdout and stderr as a fresh `python -m` (a traceback, a message, the
    threads joined and the atexit functions run before the end)."""
    forked = probe(tmp_path, *args)
    fresh = subprocess.run([sys.executable, "-m", "probe_mod", *args], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(tmp_path / "site")}, timeout=60)
    assert (forked.returncode, forked.stdout) == (fresh.returncode, fresh.stdout)
    assert own_frames(forked.stderr) == own_frames(fresh.stderr)


def own_frames(stderr: str) -> list[str]:
    """A traceback without the frames of the runner (runpy's, the zygote's)."""
    out, skip = [], False
    for line in stderr.splitlines():
        if skip:
            skip = False
            if line.startswith("    "):
                continue
        if line.startswith('  File "<frozen runpy>"') or line.startswith(f'  File "{zygote.__file__}"'):
            skip = True
            continue
        out.append(line)
    return out


def test_a_timeout_kills_the_command_and_leaves_no_process(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as e:
        probe(tmp_path, "sleep", timeout=3)
    assert time.monotonic() - t0 < 30
    pid = int(e.value.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # reaped by the zygote: no such process, not even a zombie
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"process {pid} still there")


def test_a_startup_setting_that_differs_is_not_forked():
    env = dict(os.environ)
    assert zygote.usable(env), zygote.differences(env)
    assert not zygote.usable({**env, "PYTHONHASHSEED": "123"})
    assert not zygote.usable({**env, "OMP_NUM_THREADS": "7"})
    assert zygote.usable({**env, "PYTHONPATH": "/elsewhere", "PYTHONUNBUFFERED": "1", "OTHER": "x"})


@pytest.mark.slow
def test_the_same_training_as_a_fresh_interpreter(tmp_path, env):
    """A short real training through the zygote and through `python -m trainkit`: the same steps."""
    from helpers import records, trainkit, write_config

    cfg = write_config(tmp_path / "cfg.yaml", epochs=2)
    forked = trainkit("train", cfg, "--run-dir", tmp_path / "a", cwd=tmp_path, env=env)
    fresh = subprocess.run([sys.executable, "-m", "trainkit", "train", cfg, "--run-dir", tmp_path / "b"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert forked.returncode == fresh.returncode == 0, forked.stderr + fresh.stderr
    key = lambda run: [(x["step"], x["loss"]) for x in records(run, "step")]  # noqa: E731
    assert key(tmp_path / "a") == key(tmp_path / "b") and key(tmp_path / "a")


def test_a_started_command_streams_its_lines_and_answers_signals_as_popen(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "probe_mod.py").write_text(textwrap.dedent(PROBE))
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = zygote.Process("probe_mod", ["lines"], cwd=tmp_path, env=env, merge=True)
    try:
        assert [proc.stdout.readline() for _ in range(4)] == ["line 0\n", "line 1\n", "line 2\n", "to stderr\n"]
        assert proc.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            proc.communicate(timeout=0.3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert (proc.returncode, out, err) == (5, "terminated\n", None)
        proc.send_signal(signal.SIGKILL)  # reaped: nothing is sent to the pid any more
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    sleeper = zygote.Process("probe_mod", ["sleep"], cwd=tmp_path, env=env, merge=True)
    sleeper.kill()
    deadline = time.monotonic() + 30
    while sleeper.poll() is None:  # poll alone sees it end
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert sleeper.returncode == -signal.SIGKILL and sleeper.wait(timeout=0) == -signal.SIGKILL
