"""Vectorized evaluation: every episode of an evaluation runs in parallel, one ``act`` per step.

On safe tasks (``spec.safety``) it also measures constraint satisfaction as carefully as return:
each episode's cumulative cost (from the env's ``info["cost"]``, discounted by the task's
``cost_discount``), the share of episodes over the budget, the smallest barrier value over every
executed state, and over every planned state for agents that report it (the contract's
``BarrierReporter``). Agents that spend a budget (``CostObserver``) get each step's costs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from algorithms.common.contract import Agent, BarrierReporter, CostObserver
from tasks.envs import make_vector_env
from tasks.progress import progress
from tasks.safety import barrier_values
from tasks.spec import TaskSpec, normalized_score


class DivergenceError(RuntimeError):
    """Training or acting produced non-finite numbers; the run is recorded as failed."""


@dataclass
class EvalResult:
    """Per-episode outcomes of one evaluation."""

    returns: np.ndarray
    lengths: np.ndarray
    normalized: np.ndarray
    successes: np.ndarray | None  # per-episode success where the task defines it
    decisions: int  # environment decisions taken (envs x steps while active)
    act_seconds: float
    costs: np.ndarray | None = None  # per-episode discounted cumulative cost (safe tasks)
    budget: float | None = None
    barrier_min_executed: float | None = None
    barrier_min_planned: float | None = None

    def summary(self) -> dict:
        """JSON-ready summary: per-episode lists, their means and stds, and task metrics."""
        out = {
            "episodes": len(self.returns),
            "returns": self.returns.round(4).tolist(),
            "normalized": self.normalized.round(4).tolist(),
            "return_mean": float(self.returns.mean()),
            "return_std": float(self.returns.std()),
            "normalized_mean": float(self.normalized.mean()),
            "normalized_std": float(self.normalized.std()),
            "length_mean": float(self.lengths.mean()),
        }
        if self.successes is not None:
            out["success_rate"] = float(self.successes.mean())
        if self.costs is not None:
            out.update(
                costs=self.costs.round(4).tolist(),
                cost_mean=float(self.costs.mean()),
                cost_std=float(self.costs.std()),
                cost_budget=self.budget,
            )
            if self.budget is not None:
                out["over_budget_rate"] = float((self.costs > self.budget + 1e-9).mean())
        for key in ("barrier_min_executed", "barrier_min_planned"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def _success_flags(info: dict, key: str | None, n: int) -> np.ndarray:
    """The success flag of each env in a vector-env info dict (False where absent)."""
    if key is None or key not in info:
        return np.zeros(n, dtype=bool)
    present = info.get(f"_{key}", np.ones(n, dtype=bool))
    return np.asarray(info[key], dtype=bool) & np.asarray(present, dtype=bool)


@dataclass
class _Wave:
    """What one wave of parallel episodes produced."""

    returns: np.ndarray
    lengths: np.ndarray
    successes: np.ndarray
    costs: np.ndarray
    barrier_min: float
    decisions: int
    act_seconds: float


def _barrier_min(spec: TaskSpec, obs: np.ndarray, which: np.ndarray) -> float:
    """Smallest barrier value over the rows ``which`` of ``obs`` (inf without constraints)."""
    if spec.safety is None or not spec.safety.barriers or not which.any():
        return float("inf")
    return float(barrier_values(spec.safety.barriers, np.asarray(obs)[which]).min())


def _step_costs(info: dict, n: int) -> np.ndarray:
    """The per-env ``info["cost"]`` of a vector-env step (0 where absent)."""
    if "cost" not in info:
        return np.zeros(n)
    return np.where(info.get("_cost", np.ones(n, dtype=bool)), info["cost"], 0.0)


def _run_wave(agent: Agent, spec: TaskSpec, n_envs: int, seed: int, bar: tqdm) -> _Wave:
    """Run one episode in each of ``n_envs`` envs, counting finished episodes on ``bar``."""
    envs = make_vector_env(spec, n_envs)
    discount = spec.safety.cost_discount if spec.safety is not None else 1.0
    observes_cost = isinstance(agent, CostObserver)
    try:
        obs, _ = envs.reset(seed=[seed + i for i in range(n_envs)])
        agent.reset()
        active = np.ones(n_envs, dtype=bool)
        returns, costs = np.zeros(n_envs), np.zeros(n_envs)
        lengths = np.zeros(n_envs, dtype=np.int64)
        success = np.zeros(n_envs, dtype=bool)
        barrier_min = _barrier_min(spec, obs, active)
        decisions, act_seconds = 0, 0.0
        while active.any():
            t0 = time.perf_counter()
            actions = agent.act(np.asarray(obs, dtype=np.float32))
            act_seconds += time.perf_counter() - t0
            decisions += int(active.sum())
            if not np.all(np.isfinite(actions)):
                raise DivergenceError("the agent produced a non-finite action")
            obs, reward, terminated, truncated, info = envs.step(actions)
            step_cost = np.where(active, _step_costs(info, n_envs), 0.0)
            if observes_cost:
                agent.observe_cost(step_cost)
            returns += np.where(active, reward, 0.0)
            costs += step_cost * discount**lengths
            barrier_min = min(barrier_min, _barrier_min(spec, obs, active))
            lengths += active
            success |= active & _success_flags(info, spec.success_key, n_envs)
            finished = active & (np.asarray(terminated) | np.asarray(truncated))
            active &= ~finished
            bar.set_postfix_str(f"{decisions / max(act_seconds, 1e-9):.1f} decisions/s", False)
            bar.update(int(finished.sum()))
    finally:
        envs.close()
    return _Wave(returns, lengths, success, costs, barrier_min, decisions, act_seconds)


def _run_waves(
    agent: Agent, spec: TaskSpec, episodes: int, seed: int, max_envs: int, desc: str
) -> tuple[list[_Wave], list[float]]:
    """Waves of at most ``max_envs`` parallel episodes, and the smallest planned barrier value
    each wave's plans reached (agents that report one)."""
    waves, planned = [], []
    with progress(episodes, desc, "episode") as bar:
        for first in range(0, episodes, max_envs):
            n_envs = min(max_envs, episodes - first)
            waves.append(_run_wave(agent, spec, n_envs, seed + first, bar))
            if isinstance(agent, BarrierReporter) and agent.planned_barrier_min() is not None:
                planned.append(agent.planned_barrier_min())
    return waves, planned


