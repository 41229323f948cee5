"""Sweeps on a real single-node SLURM cluster: records, preemption and resume, dead jobs.

Slow (about a minute and a half): ``pytest -m slow tests/bench/test_slurm.py``. Skips where the
cluster cannot start (not root, slurm-wlm/munge missing); with ``CI=true`` it fails instead.
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import slurm_cluster  # noqa: F401  (fixture)

from bench import leaderboard
from bench.records import read_record

pytestmark = pytest.mark.slow

TINY = [
    "algo=bc",
    "task=toy-bandit",
    "train.eval_every=1000",
    "train.log_every=100",
    "eval.episodes=5",
    "eval.periodic_episodes=2",
    "hydra.launcher.mem_gb=null",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.timeout_min=20",
]
SWEEP_TIMEOUT_S = 540


class Sweep:
    """``python -m bench.sweep ... launcher=slurm`` running in the background."""

    def __init__(self, tmp_path: Path, *overrides: str):
        self.results = tmp_path / "results"
        self.output = tmp_path / "sweep.out"
        cmd = [sys.executable, "-m", "bench.sweep", "grid=quick", "launcher=slurm", *TINY]
        cmd += [f"results_dir={self.results}", *overrides]
        with self.output.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if self.proc.poll() is not None:
                pytest.fail(f"sweep ended before {what}:\n{self.output.read_text()}")
            time.sleep(0.2)
        self.proc.kill()
        pytest.fail(f"timed out waiting for {what}:\n{self.output.read_text()}")

    def finish(self) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=SWEEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"sweep did not finish in {SWEEP_TIMEOUT_S} s:\n{self.output.read_text()}")
        return code, self.output.read_text()

    def report(self) -> dict:
        (path,) = self.results.glob(".sweeps/*/sweep.json")
        return json.loads(path.read_text())

    def job_id(self, suffix: str = "") -> str:
        """The SLURM id of this sweep's job (``<array id>_<n>`` with ``suffix`` ``_<n>``)."""

        def submitted() -> list[str]:
            jobs = self.results.glob(f".sweeps/*/.submitit/[0-9]*{suffix}")
            return [p.name for p in jobs if p.is_dir()]

        return self.wait_for(submitted, 120, f"job{suffix} submitted")[0]


def job_in_state(cluster, job: str, state: str) -> bool:
    cmd = ["squeue", "--noheader", "--array", f"--states={state}", "--format=%i"]
    return job in (cluster.query(cmd) or "").split()


def test_two_seed_sweep_survives_preemption_and_resumes(slurm_cluster, tmp_path):  # noqa: F811
    sweep = Sweep(tmp_path, "seed=0,1", "train.steps=3000", "train.checkpoint_every=100")
    # Preempt seed 1 (array task 1) once its run has a checkpoint: submitit catches the signal and
    # requeues the job, and the requeued run must resume from that checkpoint.
    checkpoint = "toy-bandit/bc/s1-*/checkpoint.pt"
    sweep.wait_for(lambda: list(sweep.results.glob(checkpoint)), 300, "a checkpoint")
    job = sweep.job_id("_1")
    sweep.wait_for(lambda: job_in_state(slurm_cluster, job, "RUNNING"), 60, "job 1 running")
    for sig in ("SIGTERM", "USR2"):  # what SLURM sends on preemption (submitit's own simulation)
        subprocess.run(["scancel", job, f"--signal={sig}"], check=True, env=slurm_cluster.env)
    code, out = sweep.finish()
    assert code == 0, out
    assert "2 completed, 0 failed, 0 died" in out

    records = {
        p.parent.name[:2]: read_record(p)
        for p in sweep.results.glob("toy-bandit/bc/s*/record.json")
    }
    assert sorted(records) == ["s0", "s1"]
    assert all(r["status"] == "completed" and r["final"]["step"] == 3000 for r in records.values())
    assert records["s0"]["resumed"] == 0
    assert records["s1"]["resumed"] == 1
    entries = {e["index"]: e for e in sweep.report()["jobs"]}
    assert entries[1]["job_id"] == job and "seed=1" in entries[1]["overrides"]
    step = int(re.search(r"resuming from step (\d+)", Path(entries[1]["log"]).read_text()).group(1))
    assert 100 <= step < 3000 and step % 100 == 0


def test_a_job_killed_without_a_record_is_reported(slurm_cluster, tmp_path):  # noqa: F811
    sweep = Sweep(tmp_path, "seed=7", "train.steps=100000", "train.checkpoint_every=100000")
    job = sweep.job_id()
    sweep.wait_for(lambda: job_in_state(slurm_cluster, job, "RUNNING"), 120, "the job running")
    subprocess.run(["scancel", job], check=True, env=slurm_cluster.env)
    code, out = sweep.finish()
    assert code == 1, out
    assert "0 completed, 0 failed, 1 died" in out
    (entry,) = sweep.report()["jobs"]
    assert (entry["outcome"], entry["has_record"], entry["seed"]) == ("died", False, 7)
    board = leaderboard.build(sweep.results, tmp_path / "reports", plots=False)
    assert "| toy-bandit | bc | 7 | died, no record |" in board
