"""The shared policy pieces: the action box's map, the tanh policy, and deterministic acting (the
acting step of BC, TD3+BC and IQL)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.common.contract import TaskInfo
from algorithms.common.nets import ObsNormalizer
from algorithms.common.policies import ActionBox, TanhPolicy, act_deterministic

ASYMMETRIC = TaskInfo("linear", "toy", 3, 2, action_low=-0.1, action_high=0.3)


def test_action_box_maps_onto_the_unit_interval_and_back():
    box = ActionBox.of(ASYMMETRIC)
    act = torch.tensor([-0.1, 0.1, 0.3])
    torch.testing.assert_close(box.to_unit(act), torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(box.from_unit(box.to_unit(act)), act)
    assert box.clamp(torch.tensor([-5.0, 0.2, 5.0])).tolist() == pytest.approx([-0.1, 0.2, 0.3])


def test_tanh_policy_spans_an_asymmetric_box():
    torch.manual_seed(0)
    policy = TanhPolicy(ASYMMETRIC, hidden=16, depth=2)
    with torch.no_grad():
        policy.net[-2].bias.fill_(100.0)  # saturate tanh at +1
    assert torch.allclose(policy(torch.zeros(4, 3)), torch.full((4, 2), 0.3))


def test_act_deterministic_is_batched_inside_the_box_and_keeps_train_mode():
    torch.manual_seed(0)
    policy = TanhPolicy(ASYMMETRIC, hidden=16, depth=2)
    normalize = ObsNormalizer(np.full(3, 5.0, np.float32), np.full(3, 0.01, np.float32), "cpu")
    obs = np.random.default_rng(1).normal(0, 100, (7, 3)).astype(np.float32)
    actions = act_deterministic(policy, normalize, obs)
    assert actions.shape == (7, 2) and actions.dtype == np.float32
    assert actions.min() >= -0.1 and actions.max() <= 0.3
    assert policy.training
    with torch.no_grad():
        want = policy((torch.as_tensor(obs) - 5.0) / 0.01)
    np.testing.assert_array_equal(actions, want.numpy())
