"""Tests for behaviour cloning: it imitates, it averages modes, it is deterministic per seed (the
contract's shared checks are in ``test_contract.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from agent_data import batches, stats_of

from algorithms import bc
from algorithms.common.contract import TaskInfo
from tasks import toy

TOY_INFO = TaskInfo("toy-bandit", "toy", toy.OBS_DIM, toy.ACT_DIM)


def train(agent: bc.Agent, data: dict[str, np.ndarray], steps: int) -> list[dict]:
    stream = batches(data, agent.data_spec.batch_size)
    return [agent.update(next(stream)) for _ in range(steps)]


def make_agent(info: TaskInfo, data: dict[str, np.ndarray], seed: int = 0, **cfg) -> bc.Agent:
    torch.manual_seed(seed)
    return bc.Agent(bc.Config(hidden=64, **cfg), info, stats_of(data), "cpu", train_steps=1000)


def linear_dataset(n: int = 4000) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Observations with offset and scale, actions a linear function of them inside (-1, 1)."""
    rng = np.random.default_rng(0)
    obs = (rng.uniform(-1, 1, (n, 3)) * [1.0, 5.0, 0.2] + [0.0, 10.0, -3.0]).astype(np.float32)
    weights = np.array([[0.3, -0.2], [0.04, 0.06], [-1.0, 0.5]], dtype=np.float32)
    actions = (obs - [0.0, 10.0, -3.0]) @ weights
    zeros = np.zeros(n, dtype=np.float32)
    data = {"observations": obs, "actions": actions.astype(np.float32), "rewards": zeros}
    data |= {"next_observations": obs, "terminals": zeros}
    return data, weights


def test_bc_recovers_a_linear_behaviour_policy():
    data, _ = linear_dataset()
    agent = make_agent(TaskInfo("linear", "toy", 3, 2), data, lr=1e-3)
    losses = train(agent, data, 600)
    assert losses[-1]["actor_loss"].item() < 0.1 * losses[0]["actor_loss"].item()
    test, _ = linear_dataset(200)
    error = np.abs(agent.act(test["observations"]) - test["actions"]).mean()
    assert error < 0.03


def test_bc_averages_the_bandit_modes_and_earns_nothing():
    data = toy.behaviour_dataset(2000, seed=0)
    agent = make_agent(TOY_INFO, data)
    train(agent, data, 400)
    action = agent.act(np.zeros((1, toy.OBS_DIM), dtype=np.float32))[0]
    assert np.abs(action).max() < 0.1  # the mean of two symmetric modes
    assert toy.bandit_reward(action) < 0.01


@pytest.mark.parametrize("seed", [0, 1])
def test_same_seed_gives_identical_losses(seed):
    data, _ = linear_dataset(500)
    info = TaskInfo("linear", "toy", 3, 2)
    runs = [train(make_agent(info, data, seed=seed), data, 5) for _ in range(2)]
    for x, y in zip(*runs, strict=True):
        assert torch.equal(x["actor_loss"], y["actor_loss"])
