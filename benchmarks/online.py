"""Online fine-tuning speed: environment steps/s of one iteration, split into simulation, sampling
and update, with synchronous and asynchronous vector envs, as a table.

    python benchmarks/online.py [--task hopper-medium-v2] [--algos dppo,gaussian_ppo]
        [--envs 10] [--decisions 50] [--vector sync,async] [--iterations 2]

Each algorithm is built on the task's dataset (forged at ``--scale`` if needed; not pre-trained:
only the time is measured), starts its online phase in ``--envs`` environments
(:func:`tasks.online_envs.make_online_vector_env`, ``sync``: one process steps every env in
turn; ``async``: one process per env), and runs ``--iterations`` iterations of ``--decisions``
decisions per env through the harness's own loop (:func:`bench.online.collect`, then
``agent.improve``); the first is a warm-up. Simulation is the time in vector-env steps and
resets, sampling the time in ``agent.explore``, update the time in ``agent.improve``. Env
steps count ``envs x act_steps`` per decision, as the harness counts them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import numpy as np
import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

import algorithms
from bench.online import Clock, Collector, collect
from bench.run import build_agent, library_versions, task_info
from tasks.online_envs import make_online_vector_env
from tasks.registry import get_task
from tasks.sources import load_dataset


def measure(name: str, vector: str, args, dataset, spec) -> dict:
    """One algorithm with one kind of vector env: seconds per timed iteration, by part."""
    module = algorithms.load(name)
    torch.manual_seed(0)
    algo_cfg = OmegaConf.structured(module.Config(rollout_steps=args.decisions))
    agent, _ = build_agent(
        module, algo_cfg, task_info(spec, dataset), dataset, torch.device(args.device), steps=1
    )
    agent.start_online(args.envs)
    online = agent.online_spec
    envs = make_online_vector_env(spec, args.envs, online.act_steps, vector == "async")
    try:
        obs, _ = envs.reset(seed=list(range(args.envs)))
        collector = Collector(envs, np.asarray(obs, np.float32), np.ones(args.envs, dtype=bool))
        clock = Clock()
        for i in range(args.iterations):
            if i == 1:  # the first iteration warms up
                clock = Clock()
            rollout, _ = collect(agent, collector, clock)
            tick = time.perf_counter()
            losses = agent.improve(rollout)
            float(next(iter(losses.values())))  # queued device work ends before the clock stops
            clock.update += time.perf_counter() - tick
    finally:
        envs.close()
    timed = max(args.iterations - 1, 1)
    steps = timed * args.envs * online.act_steps * online.rollout_steps
    return {"algo": name, "vector": vector, "steps": steps, **dataclasses.asdict(clock)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="hopper-medium-v2")
    parser.add_argument("--algos", default="dppo,gaussian_ppo")
    parser.add_argument("--envs", type=int, default=10)
    parser.add_argument("--decisions", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--vector", default="sync,async")
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    spec = get_task(args.task)
    dataset = load_dataset(spec, scale=args.scale, verbose=False)
    rows = [
        measure(a, v, args, dataset, spec)
        for a in args.algos.split(",")
        for v in args.vector.split(",")
    ]
    console = Console()
    versions = library_versions()
    console.print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}, device {args.device}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    console.print(
        f"task {args.task}; {args.envs} envs, {args.decisions} decisions per env per iteration, "
        f"{args.iterations - 1} timed iteration(s) after one warm-up"
    )
    table = Table("algo", "vector", "env steps", "env steps/s", "simulate s", "sample s")
    table.add_column("update s")
    table.add_column("simulation steps/s")
    for r in rows:
        total = r["simulate"] + r["sample"] + r["update"]
        table.add_row(
            r["algo"],
            r["vector"],
            str(r["steps"]),
            f"{r['steps'] / total:.0f}",
            f"{r['simulate']:.2f}",
            f"{r['sample']:.2f}",
            f"{r['update']:.2f}",
            f"{r['steps'] / max(r['simulate'], 1e-9):.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
