"""Two runs on one machine: oversubscribed threads against core claims, as a table.

    python benchmarks/threads.py [--algo idql] [--task pointmaze-umaze] [--steps 1500]

Runs the same short ``bench.run`` (``--steps`` updates, no periodic evaluation, 2 final episodes)
in four ways and prints the training steps/s each run recorded and the wall time until both
finished: one run alone (``threads=auto``: every core); two at once the way they ran before core
claims (each takes every core: separate claim folders, so neither sees the other); two at once with
``threads=auto`` sharing one claim folder (the second waits for a free core); and two at once with
``threads=1`` each (a sweep's ``cpus_per_task=1``). Ratios are against the run alone. Each run is a
separate process with its own results folder; forged data is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def launch(args, tag: str, root: Path, threads: str, slots: Path) -> subprocess.Popen:
    """One ``bench.run`` in the background, its records under ``root / tag``."""
    cmd = [
        sys.executable,
        "-m",
        "bench.run",
        f"algo={args.algo}",
        f"task={args.task}",
        f"train.steps={args.steps}",
        "train.eval_every=0",
        "eval.episodes=2",
        "device=cpu",
        f"threads={threads}",
        f"results_dir={root / tag}",
    ]
    env = {**os.environ, "DIFFRL_CORE_SLOTS": str(slots)}
    env.pop("OMP_NUM_THREADS", None)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def steps_per_s(root: Path) -> float:
    (path,) = root.rglob("record.json")
    return json.loads(path.read_text())["timings"]["train_steps_per_s"]


def scenario(args, root: Path, name: str, runs: list[tuple[str, str]]) -> dict:
    """Start ``runs`` (threads, claim folder) together; their steps/s and the wall time."""
    start = time.perf_counter()
    procs = [
        launch(args, f"{name}-{i}", root, threads, root / slots)
        for i, (threads, slots) in enumerate(runs)
    ]
    if any(p.wait() for p in procs):
        raise SystemExit(f"{name}: a run failed")
    wall = time.perf_counter() - start
    return {
        "name": name,
        "steps": [steps_per_s(root / f"{name}-{i}") for i in range(len(runs))],
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algo", default="idql")
    parser.add_argument("--task", default="pointmaze-umaze")
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scenario(args, root, "warm-up (forges the data; not reported)", [("auto", "s0")])
        rows = [
            scenario(args, root, "one run alone, threads=auto", [("auto", "s1")]),
            scenario(
                args,
                root,
                "two at once, every core each (no claims)",
                [("auto", "a"), ("auto", "b")],
            ),
            scenario(
                args, root, "two at once, threads=auto (claims)", [("auto", "c"), ("auto", "c")]
            ),
            scenario(args, root, "two at once, threads=1 each", [("1", "d"), ("1", "d")]),
        ]
    alone = rows[0]["wall"]
    table = Table(title=f"{args.algo} on {args.task}, {args.steps} steps, {os.cpu_count()} cores")
    for col in ("scenario", "train steps/s of each run", "wall for all runs (s)", "wall / alone"):
        table.add_column(col)
    for row in rows:
        speeds = ", ".join(f"{s:.1f}" for s in row["steps"])
        table.add_row(row["name"], speeds, f"{row['wall']:.0f}", f"{row['wall'] / alone:.2f}")
    Console().print(table)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
