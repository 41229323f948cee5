"""A real single-node SLURM cluster on localhost for the tests (``.ci/slurm/setup.sh`` prepares it).

The ``slurm_cluster`` fixture runs the setup script in a temporary directory, starts munged,
slurmctld and ``slurmd -N localhost`` in the foreground as child processes on free ports, waits
until the node is idle, points ``SLURM_CONF`` at the cluster, and on teardown stops exactly the
daemons it started. Where the cluster cannot start (not root, packages missing, a daemon
failing) the tests skip with the reason; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SETUP = Path(__file__).resolve().parents[1] / ".ci" / "slurm" / "setup.sh"
DAEMONS = ("munged", "slurmctld", "slurmd")
READY_TIMEOUT_S = 60.0


class ClusterUnavailable(RuntimeError):
    """The cluster cannot run here; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """The daemons of one cluster in ``root``; ``env`` is what SLURM clients need."""

    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: dict[str, subprocess.Popen] = {}

    def prepare(self) -> None:
        if os.geteuid() != 0:
            raise ClusterUnavailable("the single-node SLURM cluster needs root (slurmd runs jobs)")
        ports = [str(free_port()), str(free_port())]
        done = subprocess.run(
            ["bash", str(SETUP), str(self.root), *ports], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise ClusterUnavailable(f"{SETUP.name} failed: {done.stderr.strip()[-500:]}")
        missing = [d for d in DAEMONS if shutil.which(d) is None]
        if missing:
            raise ClusterUnavailable(f"not installed: {', '.join(missing)}")

    def start(self) -> None:
        """Start munged, slurmctld and slurmd, and wait until the node takes jobs."""
        munge = self.root / "munge"
        files = {
            "key-file": self.root / "munge.key",
            "socket": munge / "munge.socket",
            "pid-file": munge / "munged.pid",
            "log-file": self.root / "log" / "munged.log",
            "seed-file": munge / "munged.seed",
        }
        self.spawn(
            "munged",
            ["munged", "--foreground", "--force", *(f"--{k}={v}" for k, v in files.items())],
        )
        self.wait_for(lambda: (munge / "munge.socket").exists(), "munged socket")
        self.spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        self.wait_for(lambda: self.query(["sinfo", "--noheader"]) is not None, "slurmctld")
        self.spawn("slurmd", ["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)])
        self.wait_for(
            lambda: (self.query(["sinfo", "--noheader", "--format=%T"]) or "").strip() == "idle",
            "idle node",
        )

    def spawn(self, name: str, cmd: list[str]) -> None:
        log = (self.root / "log" / f"{name}.out").open("w")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)

    def query(self, cmd: list[str]) -> str | None:
        """A client command's output, ``None`` when it fails."""
        done = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=30)
        return done.stdout if done.returncode == 0 else None

    def wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready():
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise ClusterUnavailable(f"no {what}: {self.logs_tail()}")
            time.sleep(0.25)

    def logs_tail(self) -> str:
        tails = []
        for name in self.procs:
            path = self.root / "log" / f"{name}.out"
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            tails.append(f"{name}: " + " / ".join(lines[-3:]))
        return "; ".join(tails)

    def stop(self) -> None:
        """Cancel this cluster's jobs, then stop the daemons this object started, newest first."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.query(["scancel", "--user", str(os.geteuid())])
            with contextlib.suppress(ClusterUnavailable):
                self.wait_for(
                    lambda: not (self.query(["squeue", "--noheader"]) or "").strip(), "empty queue"
                )
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running cluster with ``SLURM_CONF`` set for this process; skips (fails in CI) if none."""
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.prepare()
        cluster.start()
    except (ClusterUnavailable, OSError, subprocess.SubprocessError) as e:
        cluster.stop()
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"SLURM cluster unavailable in CI: {e}")
        pytest.skip(f"SLURM cluster unavailable: {e}")
    mp = pytest.MonkeyPatch()
    mp.setenv("SLURM_CONF", str(cluster.conf))
    try:
        yield cluster
    finally:
        mp.undo()
        cluster.stop()
