"""Tests for the shared critics: the expectile loss, twin Q, and IQL's critic on a known toy."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from algorithms.common.critics import IQLCritic, TwinQ, ValueNet, expectile_loss


def expectile_of(values: np.ndarray, tau: float) -> float:
    """The ``tau``-expectile of a sample, by bisection on the first-order condition."""
    lo, hi = float(values.min()), float(values.max())
    for _ in range(100):
        m = (lo + hi) / 2
        d = values - m
        grad = np.sum(np.where(d < 0, 1 - tau, tau) * d)
        lo, hi = (m, hi) if grad > 0 else (lo, m)
    return (lo + hi) / 2


def test_expectile_loss_at_half_is_half_the_mse():
    diff = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0])
    assert torch.allclose(expectile_loss(diff, 0.5), 0.5 * diff.square().mean())


def test_expectile_loss_weights_positive_and_negative_errors_asymmetrically():
    assert expectile_loss(torch.tensor([2.0]), 0.9).item() == pytest.approx(0.9 * 4)
    assert expectile_loss(torch.tensor([-2.0]), 0.9).item() == pytest.approx(0.1 * 4)
    assert expectile_loss(torch.tensor([1.0, -1.0]), 0.7).item() == pytest.approx((0.7 + 0.3) / 2)


def test_expectile_loss_is_minimized_at_the_expectile():
    targets = torch.tensor([0.0, 1.0, 2.0, 10.0])
    m = torch.tensor(expectile_of(targets.numpy(), 0.8), requires_grad=True)
    loss = expectile_loss(targets - m, 0.8)
    loss.backward()
    assert m.grad.abs().item() < 1e-5  # stationary, and the loss is convex in m
    for shift in (-0.1, 0.1):
        assert expectile_loss(targets - (m.detach() + shift), 0.8) > loss


def test_twin_q_and_value_shapes():
    torch.manual_seed(0)
    q, v = TwinQ(3, 2, hidden=16), ValueNet(3, hidden=16, layer_norm=True)
    obs, act = torch.randn(5, 3), torch.randn(5, 2)
    q1, q2 = q(obs, act)
    assert q1.shape == q2.shape == v(obs).shape == (5,)
    assert torch.equal(q.min(obs, act), torch.minimum(q1, q2))
    assert torch.equal(q.first(obs, act), q1)
    assert not torch.equal(q1, q2)  # independently initialized


def one_state_batch(n: int, rewards: torch.Tensor, generator: torch.Generator):
    """A single state, four discrete actions with deterministic rewards, one-step episodes."""
    idx = torch.randint(len(rewards), (n,), generator=generator)
    actions = torch.nn.functional.one_hot(idx, len(rewards)).float()
    obs = torch.zeros(n, 1)
    return obs, actions, rewards[idx], obs, torch.ones(n)


def test_iql_critic_value_converges_to_the_expectile_of_q_targets():
    torch.manual_seed(0)
    rewards = torch.tensor([0.0, 1.0, 2.0, 3.0])
    critic = IQLCritic(1, 4, hidden=32, expectile=0.9, tau=0.05, lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(600):
        info = critic.update(*one_state_batch(256, rewards, g))
    obs, actions = torch.zeros(4, 1), torch.eye(4)
    assert torch.allclose(critic.q(obs, actions), rewards, atol=0.05)
    want = expectile_of(rewards.numpy(), 0.9)  # every action equally likely in the data
    assert critic.v(obs[:1]).item() == pytest.approx(want, abs=0.05)
    assert torch.allclose(critic.advantage(obs, actions), rewards - want, atol=0.1)
    assert set(info) >= {"v_loss", "q_loss"} and all(not t.requires_grad for t in info.values())


def test_iql_critic_uses_the_discounted_next_value_unless_terminal():
    torch.manual_seed(0)
    critic = IQLCritic(1, 1, hidden=32, expectile=0.5, discount=0.9, tau=0.05, lr=3e-3)
    # s0 -> s1 with reward 0, then s1 -> end with reward 1: V(s1) = 1, Q(s0, .) = 0.9.
    obs = torch.tensor([[0.0], [1.0]]).repeat(64, 1)
    next_obs = torch.tensor([[1.0], [1.0]]).repeat(64, 1)
    reward, terminal = torch.tensor([0.0, 1.0]).repeat(64), torch.tensor([0.0, 1.0]).repeat(64)
    act = torch.zeros(128, 1)
    for _ in range(800):
        critic.update(obs, act, reward, next_obs, terminal)
    assert critic.v(torch.tensor([[1.0]])).item() == pytest.approx(1.0, abs=0.05)
    assert critic.q(torch.tensor([[0.0]]), torch.zeros(1, 1)).item() == pytest.approx(0.9, abs=0.05)


def test_iql_critic_state_dict_resumes_exactly():
    torch.manual_seed(0)
    rewards = torch.tensor([0.0, 1.0, 2.0, 3.0])
    g = torch.Generator().manual_seed(0)
    a = IQLCritic(1, 4, hidden=16)
    for _ in range(3):
        a.update(*one_state_batch(32, rewards, g))
    saved = copy.deepcopy(a.state_dict())
    torch.manual_seed(1)
    b = IQLCritic(1, 4, hidden=16)
    b.load_state_dict(saved)
    batch = one_state_batch(32, rewards, g)
    info_a, info_b = a.update(*batch), b.update(*batch)
    assert all(torch.equal(info_a[k], info_b[k]) for k in info_a)
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        if name != "_extra_state":
            assert torch.equal(ta, tb), name
