"""Eager against ``torch.compile``d networks (the harness's ``compile=true``), as a table.

    python benchmarks/compile.py [--task pointmaze-umaze] [--algos bc,td3bc,iql,idql,diffuser]
        [--steps 200] [--device cpu]

Per algorithm, two agents of its default Config on the task's data, built alike from the same
seed: one eager, one whose declared networks are compiled in place as ``compile=true`` does
(:func:`bench.run.compile_networks`: inductor; CUDA graphs through ``mode="reduce-overhead"`` on a
GPU). Each trains ``--steps`` timed updates after ``--warmup`` untimed ones (the compiled agent's
first update and first ``act`` include compilation, shown apart as ``compile s``), then ``act``
decides for ``--envs`` environments ``--act-calls`` times. Ratios are compiled / eager, both
measured in this process. The default of ``compile`` follows this table.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

import algorithms
from bench.data import make_sampler
from bench.run import build_agent, compile_networks, library_versions, task_info
from benchmarks.train_speed import time_act, time_updates
from tasks.registry import get_task
from tasks.sources import load_dataset

# Small settings so that the planners' eager and compiled runs both fit minutes on a CPU.
PLANNER = {"dim": 16, "dim_mults": (1, 2, 4), "n_diffusion_steps": 8, "horizon": 32}


def agent_of(name: str, args, spec, dataset, compiled: bool):
    """``name``'s agent (and sampler) on the task, its networks compiled when ``compiled``;
    returns the seconds compilation took (first update and first ``act``, timed apart)."""
    module = algorithms.load(name)
    fields = {f for f in module.Config.__dataclass_fields__}
    overrides = {k: v for k, v in PLANNER.items() if k in fields and args.small_planners}
    algo_cfg = OmegaConf.merge(OmegaConf.structured(module.Config), overrides)
    torch.manual_seed(0)
    device = torch.device(args.device)
    info = task_info(spec, dataset)
    agent, _ = build_agent(module, algo_cfg, info, dataset, device, steps=args.steps + 10)
    sampler = make_sampler(dataset, agent.data_spec, device, seed=0)
    seconds = 0.0
    if compiled:
        compile_networks(agent, device)
        start = time.perf_counter()
        float(next(iter(agent.update(sampler.sample()).values())))
        agent.act(dataset.arrays["observations"][: args.envs].astype(np.float32))
        agent.reset()
        seconds = time.perf_counter() - start
    return agent, sampler, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="pointmaze-umaze")
    parser.add_argument("--algos", default="bc,td3bc,iql,idql,diffuser")
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--envs", type=int, default=20)
    parser.add_argument("--act-calls", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--small-planners", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = get_task(args.task)
    dataset = load_dataset(spec, scale=args.scale, verbose=False)
    obs = dataset.arrays["observations"][: args.envs].astype(np.float32)
    table = Table(
        "algo", "eager steps/s", "compiled steps/s", "x", "eager decisions/s",
        "compiled decisions/s", "x", "compile s",
    )  # fmt: skip
    for name in args.algos.split(","):
        rows = []
        for compiled in (False, True):
            agent, sampler, seconds = agent_of(name, args, spec, dataset, compiled)
            steps = time_updates(agent, sampler, args.steps, args.warmup)
            rows.append((steps, time_act(agent, obs, args.act_calls), seconds))
        (eager_s, eager_d, _), (comp_s, comp_d, seconds) = rows
        table.add_row(
            name, f"{eager_s:.1f}", f"{comp_s:.1f}", f"{comp_s / eager_s:.2f}",
            f"{eager_d:.0f}", f"{comp_d:.0f}", f"{comp_d / eager_d:.2f}", f"{seconds:.0f}",
        )  # fmt: skip
    console = Console()
    versions = library_versions()
    console.print(
        f"device {args.device}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    console.print(f"task {args.task} ({len(dataset):,} transitions); planners: {PLANNER}")
    console.print(table)


if __name__ == "__main__":
    main()
