"""Tests for IQL: paper settings per task, the policy's likelihood and schedule, the bandit,
determinism (the contract's shared checks are in ``test_contract.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from agent_data import batches, stats_of, unit_stats

from algorithms import iql
from algorithms.common.contract import DatasetStats, TaskInfo
from algorithms.common.offline import reward_transform
from tasks import toy

TOY_INFO = TaskInfo("toy-bandit", "toy", toy.OBS_DIM, toy.ACT_DIM)
LINEAR_INFO = TaskInfo("linear", "toy", 3, 2)


def train(agent: iql.Agent, data: dict[str, np.ndarray], steps: int) -> list[dict]:
    stream = batches(data, agent.data_spec.batch_size)
    return [agent.update(next(stream)) for _ in range(steps)]


def make_agent(
    info: TaskInfo,
    data: dict[str, np.ndarray],
    seed: int = 0,
    train_steps: int = 1_000_000,
    **cfg,
) -> iql.Agent:
    torch.manual_seed(seed)
    return iql.Agent(iql.Config(hidden=64, **cfg), info, stats_of(data), "cpu", train_steps)


def random_dataset(n: int = 500, seed: int = 0) -> dict[str, np.ndarray]:
    """Random multi-step transitions in a 3-D observation space with 2-D actions."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(0, 1, (n + 1, 3)).astype(np.float32)
    return {
        "observations": obs[:-1],
        "actions": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        "rewards": rng.normal(0, 1, n).astype(np.float32),
        "next_observations": obs[1:],
        "terminals": (rng.random(n) < 0.05).astype(np.float32),
    }


@pytest.mark.parametrize(
    ("task_id", "kind", "expected"),
    [
        ("hopper-medium-v2", "locomotion", (0.7, 3.0, "returns")),
        ("antmaze-umaze-v2", "maze", (0.9, 10.0, "minus_one")),
        ("maze2d-umaze-v1", "maze", (0.7, 3.0, "none")),
        ("toy-bandit", "toy", (0.7, 3.0, "none")),
    ],
)
def test_paper_settings_per_task_family(task_id, kind, expected):
    cfg = iql.resolve(iql.Config(), TaskInfo(task_id, kind, 3, 2), unit_stats(3, 2))
    assert (cfg.expectile, cfg.beta, cfg.reward_norm) == expected


def test_explicit_settings_override_the_paper_values():
    info = TaskInfo("antmaze-umaze-v2", "maze", 3, 2)
    stats = unit_stats(3, 2)
    cfg = iql.resolve(iql.Config(expectile=0.8, beta=1.0, reward_norm="none"), info, stats)
    assert (cfg.expectile, cfg.beta, cfg.reward_norm) == (0.8, 1.0, "none")
    with pytest.raises(ValueError, match=r"algo\.reward_norm.*minus_one"):
        iql.resolve(iql.Config(reward_norm="scaled"), info, stats)


def test_reward_transforms_follow_the_official_code():
    stats = stats_of(random_dataset())
    stats = DatasetStats(**{**stats.__dict__, "return_min": -100.0, "return_max": 400.0})
    assert reward_transform("returns", stats) == (2.0, 0.0)  # 1000 / (400 - -100)
    assert reward_transform("minus_one", stats) == (1.0, -1.0)
    assert reward_transform("none", stats) == (1.0, 0.0)
    with pytest.raises(ValueError, match="reward_norm"):
        reward_transform("scaled", stats)


def test_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    policy = iql.GaussianPolicy(LINEAR_INFO, hidden=16, depth=2)
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([-7.0, 0.3]))  # the first is clipped to -5
    obs, act = torch.randn(8, 3), torch.rand(8, 2) * 2 - 1
    std = torch.tensor([-5.0, 0.3]).exp()
    want = torch.distributions.Normal(policy(obs), std).log_prob(act).sum(-1)
    assert torch.allclose(policy.log_prob(obs, act), want, atol=1e-5)


def test_awr_weights_are_exponential_in_the_advantage_and_capped():
    log_prob = torch.tensor([-1.0, -1.0, -1.0])
    adv = torch.tensor([0.0, 0.5, 10.0])
    want = (1.0 + np.exp(1.5) + 100.0) / 3  # exp(3 * 10) is capped at 100
    assert iql.awr_loss(log_prob, adv, beta=3.0).item() == pytest.approx(want, rel=1e-5)


def test_actor_learning_rate_follows_a_cosine_decay_to_zero():
    data = random_dataset()
    agent = make_agent(LINEAR_INFO, data, train_steps=10, batch_size=32)
    train(agent, data, 5)
    assert agent.actor_optimizer.param_groups[0]["lr"] == pytest.approx(1.5e-4)
    train(agent, data, 7)
    assert agent.actor_optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert agent.critic.optimizer.param_groups[0]["lr"] == pytest.approx(3e-4)


def toy_action(agent: iql.Agent) -> np.ndarray:
    return agent.act(np.zeros((1, toy.OBS_DIM), dtype=np.float32))[0]


def test_iql_on_the_bandit_shifts_toward_the_high_mode_and_reaches_it_with_large_beta():
    """A unimodal Gaussian fit by AWR: with the paper's beta = 3 the weights exp(3 * A) favour the
    high mode only a few-fold, so the mean lands between the modes, shifted toward the high one;
    with antmaze's beta = 10 the high mode dominates and the mean sits on it."""
    data = toy.behaviour_dataset(2000, seed=0)
    default = make_agent(TOY_INFO, data, batch_size=128)
    train(default, data, 400)
    action = toy_action(default)
    assert np.all((action > 0.15) & (action < 0.5)), action
    assert toy.bandit_reward(action) > 0.02  # BC's mean action earns about 0.0002

    sharp = make_agent(TOY_INFO, data, batch_size=128, beta=10.0)
    train(sharp, data, 400)
    assert toy.bandit_reward(toy_action(sharp)) > 0.9


def test_same_seed_gives_identical_losses():
    data = random_dataset()
    runs = [train(make_agent(LINEAR_INFO, data, batch_size=32), data, 5) for _ in range(2)]
    assert {"v_loss", "q_loss", "actor_loss", "adv_mean"} <= set(runs[0][0])
    for x, y in zip(*runs, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)
