"""Tests for behaviour cloning: it imitates, it averages modes, and it honours the contract."""

from __future__ import annotations

import copy

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
    return bc.Agent(bc.Config(hidden=64, **cfg), info, stats_of(data), "cpu")


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


def test_act_is_batched_and_inside_asymmetric_bounds():
    data, _ = linear_dataset(500)
    info = TaskInfo("linear", "toy", 3, 2, action_low=-0.1, action_high=0.3)
    agent = make_agent(info, data)
    train(agent, data, 20)
    obs = np.random.default_rng(1).normal(0, 100, (7, 3)).astype(np.float32)
    actions = agent.act(obs)
    assert actions.shape == (7, 2) and actions.dtype == np.float32
    assert actions.min() >= -0.1 and actions.max() <= 0.3
    agent.reset()
    agent.reset(np.array([True] * 7))


def test_update_returns_detached_scalars():
    data, _ = linear_dataset(500)
    out = train(make_agent(TaskInfo("linear", "toy", 3, 2), data), data, 1)[0]
    assert all(v.ndim == 0 and not v.requires_grad for v in out.values())


def test_state_dict_round_trip_gives_the_same_actions_and_next_update():
    data, _ = linear_dataset(500)
    info = TaskInfo("linear", "toy", 3, 2)
    a = make_agent(info, data, seed=0)
    train(a, data, 5)
    b = make_agent(info, data, seed=1)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    obs = data["observations"][:9]
    np.testing.assert_array_equal(a.act(obs), b.act(obs))
    batch = next(batches(data, 64, seed=3))
    assert torch.equal(a.update(batch)["actor_loss"], b.update(batch)["actor_loss"])
    np.testing.assert_array_equal(a.act(obs), b.act(obs))


@pytest.mark.parametrize("seed", [0, 1])
def test_same_seed_gives_identical_losses(seed):
    data, _ = linear_dataset(500)
    info = TaskInfo("linear", "toy", 3, 2)
    runs = [train(make_agent(info, data, seed=seed), data, 5) for _ in range(2)]
    for x, y in zip(*runs, strict=True):
        assert torch.equal(x["actor_loss"], y["actor_loss"])
