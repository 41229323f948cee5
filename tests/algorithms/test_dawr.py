"""DAWR (:mod:`algorithms.dawr`): TD(lambda) targets as the official ``td_values``, the buffer,
and one iteration of advantage-weighted regression moving the policy toward better chunks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms import dawr
from algorithms.common.contract import Rollout
from bench.data import compute_stats
from bench.run import task_info
from tasks.registry import get_task
from tasks.sources import load_dataset


def official_td_values(rewards, terminateds, state_values, gamma, alpha, lam):
    """agent/finetune/train_awr_diffusion_agent.py ``td_values``, as published (numpy)."""
    tds = np.zeros_like(state_values, dtype=np.float32)
    next_value = state_values[-1].copy()
    next_value[terminateds[-1]] = 0.0
    val = 0.0
    for i in range(len(rewards) - 1, -1, -1):
        if i < len(rewards) - 1:
            next_value = state_values[i + 1] * (1 - terminateds[i])
        error = rewards[i] + gamma * next_value - state_values[i]
        val = alpha * error + gamma * lam * (1 - terminateds[i]) * val
        tds[i] = val + state_values[i]
    return tds


def test_td_lambda_targets_are_the_official_td_values():
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    terminated = rng.random((7, 3)) < 0.3
    expected = official_td_values(rewards, terminated, values, 0.99, 0.95, 0.9)
    ours = dawr.td_lambda_targets(
        torch.tensor(rewards),
        torch.tensor(terminated, dtype=torch.float64),
        torch.tensor(values),
        discount=0.99,
        lam=0.9,
        alpha=0.95,
    )
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_the_buffer_keeps_the_latest_decisions():
    buffer = dawr.Buffer(size=3)
    buffer.extend(rewards=torch.arange(2.0)[:, None])
    buffer.extend(rewards=torch.arange(2.0, 4.0)[:, None])
    assert buffer.data["rewards"].flatten().tolist() == [1.0, 2.0, 3.0]


@pytest.fixture(scope="module")
def bandit():
    spec = get_task("toy-bandit")
    dataset = load_dataset(spec, source="auto", scale=0.2, forge_seed=0)
    return task_info(spec, dataset), compute_stats(dataset)


def test_one_iteration_moves_the_policy_toward_better_chunks(bandit):
    """One-decision episodes whose rewards are the first action coordinate: after one
    iteration the mean first coordinate of explored chunks rises by at least 0.05."""
    info, stats = bandit
    cfg = dawr.Config(
        horizon=1, act_steps=1, hidden=32, critic_hidden=16, n_diffusion_steps=5, ft_batch_size=100
    )
    torch.manual_seed(0)
    agent = dawr.Agent(cfg, info, stats, "cpu", train_steps=10)
    agent.start_online(n_envs=10)
    obs = np.broadcast_to(stats.obs_mean, (10, info.obs_dim)).astype(np.float32)

    def mean_first_coordinate() -> float:
        torch.manual_seed(1)
        return float(np.mean([agent.explore(obs)[:, 0, 0] for _ in range(20)]))

    before = mean_first_coordinate()
    agent._chunks = []
    steps = 50
    actions = np.stack([agent.explore(obs)[:, 0] for _ in range(steps)])
    ones = np.ones((steps, 10), dtype=bool)
    rollout = Rollout(
        obs=np.broadcast_to(obs, (steps, *obs.shape)).copy(),
        rewards=100 * actions[..., 0].astype(np.float32),
        terminated=ones,
        truncated=np.zeros_like(ones),
        firsts=ones,
        next_obs=obs.copy(),
    )
    agent.improve(rollout)
    agent._chunks = []
    assert mean_first_coordinate() >= before + 0.05
