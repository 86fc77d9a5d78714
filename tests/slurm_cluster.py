"""A one-node Slurm cluster in a temp folder, for the tests and the benchmark.

``slurmctld -D -c -i`` and ``slurmd -D`` as root without systemd (Debian's slurm-wlm, Slurm 22.05),
no authentication (auth/none), the node line from ``slurmd -C``, fast scheduling (a trivial job
completes in about a second) and ``cred_expire=5`` (a requeued job runs again in about 7 s instead
of 2 minutes). ``SLURM_CONF`` in :attr:`Cluster.env` points the client commands (sbatch, squeue,
scontrol) to it. Always :meth:`stop` (it cancels every job and waits before stopping the daemons).

    python tests/slurm_cluster.py DIR   # start one by hand; prints the export line; Ctrl-C stops it
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel")


def missing() -> str | None:
    """Why no cluster can be started here (None when one can)."""
    lacking = [c for c in (*DAEMONS, *CLIENTS) if shutil.which(c) is None]
    if lacking:
        return f"Slurm not installed ({', '.join(lacking)} missing; `make test-slurm` installs slurm-wlm)"
    if os.geteuid() != 0:
        return "the one-node Slurm cluster runs its daemons as root; not root here"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_line() -> str:
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30, check=True).stdout
    first = out.splitlines()[0]
    fields = [f for f in first.split() if not f.startswith("UpTime=")]
    return " ".join(fields) + " State=UNKNOWN"


class Cluster:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.conf = self.folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[subprocess.Popen] = []

    def write_conf(self) -> None:
        f = self.folder
        for d in ("state", "spool", "log"):
            (f / d).mkdir(parents=True, exist_ok=True)
        node = node_line()
        name = node.split()[0].split("=", 1)[1]
        host = socket.gethostname()
        self.conf.write_text("\n".join([
            "ClusterName=trainkit",
            f"SlurmctldHost={host}",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/none",
            "CredType=cred/none",
            "AuthInfo=cred_expire=5",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SwitchType=switch/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=1000",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "KillWait=30",
            "MinJobAge=300",
            "MaxJobCount=100000",
            f"StateSaveLocation={f / 'state'}",
            f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}",
            f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={f / 'log' / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            node,
            f"PartitionName=debug Nodes={name} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))

    def start(self, timeout: float = 60.0) -> Cluster:
        self.write_conf()
        log = open(self.folder / "log" / "daemons.out", "ab")
        try:
            self.procs.append(subprocess.Popen(["slurmctld", "-D", "-c", "-i", "-f", str(self.conf)], env=self.env,
                                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            time.sleep(0.5)
            self.procs.append(subprocess.Popen(["slurmd", "-D", "-f", str(self.conf)], env=self.env,
                                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                break
            res = self.run("sinfo", "-h", "-o", "%T", check=False)
            if res.returncode == 0 and res.stdout.strip() in ("idle", "mixed", "allocated"):
                return self
            time.sleep(0.5)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"the one-node Slurm cluster did not come up:\n{tail}")

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout, check=check)

    def jobs(self) -> dict[int, str]:
        """Every job squeue shows: {job id: state}."""
        out = self.run("squeue", "-h", "-o", "%i %T", check=False).stdout
        return {int(j): s for j, s in (line.split() for line in out.splitlines() if line.strip())}

    def cancel_all(self, timeout: float = 60.0) -> None:
        self.run("scancel", "--user=root", check=False)
        deadline = time.monotonic() + timeout
        while self.jobs() and time.monotonic() < deadline:
            time.sleep(0.3)

    def log_tail(self, n: int = 40) -> str:
        out = []
        for name in ("daemons.out", "slurmctld.log", "slurmd.log"):
            p = self.folder / "log" / name
            if p.exists():
                out.append(f"--- {name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-n:]))
        return "\n".join(out)

    def stop(self) -> None:
        if any(p.poll() is None for p in self.procs):
            self.cancel_all()
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()


if __name__ == "__main__":
    why = missing()
    if why:
        sys.exit(why)
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/trainkit-slurm")
    folder.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(folder).start()
    print(f"export SLURM_CONF={cluster.conf}", flush=True)
    try:
        while all(p.poll() is None for p in cluster.procs):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
