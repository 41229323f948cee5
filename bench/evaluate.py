"""Vectorized evaluation: every episode of an evaluation runs in parallel, one ``act`` per step."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from algorithms.common.contract import Agent
from tasks.envs import make_vector_env
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
        return out


def _success_flags(info: dict, key: str | None, n: int) -> np.ndarray:
    """The success flag of each env in a vector-env info dict (False where absent)."""
    if key is None or key not in info:
        return np.zeros(n, dtype=bool)
    present = info.get(f"_{key}", np.ones(n, dtype=bool))
    return np.asarray(info[key], dtype=bool) & np.asarray(present, dtype=bool)


def _run_wave(agent: Agent, spec: TaskSpec, n_envs: int, seed: int) -> tuple:
    """Run one episode in each of ``n_envs`` envs; returns returns, lengths, successes, timing."""
    envs = make_vector_env(spec, n_envs)
    try:
        obs, _ = envs.reset(seed=[seed + i for i in range(n_envs)])
        agent.reset()
        active = np.ones(n_envs, dtype=bool)
        returns = np.zeros(n_envs)
        lengths = np.zeros(n_envs, dtype=np.int64)
        success = np.zeros(n_envs, dtype=bool)
        decisions, act_seconds = 0, 0.0
        while active.any():
            t0 = time.perf_counter()
            actions = agent.act(np.asarray(obs, dtype=np.float32))
            act_seconds += time.perf_counter() - t0
            decisions += int(active.sum())
            if not np.all(np.isfinite(actions)):
                raise DivergenceError("the agent produced a non-finite action")
            obs, reward, terminated, truncated, info = envs.step(actions)
            returns += np.where(active, reward, 0.0)
            lengths += active
            success |= active & _success_flags(info, spec.success_key, n_envs)
            active &= ~(np.asarray(terminated) | np.asarray(truncated))
    finally:
        envs.close()
    return returns, lengths, success, decisions, act_seconds


def evaluate(
    agent: Agent,
    spec: TaskSpec,
    episodes: int,
    seed: int,
    ref_min: float,
    ref_max: float,
    max_envs: int = 50,
) -> EvalResult:
    """Evaluate ``agent`` on ``episodes`` episodes, at most ``max_envs`` at a time.

    Episode ``i`` resets its env with seed ``seed + i``, so an evaluation is reproducible and two
    runs that share a seed see the same start states.
    """
    parts = []
    for first in range(0, episodes, max_envs):
        n = min(max_envs, episodes - first)
        parts.append(_run_wave(agent, spec, n, seed + first))
    returns = np.concatenate([p[0] for p in parts])
    return EvalResult(
        returns=returns,
        lengths=np.concatenate([p[1] for p in parts]),
        normalized=normalized_score(returns, ref_min, ref_max),
        successes=np.concatenate([p[2] for p in parts]) if spec.success_key else None,
        decisions=sum(p[3] for p in parts),
        act_seconds=sum(p[4] for p in parts),
    )
