"""Cost of SafeDiffuser's safety filter: the batched CBF-QP per denoising step, and its share of
a whole plan, as tables.

    python -m benchmarks.safe_qp [--device cpu|cuda] [--threads 1] [--repeats 5]

Table 1, one denoising step: ``maze2d-large`` (1 env x 1 plan x horizon 384, SafeDiffuser's
official size and two obstacles) and ``ceiling-hopper`` (50 envs x 64 plans x horizon 32,
Diffuser's locomotion sizes; SafeDiffuser's own locomotion branch plans 1 x 600; one
torso-height ceiling). ``filter ms`` is the whole hook (barrier
values and gradients at every planned state, the QP, writing the step back), ``QP ms`` the
solver alone on the same problems; the relaxed filter is timed at a step that relaxes (its QP
has the slack variables). Random normalized states stand in for a sample; the cost does not
depend on the network.

Table 2, whole plans of small untrained Diffusers (U-Net dim 16, 20 DDPM steps) on the same two
layouts (the locomotion one with 4 envs x 16 plans, value guidance off): ``plan ms`` per
``agent.plan`` call, ``filter share`` the time spent inside the hook over the plans' time, and
``vs none`` the plan time over method ``none``'s, measured in this process with the methods
taking turns. Medians over ``--repeats`` after one warm-up call.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from algorithms import safediffuser
from algorithms.common.contract import DatasetStats, TaskInfo
from algorithms.common.qp import project_polyhedron
from bench.run import library_versions
from tasks.registry import MAZE2D_LARGE_OBSTACLES, TORSO_CEILING
from tasks.safety import Ceiling

QP_METHODS = ("robust", "relaxed", "time-varying")
PLAN_METHODS = ("none", *QP_METHODS, "truncate", "gradient-push")


@dataclasses.dataclass(frozen=True)
class Case:
    """A task layout and the batch one denoising step filters: ``[envs, plans, horizon, C]``."""

    name: str
    info: TaskInfo
    stats: DatasetStats
    envs: int
    plans: int
    horizon: int


def make_stats(mean: list[float], std: list[float], act_dim: int) -> DatasetStats:
    """Statistics of data spread uniformly over mean +- 2 std (actions over [-1, 1])."""
    mean_, std_ = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    unit = np.linspace(-1.0, 1.0, 1001, dtype=np.float32)[:, None]
    return DatasetStats(
        mean_,
        std_,
        np.zeros(act_dim, np.float32),
        np.ones(act_dim, np.float32),
        0.0,
        1.0,
        0.0,
        1.0,
        1000,
        10,
        obs_quantiles=mean_ + 2 * std_ * unit,
        act_quantiles=np.repeat(unit, act_dim, axis=1),
    )


# Stats: roughly those of the maze2d-large data (positions over the 9 x 12 maze).
MAZE = Case(
    "maze2d-large",
    TaskInfo(
        "obstacles-maze2d-large-v1",
        "maze",
        4,
        2,
        barriers=MAZE2D_LARGE_OBSTACLES,
        dataset_task="maze2d-large-v1",
    ),
    make_stats([3.7, 5.0, 0.0, 0.0], [1.9, 2.8, 1.5, 1.5], 2),
    envs=1,
    plans=1,
    horizon=384,
)
HOPPER_STD = [0.1, 0.1, *[0.5] * 9]  # rootz first
CEILING = Case(
    "ceiling-hopper",
    TaskInfo(
        "ceiling-hopper-medium-v2",
        "locomotion",
        11,
        3,
        barriers=(Ceiling(dim=0, limit=TORSO_CEILING["hopper"]),),
    ),
    make_stats([1.3, *[0.0] * 10], HOPPER_STD, 3),
    envs=50,
    plans=64,
    horizon=32,
)


def median_ms(
    fn: Callable[[], object], repeats: int, device: torch.device, warm_up: bool = True
) -> float:
    """Median wall time of ``fn()`` in ms over ``max(repeats, 1)`` calls, after one warm-up call
    unless ``warm_up`` is False (synchronizing on CUDA)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if warm_up:
        fn()
    times = []
    for _ in range(max(repeats, 1)):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(1e3 * (time.perf_counter() - start))
    return float(np.median(times))


