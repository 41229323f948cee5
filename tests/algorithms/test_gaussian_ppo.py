"""Gaussian-PPO (:mod:`algorithms.gaussian_ppo`): pre-training fits the data's mean action, and
one PPO iteration moves the policy toward the actions that earned more."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms import gaussian_ppo
from algorithms.common.contract import OnlineAgent, Rollout
from bench.data import compute_stats, make_sampler
from bench.run import task_info
from tasks.registry import get_task
from tasks.sources import load_dataset


@pytest.fixture(scope="module")
def bandit():
    spec = get_task("toy-bandit")
    dataset = load_dataset(spec, source="auto", scale=0.2, forge_seed=0)
    return task_info(spec, dataset), compute_stats(dataset), dataset


def agent_on(bandit, **overrides) -> gaussian_ppo.Agent:
    info, stats, _ = bandit
    torch.manual_seed(0)
    cfg = gaussian_ppo.Config(**{"hidden": 32, "critic_hidden": 16, **overrides})
    return gaussian_ppo.Agent(cfg, info, stats, "cpu", train_steps=10)


def test_pretraining_fits_the_mean_of_the_bimodal_data(bandit):
    """Maximum likelihood with one Gaussian lands between the bandit's two modes (the
    parameterization DPPO's paper contrasts with diffusion)."""
    agent = agent_on(bandit, batch_size=256, lr=1e-3)
    sampler = make_sampler(bandit[2], agent.data_spec, torch.device("cpu"), seed=0)
    for _ in range(300):
        agent.update(sampler.sample())
    obs = bandit[2].arrays["observations"][:1]
    data_mean = bandit[2].arrays["actions"].mean(0)
    assert np.abs(agent.act(obs)[0] - data_mean).max() < 0.1


def test_one_iteration_moves_the_mean_toward_better_actions(bandit):
    """Rewards equal to the first action coordinate: after one PPO iteration the mean action's
    first coordinate rises by at least 0.01 and the std stays within its clamp."""
    agent = agent_on(bandit, ft_lr=1e-3)
    assert isinstance(agent, OnlineAgent)
    agent.start_online(n_envs=10)
    obs = np.broadcast_to(bandit[1].obs_mean, (10, bandit[0].obs_dim)).astype(np.float32)
    before = agent.act(obs)[0]
    steps = 100
    actions = np.stack([agent.explore(obs)[:, 0] for _ in range(steps)])
    ones = np.ones((steps, 10), dtype=bool)
    rollout = Rollout(
        obs=np.broadcast_to(obs, (steps, *obs.shape)).copy(),
        rewards=actions[..., 0].astype(np.float32),
        terminated=np.zeros_like(ones),
        truncated=ones,
        firsts=ones,
        next_obs=obs.copy(),
    )
    agent.improve(rollout)
    after = agent.act(obs)[0]
    assert after[0] >= before[0] + 0.01, (before, after)
    std = agent.std().detach()
    assert (std >= 0.01).all() and (std <= 0.2).all()
