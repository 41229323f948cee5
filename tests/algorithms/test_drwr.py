"""DRWR (:mod:`algorithms.drwr`): the episodes it learns from, its weights, and one iteration of
reward-weighted regression moving the policy toward the chunks that earned more."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms import drwr
from algorithms.common.contract import Rollout
from bench.data import compute_stats
from bench.run import task_info
from tasks.registry import get_task
from tasks.sources import load_dataset


def rollout_with(firsts: np.ndarray, terminated: np.ndarray, rewards=None) -> Rollout:
    steps, n = firsts.shape
    rewards = np.zeros((steps, n), np.float32) if rewards is None else rewards
    obs = np.zeros((steps, n, 1), np.float32)
    return Rollout(obs, rewards, terminated, np.zeros_like(terminated), firsts, obs[-1])


def test_only_whole_episodes_of_two_decisions_or_more_are_used():
    # env 0: an episode cut by the iteration's start (rows 0-1), one of rows 2-4, one of row 5
    # (one decision: dropped), and one still running at the end (rows 6-7).
    firsts = np.array([[0, 0, 1, 0, 0, 1, 1, 0]], dtype=bool).T
    ended = np.array([[0, 1, 0, 0, 1, 1, 0, 0]], dtype=bool).T
    assert drwr.complete_episodes(rollout_with(firsts, ended)) == [(0, 2, 4)]
    ended[-1] = True  # the last episode ends with the iteration: it counts
    assert drwr.complete_episodes(rollout_with(firsts, ended)) == [(0, 2, 4), (0, 6, 7)]


def test_weights_are_exponentiated_standardized_returns_clipped():
    returns = np.array([0.0, 1.0, 2.0])
    z = (returns - 1.0) / (returns.std() + 1e-3)
    np.testing.assert_allclose(drwr.reward_weights(returns, 1.0, 100.0), np.exp(z))
    assert drwr.reward_weights(returns, 10.0, 100.0).max() == 100.0
    np.testing.assert_allclose(drwr.discounted_returns(np.array([1.0, 1.0]), 0.5), [1.5, 1.0])


@pytest.fixture(scope="module")
def bandit():
    spec = get_task("toy-bandit")
    dataset = load_dataset(spec, source="auto", scale=0.2, forge_seed=0)
    return task_info(spec, dataset), compute_stats(dataset)


def test_one_iteration_moves_the_policy_toward_better_chunks(bandit):
    """Two-decision episodes whose rewards are the first action coordinate: after one
    iteration the mean first coordinate of explored chunks rises by at least 0.05."""
    info, stats = bandit
    cfg = drwr.Config(horizon=1, act_steps=1, hidden=32, n_diffusion_steps=5, ft_batch_size=100)
    torch.manual_seed(0)
    agent = drwr.Agent(cfg, info, stats, "cpu", train_steps=10)
    agent.start_online(n_envs=10)
    obs = np.broadcast_to(stats.obs_mean, (10, info.obs_dim)).astype(np.float32)

    def mean_first_coordinate() -> float:
        torch.manual_seed(1)
        return float(np.mean([agent.explore(obs)[:, 0, 0] for _ in range(20)]))

    before = mean_first_coordinate()
    agent._chunks = []
    steps = 100
    actions = np.stack([agent.explore(obs)[:, 0] for _ in range(steps)])
    firsts = np.zeros((steps, 10), dtype=bool)
    firsts[::2] = True
    ended = np.zeros_like(firsts)
    ended[1::2] = True
    rollout = rollout_with(firsts, ended, actions[..., 0].astype(np.float32))
    rollout.obs[:] = stats.obs_mean
    rollout.next_obs[:] = stats.obs_mean
    losses = agent.improve(rollout)
    assert float(losses["episodes"]) == steps // 2 * 10
    agent._chunks = []
    assert mean_first_coordinate() >= before + 0.05
