"""Training steps/s and evaluation decisions/s of each algorithm on one task, as a table.

    python benchmarks/train_speed.py [--task pointmaze-umaze] [--algos bc,iql,idql] [--steps 300]

Each algorithm trains ``--steps`` updates after ``--warmup`` untimed ones on the task's dataset
(forged at ``--scale`` if needed), then acts for ``--envs`` environments at once: ``act only`` times
``agent.act`` on a fixed batch of dataset states, ``eval`` times a whole vectorized evaluation
(environment stepping included). Ratios are against the first algorithm listed, measured in the
same process. The machine and library versions head the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

import algorithms
from bench.data import make_sampler
from bench.evaluate import evaluate
from bench.run import build_agent, library_versions, task_info
from tasks.registry import get_task
from tasks.sources import load_dataset


def time_updates(agent, sampler, steps: int, warmup: int) -> float:
    """Updates per second, after ``warmup`` untimed updates, ending on a host sync."""
    for _ in range(warmup):
        agent.update(sampler.sample())
    t0 = time.perf_counter()
    for _ in range(steps):
        out = agent.update(sampler.sample())
    float(next(iter(out.values())))  # wait for queued device work before stopping the clock
    return steps / (time.perf_counter() - t0)


def time_act(agent, obs: np.ndarray, calls: int) -> float:
    """Decisions per second of ``agent.act`` on a batch of ``len(obs)`` environments."""
    agent.act(obs)
    t0 = time.perf_counter()
    for _ in range(calls):
        agent.act(obs)
    return calls * len(obs) / (time.perf_counter() - t0)


def measure(name: str, task: str, args, dataset, spec) -> dict:
    module = algorithms.load(name)
    torch.manual_seed(0)
    algo_cfg = OmegaConf.structured(module.Config)
    info = task_info(spec, dataset)
    device = torch.device(args.device)
    agent, _ = build_agent(module, algo_cfg, info, dataset, device, steps=args.steps + args.warmup)
    sampler = make_sampler(dataset, agent.data_spec, device, seed=0)
    steps_per_s = time_updates(agent, sampler, args.steps, args.warmup)
    rng = np.random.default_rng(0)
    obs = dataset.arrays["observations"][rng.integers(len(dataset), size=args.envs)]
    act_per_s = time_act(agent, obs.astype(np.float32), args.act_calls)
    result = evaluate(agent, spec, args.envs, 0, dataset.ref_min_score, dataset.ref_max_score)
    eval_seconds = result.act_seconds
    return {
        "algo": name,
        "batch": agent.data_spec.batch_size,
        "steps_per_s": steps_per_s,
        "act_decisions_per_s": act_per_s,
        "eval_decisions_per_s": result.decisions / max(eval_seconds, 1e-9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="pointmaze-umaze")
    parser.add_argument("--algos", default="bc,iql,idql")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--envs", type=int, default=50)
    parser.add_argument("--act-calls", type=int, default=20)
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    spec = get_task(args.task)
    dataset = load_dataset(spec, scale=args.scale, verbose=False)
    rows = [measure(a, args.task, args, dataset, spec) for a in args.algos.split(",")]

    console = Console()
    versions = library_versions()
    console.print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}, device {args.device}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    console.print(
        f"task {args.task} ({dataset.provenance.source}, {len(dataset):,} transitions); "
        f"{args.steps} timed updates; {args.envs} envs"
    )
    table = Table("algo", "batch", "train steps/s", "x ref", "act decisions/s", "eval decisions/s")
    ref = rows[0]["steps_per_s"]
    for r in rows:
        table.add_row(
            r["algo"],
            str(r["batch"]),
            f"{r['steps_per_s']:.1f}",
            f"{r['steps_per_s'] / ref:.2f}",
            f"{r['act_decisions_per_s']:.0f}",
            f"{r['eval_decisions_per_s']:.0f}",
        )
    console.print(table)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
