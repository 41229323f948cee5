"""Planning speed and few-step sampling of the trajectory planners, as tables.

    python -m benchmarks.planning [--algos diffuser,decision_diffuser,hdmi] [--task pointmaze-umaze]
        [--envs 20] [--train-steps 2000] [--ddim 5,10] [--modes "warm_start=0.1;replan_every=4"]
        [--episodes 20] [--set algo.field=value ...] [--checkpoint run/checkpoint.pt ...]

Table 1, batched vs one environment at a time: with ``replan_every=1`` every ``act`` plans, so
decisions/s is the planning throughput; ``batched`` calls ``agent.act(obs[n_envs])`` (one
denoising pass for every environment and candidate plan), ``one at a time`` calls
``agent.act(obs[i:i+1])`` for each environment in turn, as the official implementations evaluate.
Both are measured in this process on the same dataset states.

Table 2, acting modes: the agent is trained for ``--train-steps`` updates (or loaded from
``bench.run`` checkpoints with ``--checkpoint``, built from the first run's saved
``config.yaml``: its algorithm settings, task and data scale replace the defaults below; several
checkpoints, one per training seed, of one configuration), then evaluated on ``--episodes``
episodes under its own (official) acting settings, with DDIM at each ``--ddim`` step count, and
in each ``--modes`` mode (``;``-separated, each ``field=value[,field=value]`` of acting fields,
e.g. ``warm_start=0.1`` for warm-started replanning, ``replan_every=4`` for open-loop execution
of 4 steps of each plan): score, success rate and decisions/s of the whole evaluation, and
decisions/s as a multiple of the official mode's. With several checkpoints the score is the mean
over seeds +- its standard deviation across seeds (the seeds' spread a faster mode's score
should stay within). ``--episodes 0`` skips the table.

``--set`` overrides algorithm fields for every algorithm that has them (e.g. ``horizon=64``);
the defaults below are a reduced CPU budget, stated in the output. Threads: ``--threads``
(default 1; on a shared 2-core machine two OpenMP threads can be many times slower than one).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

import algorithms
from bench.data import compute_stats, make_sampler
from bench.evaluate import evaluate
from bench.run import library_versions, task_info
from tasks.registry import get_task
from tasks.sources import load_dataset

# A reduced budget that trains in minutes on 2 CPU cores (fields missing from a Config are ignored).
REDUCED = {
    "horizon": 64,
    "n_diffusion_steps": 20,
    "dim": 16,
    "dim_mults": (1, 2, 4),
    "batch_size": 32,
    "lr": 1e-3,
    "ema_start": 500,
    "ema_every": 1,
    "ema_decay": 0.99,
    "n_subgoals": 4,
    "subgoal_interval": 16,
    "goal_width": 64,
    "goal_layers": 2,
    "inv_hidden": 128,
}


def parse_value(text: str):
    """``1`` -> int, ``0.5`` -> float, ``1,2,4`` -> tuple, ``none`` -> None, else the string."""
    if text.lower() == "none":
        return None
    if "," in text:
        return tuple(parse_value(t) for t in text.split(",") if t)
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def make_config(module, overrides: dict):
    fields = {f.name for f in dataclasses.fields(module.Config)}
    return module.Config(**{k: v for k, v in overrides.items() if k in fields})


def run_settings(checkpoint: str) -> tuple[str, str, float, dict]:
    """Algorithm, task, data scale and algorithm fields of the ``bench.run`` run that saved
    ``checkpoint`` (its ``config.yaml`` sits beside it, in ``<task>/<algo>/<run>/``; the run
    need not have finished its final evaluation); lists become tuples as in a Config."""
    run = Path(checkpoint).parent
    cfg = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["algo"].items()}
    return run.parent.name, cfg["task"], cfg["data"]["scale"], fields


def time_planning(agent, obs: np.ndarray, calls: int) -> tuple[float, float]:
    """Decisions/s of batched ``act`` and of ``act`` on one environment at a time."""
    agent.reset()
    agent.act(obs)  # warm-up
    t0 = time.perf_counter()
    for _ in range(calls):
        agent.act(obs)
    batched = calls * len(obs) / (time.perf_counter() - t0)
    agent.reset()
    t0 = time.perf_counter()
    for _ in range(calls):
        for i in range(len(obs)):
            agent.act(obs[i : i + 1])
    single = calls * len(obs) / (time.perf_counter() - t0)
    agent.reset()
    return batched, single


def train(agent, dataset, steps: int) -> float:
    """Train ``steps`` updates; returns updates/s."""
    sampler = make_sampler(dataset, agent.data_spec, torch.device("cpu"), seed=0)
    t0 = time.perf_counter()
    out = {}
    for _ in range(steps):
        out = agent.update(sampler.sample())
    if out:
        float(next(iter(out.values())))
    return steps / max(time.perf_counter() - t0, 1e-9)


def acting_modes(ddim: str, modes: str) -> list[tuple[str, dict]]:
    """``(label, acting settings)`` per evaluated mode: the official first, then DDIM at each of
    ``ddim``'s step counts, then each ``;``-separated ``field=value[,field=value]`` of ``modes``."""
    out = [("official", {})]
    out += [(f"DDIM {k}", {"ddim_steps": int(k)}) for k in ddim.split(",") if k]
    for mode in filter(None, modes.split(";")):
        pairs = [item.split("=", 1) for item in mode.split(",")]
        out.append((mode, {k.strip(): parse_value(v.strip()) for k, v in pairs}))
    return out