@contextmanager
def acting_rng(seed: int) -> Iterator[None]:
    """Torch's global RNG seeded with ``seed`` for the duration of an evaluation, and restored
    after it. An agent's sampling noise then depends on the evaluation's seed alone, not on how
    many numbers training drew before it: one network evaluated from two runs (DPPO and its
    baselines share a pre-trained actor) scores the same, and evaluating does not change what
    training draws next."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def evaluate(
    agent: Agent,
    spec: TaskSpec,
    episodes: int,
    seed: int,
    ref_min: float,
    ref_max: float,
    max_envs: int = 50,
    budget: float | None = None,
    desc: str = "evaluate",
) -> EvalResult:
    """Evaluate ``agent`` on ``episodes`` episodes, at most ``max_envs`` at a time.

    Episode ``i`` resets its env with seed ``seed + i``, so an evaluation is reproducible and two
    runs that share a seed see the same start states; the agent's own sampling draws from torch's
    global RNG seeded with ``seed`` (:func:`acting_rng`). ``budget``: a safe task's episode cost
    budget, against which the share of episodes over budget is counted. Progress (episodes
    finished, decisions/s, time left) shows as ``desc`` (:func:`tasks.progress.progress`).
    Multi-agent tasks are evaluated by :func:`bench.multiagent.evaluate_multiagent`.
    """
    with acting_rng(seed):
        if spec.kind == "multi-agent":
            from bench.multiagent import evaluate_multiagent  # it builds on this module

            return evaluate_multiagent(
                agent, spec, episodes, seed, ref_min, ref_max, max_envs, desc
            )
        waves, planned = _run_waves(agent, spec, episodes, seed, max_envs, desc)
    returns = np.concatenate([w.returns for w in waves])
    safe = spec.safety is not None
    executed = min(w.barrier_min for w in waves)
    return EvalResult(
        returns=returns,
        lengths=np.concatenate([w.lengths for w in waves]),
        normalized=normalized_score(returns, ref_min, ref_max),
        successes=np.concatenate([w.successes for w in waves]) if spec.success_key else None,
        decisions=sum(w.decisions for w in waves),
        act_seconds=sum(w.act_seconds for w in waves),
        costs=np.concatenate([w.costs for w in waves]) if safe else None,
        budget=budget,
        barrier_min_executed=executed if np.isfinite(executed) else None,
        barrier_min_planned=min(planned) if planned else None,
    )
