"""Dataset statistics and training batches for the algorithm tests, as the harness supplies them."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from algorithms.common.contract import DatasetStats, TaskInfo
from bench.data import N_QUANTILES, quantiles

POINTMAZE = TaskInfo("pointmaze-umaze", "maze", 6, 2, max_episode_steps=300, goal_dims=(4, 5))


def stats_of(data: dict[str, np.ndarray]) -> DatasetStats:
    """Dataset statistics as the harness computes them (one-step episodes here)."""
    rewards = data["rewards"]
    return DatasetStats(
        obs_mean=data["observations"].mean(0),
        obs_std=np.maximum(data["observations"].std(0), 1e-3),
        act_mean=data["actions"].mean(0),
        act_std=data["actions"].std(0),
        reward_min=float(rewards.min()),
        reward_max=float(rewards.max()),
        return_min=float(rewards.min()),
        return_max=float(rewards.max()),
        n_transitions=len(rewards),
        n_episodes=len(rewards),
        obs_quantiles=quantiles(data["observations"]),
        act_quantiles=quantiles(data["actions"]),
    )


def batches(
    data: dict[str, np.ndarray], batch_size: int = 256, seed: int = 0
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless uniformly sampled float32 transition batches (all fields but ``timeouts``)."""
    tensors = {
        k: torch.as_tensor(v, dtype=torch.float32) for k, v in data.items() if k != "timeouts"
    }
    g = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(len(data["rewards"]), (batch_size,), generator=g)
        yield {k: v[idx] for k, v in tensors.items()}


def unit_stats(
    obs_dim: int, act_dim: int, reward_max: float = 1.0, return_max: float = 1.0
) -> DatasetStats:
    """Statistics that leave observations and actions unscaled: zero means, unit stds, and data
    uniform on [-1, 1] (so the limits and CDF normalizers are the identity there)."""
    uniform = np.linspace(-1.0, 1.0, N_QUANTILES, dtype=np.float32)[:, None]
    return DatasetStats(
        obs_mean=np.zeros(obs_dim, np.float32),
        obs_std=np.ones(obs_dim, np.float32),
        act_mean=np.zeros(act_dim, np.float32),
        act_std=np.ones(act_dim, np.float32),
        reward_min=0.0,
        reward_max=reward_max,
        return_min=0.0,
        return_max=return_max,
        n_transitions=1000,
        n_episodes=10,
        obs_quantiles=np.repeat(uniform, obs_dim, axis=1),
        act_quantiles=np.repeat(uniform, act_dim, axis=1),
    )


def random_batch(info: TaskInfo, horizon: int, batch: int = 8) -> dict[str, torch.Tensor]:
    """A fixed (seed 0) random batch of ``batch`` trajectory windows of ``horizon`` steps."""
    g = torch.Generator().manual_seed(0)
    return {
        "observations": torch.randn(batch, horizon, info.obs_dim, generator=g),
        "actions": torch.rand(batch, horizon, info.act_dim, generator=g) * 2 - 1,
        "returns_to_go": torch.rand(batch, horizon, generator=g),
        "mask": torch.ones(batch, horizon),
    }