def evaluate_mode(module, agents, info, stats, spec, dataset, episodes, settings) -> dict:
    """Score and speed of ``settings``' acting, evaluated from each trained agent in turn
    (same episode seeds): means and spread across agents, total decisions/s."""
    scores, successes, decisions, seconds = [], [], 0, 0.0
    for agent in agents:
        torch.manual_seed(1)
        result = evaluate(
            variant(module, agent, info, stats, **settings),
            spec,
            episodes,
            seed=10_000,
            ref_min=dataset.ref_min_score,
            ref_max=dataset.ref_max_score,
        )
        summary = result.summary()
        scores.append(summary["normalized_mean"])
        successes.append(summary.get("success_rate", float("nan")))
        decisions, seconds = decisions + result.decisions, seconds + result.act_seconds
    return {
        "normalized": float(np.mean(scores)),
        "spread": float(np.std(scores)),
        "success": float(np.mean(successes)),
        "decisions_per_s": decisions / max(seconds, 1e-9),
    }


def variant(module, agent, info, stats, **settings):
    """A new ``module.Agent`` with ``agent``'s trained state and other acting ``settings`` (e.g.
    ``ddim_steps``: None is all T DDPM steps), with its own per-environment state."""
    cfg = dataclasses.replace(agent.cfg, **settings)
    other = module.Agent(cfg, info, stats, torch.device("cpu"), 0)
    other.load_state_dict(copy.deepcopy(agent.state_dict()))
    return other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", default="diffuser,decision_diffuser,hdmi")
    parser.add_argument("--task", default="pointmaze-umaze")
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--envs", type=int, default=20)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=0)
    parser.add_argument(
        "--checkpoint",
        nargs="*",
        default=[],
        help="bench.run checkpoint.pt files of one configuration, one per seed (the first's algo "
        "and task are used)",
    )
    parser.add_argument("--ddim", default="5,10")
    parser.add_argument("--modes", default="", help="';'-separated acting modes field=value,...")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[], help="field=value overrides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    overrides = {**REDUCED, **{k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}}
    if args.checkpoint:
        args.algos, args.task, args.scale, overrides = run_settings(args.checkpoint[0])
    spec = get_task(args.task)
    dataset = load_dataset(spec, scale=args.scale, verbose=False)
    info = task_info(spec, dataset)
    stats = compute_stats(dataset)
    rng = np.random.default_rng(0)
    obs = dataset.arrays["observations"][rng.integers(len(dataset), size=args.envs)]
    obs = obs.astype(np.float32)
    modes = acting_modes(args.ddim, args.modes)

    speed = Table("algo", "envs", "batched decisions/s", "one at a time", "speed-up")
    seeds = max(len(args.checkpoint), 1)
    acting = Table(
        "algo",
        "train steps/s",
        "acting",
        "success",
        "normalized" + (f" (mean ± std, {seeds} seeds)" if seeds > 1 else ""),
        "decisions/s",
        "x official",
    )
    for name in args.algos.split(","):
        module = algorithms.load(name)
        torch.manual_seed(0)
        cfg = make_config(module, overrides)
        agent = module.Agent(cfg, info, stats, torch.device("cpu"), args.train_steps)
        planner = variant(module, agent, info, stats, replan_every=1)
        batched, single = time_planning(planner, obs, args.calls)
        speed.add_row(
            name, str(args.envs), f"{batched:.1f}", f"{single:.1f}", f"{batched / single:.1f}x"
        )
        if args.checkpoint:
            agents = [trained_from(module, cfg, info, stats, c) for c in args.checkpoint]
            train_speed = "—"  # trained elsewhere
        else:
            agents, train_speed = [agent], f"{train(agent, dataset, args.train_steps):.1f}"
        official = None
        for label, settings in modes if args.episodes else []:
            m = evaluate_mode(module, agents, info, stats, spec, dataset, args.episodes, settings)
            official = official or m["decisions_per_s"]
            if label == "official":
                label = f"official (DDPM T={agent.cfg.n_diffusion_steps})"
            acting.add_row(
                name,
                train_speed,
                label,
                f"{m['success']:.2f}",
                f"{m['normalized']:.1f}" + (f" ± {m['spread']:.1f}" if seeds > 1 else ""),
                f"{m['decisions_per_s']:.1f}",
                f"{m['decisions_per_s'] / official:.1f}x",
            )

    console = Console()
    versions = library_versions()
    console.print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    console.print(
        f"task {args.task} ({dataset.provenance.source}, {len(dataset):,} transitions); "
        f"overrides {overrides}; "
        + (
            f"trained: {', '.join(args.checkpoint)}"
            if args.checkpoint
            else f"{args.train_steps} training steps"
        )
        + f"; {args.episodes} episodes"
    )
    console.print(speed)
    if args.episodes:
        console.print(acting)


def trained_from(module, cfg, info, stats, checkpoint: str):
    """A ``module.Agent`` of ``cfg`` holding the agent state saved in a ``bench.run``
    ``checkpoint``."""
    agent = module.Agent(cfg, info, stats, torch.device("cpu"), 0)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    agent.load_state_dict(state["agent"])
    return agent


if __name__ == "__main__":
    main()
