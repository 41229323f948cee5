"""How long ``budget=quick`` takes, per algorithm on its default task, as a table.

    python benchmarks/quick.py [--algos bc,iql,...] [--threads 2]
    python benchmarks/quick.py --algos iql --augment diffstitch,synther


Each algorithm runs ``python -m bench.run algo=<name> budget=quick`` (its stated quick settings:
``bench/conf/budget/quick.yaml`` and ``bench/conf/budget_algo/quick-<name>.yaml``) in its own
process with its own results folder, after the task's data is forged (forging is a one-time cost,
not part of a quick run). The default task is the configuration's (``pointmaze-umaze``) except
where an algorithm needs another kind (:data:`DEFAULT_TASKS`): the safe planners need
constraints (SafeDiffuser on ``obstacles-pointmaze-umaze``, TREBI on ``safe-pendulum``), the
multi-agent ones ``mpe-spread-medium``, the online ones ``hopper-medium-v2``. Printed per algorithm: the run's training steps,
final episodes, wall seconds (process start to exit: imports, data loading, training, periodic
and final evaluation, record), the record's training seconds and steps/s, decisions/s, and its
normalized score. The target of issue 17 is under 600 s on 2 cores for every algorithm.

``--augment`` times each listed algorithm once per augmentation (``augment=<name>``, on
:data:`AUGMENT_TASK`) with the augmentation built inside the timed run, as a first run builds it:
the run sees a fresh data root that links every forged file of the real one but not its
augmentation cache, so no earlier build is reused and none is left behind.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import hydra
from rich.console import Console
from rich.table import Table

import algorithms
import bench.run  # noqa: F401  (registers the algo= options)
from tasks.forge import data_root
from tasks.registry import get_task
from tasks.sources import load_dataset

# Algorithms whose checks refuse the configuration's default task, and the task they run on:
# the safe planners need constraints, the multi-agent ones a multi-agent task, and the online
# ones the locomotion task their paper fine-tunes on.
MULTI_AGENT = dict.fromkeys(("madiff", "ma_bc", "ma_td3bc"), "mpe-spread-medium")
ONLINE = dict.fromkeys(("dppo", "gaussian_ppo", "drwr", "dawr"), "hopper-medium-v2")
DEFAULT_TASKS = {
    "safediffuser": "obstacles-pointmaze-umaze",
    "trebi": "safe-pendulum",
    **MULTI_AGENT,
    **ONLINE,
}
AUGMENT_TASK = "hopper-medium-v2"  # the D4RL kind of task DiffStitch's paper augments
TARGET_SECONDS = 600


def quick_config(algo: str, task: str):
    """The composed quick configuration of ``algo`` on ``task``."""
    with hydra.initialize_config_module("bench.conf", version_base="1.3"):
        return hydra.compose("config", overrides=[f"algo={algo}", f"task={task}"])


def run_task(algo: str, augment: str) -> str:
    """The task ``algo``'s quick run is timed on (:data:`DEFAULT_TASKS`, :data:`AUGMENT_TASK`)."""
    if augment != "none":
        return AUGMENT_TASK
    return DEFAULT_TASKS.get(algo, quick_config(algo, "pointmaze-umaze").task)


def forge_first(algo: str, task: str) -> None:
    """Forge the data a quick run of ``algo`` reads, so that the timed run only reads it."""
    cfg = quick_config(algo, task)
    load_dataset(get_task(task), scale=cfg.data.scale, forge_seed=cfg.data.forge_seed)


def data_root_without_cache(tmp: Path) -> Path:
    """A data root under ``tmp`` that links every entry of the real one but ``augmented``."""
    root = tmp / "data"
    root.mkdir()
    for entry in data_root().iterdir():
        if entry.name != "augmented":
            (root / entry.name).symlink_to(entry.resolve())
    return root


def timed_run(
    algo: str, task: str, threads: str, root: Path, augment: str = "none"
) -> tuple[float, dict]:
    """Wall seconds of one quick run in a fresh process, and its record (with ``augment``, the
    augmentation is built inside the run, from a data root without the augmentation cache)."""
    cmd = [sys.executable, "-m", "bench.run", f"algo={algo}", f"task={task}", "device=cpu"]
    cmd += [f"threads={threads}", f"results_dir={root / 'results'}", f"augment={augment}"]
    env = dict(os.environ)
    if augment != "none":
        env["DIFFRL_DATA_DIR"] = str(data_root_without_cache(root))
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    (path,) = (root / "results").rglob("record.json")
    return wall, json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", default=",".join(algorithms.available()))
    parser.add_argument("--threads", default="auto")
    parser.add_argument("--augment", default="none", help="comma-separated augmentations")
    args = parser.parse_args()
    table = Table(
        "algo", "augment", "task", "steps", "episodes", "wall s", "train s", "steps/s", "decisions/s",
        "normalized", f"< {TARGET_SECONDS} s",
    )  # fmt: skip
    console = Console()
    runs = itertools.product(args.algos.split(","), args.augment.split(","))
    for algo, augment in runs:
        task = run_task(algo, augment)
        forge_first(algo, task)
        with tempfile.TemporaryDirectory() as tmp:
            wall, rec = timed_run(algo, task, args.threads, Path(tmp), augment)
        timings, final = rec["timings"], rec["final"] or {}
        row = (
            algo,
            augment,
            task,
            str(rec["budget"]["train_steps"]),
            str(rec["budget"]["eval_episodes"]),
            f"{wall:.0f}",
            f"{timings['train_seconds']:.0f}",
            f"{timings['train_steps_per_s']:.1f}",
            f"{timings['decisions_per_s'] or 0:.0f}",
            f"{final.get('normalized_mean', float('nan')):.1f}",
            "yes" if wall < TARGET_SECONDS else "NO",
        )
        table.add_row(*row)
        console.print(" | ".join(row), f"(load average {os.getloadavg()[0]:.1f})")
    console.print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    console.print(table)


if __name__ == "__main__":
    main()