def make_agent(case: Case, method: str, device: torch.device, **fields) -> safediffuser.Agent:
    cfg = safediffuser.Config(
        horizon=case.horizon,
        n_diffusion_steps=20,
        dim=16,
        dim_mults=(1, 2, 4),
        method=method,
        **fields,
    )
    return safediffuser.Agent(cfg, case.info, case.stats, device, 0)


def step_row(case: Case, method: str, device: torch.device, repeats: int) -> list[str]:
    agent = make_agent(case, method, device)
    shape = (case.envs, case.plans, case.horizon, agent.planner.transition_dim)
    g = torch.Generator(device=device).manual_seed(0)
    x_t = torch.randn(shape, generator=g, device=device)
    x_prev = x_t + 0.3 * torch.randn(shape, generator=g, device=device)
    t = agent.cfg.relax_until  # a relaxing step for ``relaxed``
    hook = agent.projection()
    filter_ms = median_ms(lambda: hook(x_prev, x_t, t), repeats, device)
    problem = agent.cbf_problem(x_prev, x_t, t)
    qp_ms = median_ms(lambda: project_polyhedron(*problem), repeats, device)
    states = case.envs * case.plans * case.horizon
    m, n = problem[1].shape[1:]
    return [
        case.name,
        method,
        f"{states:,}",
        f"{m} x {n}",
        f"{filter_ms:.2f}",
        f"{qp_ms:.2f}",
        f"{states / filter_ms * 1e3:,.0f}",
    ]


def timed_hook(agent: safediffuser.Agent, spent: list[float], device: torch.device) -> None:
    """Make ``agent.projection()`` return its hook wrapped to add its wall time to ``spent``."""
    projection = agent.projection

    def wrapped():
        hook = projection()
        if hook is None:
            return None

        def timed(x_prev, x_t, t):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            out = hook(x_prev, x_t, t)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            spent.append(1e3 * (time.perf_counter() - start))
            return out

        return timed

    agent.projection = wrapped


def plan_rows(case: Case, device: torch.device, repeats: int) -> list[list[str]]:
    """One agent per method with the same weights; the methods take turns within each repeat so
    that load drifts on a shared machine hit them alike."""
    envs, plans = (1, 1) if case.info.kind == "maze" else (4, 16)
    obs = torch.as_tensor(case.stats.obs_mean, device=device).expand(envs, -1).clone()
    agents, spent = {}, {}
    for method in PLAN_METHODS:
        torch.manual_seed(0)
        agents[method] = make_agent(case, method, device, n_candidates=plans, guided=False)
        spent[method] = []
        timed_hook(agents[method], spent[method], device)
    times = {method: [] for method in PLAN_METHODS}
    with torch.no_grad():
        for method, agent in agents.items():  # warm-up
            agent.plan(obs)
            spent[method].clear()
        for _ in range(repeats):
            for method, agent in agents.items():
                times[method].append(median_ms(lambda a=agent: a.plan(obs), 0, device, False))
    rows = []
    baseline = float(np.median(times["none"]))
    for method in PLAN_METHODS:
        plan_ms = float(np.median(times[method]))
        share = sum(spent[method]) / sum(times[method])
        rows.append(
            [
                case.name,
                method,
                f"{envs} x {plans} x {case.horizon}",
                f"{plan_ms:.1f}",
                f"{share:.1%}",
                f"{plan_ms / baseline:.2f}x",
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    step = Table("task", "method", "states / step", "QP m x n", "filter ms", "QP ms", "states / s")
    for case in (MAZE, CEILING):
        for method in QP_METHODS:
            step.add_row(*step_row(case, method, device, args.repeats))
    whole = Table("task", "method", "envs x plans x H", "plan ms", "filter share", "vs none")
    for case in (MAZE, CEILING):
        for row in plan_rows(case, device, args.repeats):
            whole.add_row(*row)

    console = Console(width=120)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    console.print(
        f"device {device} ({name}), {os.cpu_count()} cores, torch threads "
        f"{torch.get_num_threads()}; "
        + ", ".join(f"{k} {v}" for k, v in library_versions().items())
    )
    console.print("Table 1: one denoising step's safety filter (median ms)")
    console.print(step)
    console.print("Table 2: whole plans, 20 DDPM steps, U-Net dim 16 (untrained)")
    console.print(whole)


if __name__ == "__main__":
    main()
