"""HDMI: subgoal extraction, family defaults, the two-level plan's inpainting, batched acting
(the generic checks: test_contract.py)."""

import numpy as np
import pytest
import torch
from agent_data import POINTMAZE, random_batch, unit_stats

from algorithms import hdmi
from algorithms.common.contract import TaskInfo

TINY = {
    "n_subgoals": 3,
    "subgoal_interval": 4,
    "n_diffusion_steps": 5,
    "goal_width": 16,
    "goal_layers": 1,
    "goal_heads": 2,
    "dim": 8,
    "dim_mults": (1, 2),
    "inv_hidden": 16,
}


def line(positions: list[float]) -> torch.Tensor:
    return torch.tensor(positions, dtype=torch.float32).reshape(1, -1, 1)


def test_without_shortcuts_subgoals_are_every_k_steps():
    idx = hdmi.shortcut_subgoals(line(list(range(13))), n_subgoals=3, interval=4, radius=0.0)
    assert idx.tolist() == [[0, 4, 8, 12]]


def test_shortcuts_cut_a_detour_out_of_the_subgoals():
    # out to 3 and back to 0 (steps 0-6), then on to 6: the detour is cut
    positions = [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6]
    positions = [p + 0.01 * i for i, p in enumerate(positions)]  # no exact revisits
    idx = hdmi.shortcut_subgoals(line(positions), n_subgoals=7, interval=1, radius=0.1)
    along = torch.tensor(positions)[idx[0]]
    assert idx[0, -1] == 12 and (along.diff() >= 0).all()
    plain = hdmi.shortcut_subgoals(line(positions), n_subgoals=7, interval=1, radius=0.0)
    assert plain[0].tolist() == list(range(8))  # without shortcuts: the first 8 raw steps


def test_padding_collapses_and_the_last_subgoal_repeats():
    positions = [0, 1, 2, 3, 3, 3, 3, 3, 3]  # the sampler repeats an episode's last state
    idx = hdmi.shortcut_subgoals(line(positions), n_subgoals=4, interval=2, radius=0.0)
    assert torch.tensor(positions)[idx[0]].tolist() == [0, 2, 3, 3, 3]
    assert idx[0, -1] == 8


def test_family_defaults():
    stats = unit_stats(6, 2)
    umaze = hdmi.resolve(hdmi.Config(), POINTMAZE, stats)
    assert (umaze.subgoal_interval, umaze.shortcut_radius, umaze.replan_every) == (16, 0.2, 16)
    hopper = TaskInfo("hopper-medium-v2", "locomotion", 11, 3)
    loco = hdmi.resolve(hdmi.Config(), hopper, stats)
    assert (loco.subgoal_interval, loco.shortcut_radius, loco.replan_every) == (4, 0.0, 1)
    toy = hdmi.resolve(hdmi.Config(), TaskInfo("toy-bandit", "toy", 1, 1), stats)
    assert (toy.subgoal_interval, toy.shortcut_radius, toy.replan_every) == (4, 0.0, 1)
    large = TaskInfo("pointmaze-large", "maze", 6, 2, goal_dims=(4, 5))
    assert hdmi.resolve(hdmi.Config(), large, stats).subgoal_interval == 48
    own = hdmi.resolve(hdmi.Config(subgoal_interval=8), POINTMAZE, stats)
    assert own.replan_every == 8  # a plan each time a subgoal is due
    with pytest.raises(ValueError, match=r"algo\.subgoal_interval"):
        hdmi.resolve(hdmi.Config(subgoal_interval=0), POINTMAZE, stats)
    agent = hdmi.Agent(hdmi.Config(**TINY), POINTMAZE, stats, "cpu", 1)
    assert agent.data_spec.horizon == 3 * 4 + 1 and agent.data_spec.kind == "segments"


@pytest.mark.parametrize("ddim_steps", [None, 3])
def test_subgoals_start_goal_and_segment_ends_hold_exactly(ddim_steps):
    torch.manual_seed(0)
    agent = hdmi.Agent(
        hdmi.Config(**TINY, ddim_steps=ddim_steps, replan_every=0),
        POINTMAZE,
        unit_stats(6, 2),
        "cpu",
        1,
    )
    start, goal = torch.randn(4, 4), torch.randn(4, 2)
    subgoals = agent.propose_subgoals(start, goal, torch.full((4, 1), 0.9))
    assert subgoals.shape == (4, 4, 4)
    torch.testing.assert_close(subgoals[:, 0], start)
    torch.testing.assert_close(subgoals[:, -1, :2], goal)
    states = agent.fill(subgoals, 3)
    assert states.shape == (4, 13, 4)
    torch.testing.assert_close(states[:, ::4], subgoals)  # every K-th state is a subgoal


def test_acting_plans_both_levels_for_all_envs_in_one_pass_each(monkeypatch):
    torch.manual_seed(0)
    agent = hdmi.Agent(hdmi.Config(**TINY, replan_every=6), POINTMAZE, unit_stats(6, 2), "cpu", 1)
    assert agent.segments_needed() == 2
    shapes = []
    sample = agent.diffusion.sample
    monkeypatch.setattr(
        agent.diffusion, "sample", lambda *a, **k: shapes.append(a[1]) or sample(*a, **k)
    )
    agent.reset()
    obs = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    for _ in range(7):
        actions = agent.act(obs)
        assert actions.shape == (5, 2) and np.abs(actions).max() <= 1.0
    # plans at steps 0 and 6, each: one goal pass, one pass filling 2 segments for 5 envs
    assert shapes == [(5, 4, 4), (5, 2, 5, 4)] * 2


def test_update_reports_the_goal_trajectory_and_inverse_dynamics_losses():
    """(Detached scalars and the state round trip: tests/algorithms/test_contract.py.)"""
    torch.manual_seed(0)
    agent = hdmi.Agent(hdmi.Config(**TINY), POINTMAZE, unit_stats(6, 2), "cpu", 1)
    out = agent.update(random_batch(POINTMAZE, 13))
    assert set(out) == {"goal_loss", "trajectory_loss", "inverse_loss"}


class RecordingInverse(torch.nn.Module):
    """Inverse dynamics that records ``(s, s_next)`` and returns zero actions."""

    def __init__(self, act_dim: int):
        super().__init__()
        self.act_dim, self.calls = act_dim, []

    def forward(self, s: torch.Tensor, s_next: torch.Tensor) -> torch.Tensor:
        self.calls.append((s.clone(), s_next.clone()))
        return s.new_zeros(len(s), self.act_dim)


def test_inverse_dynamics_heads_for_the_plans_next_state(monkeypatch):
    """A plan starts at the current state (the first subgoal): after ``age`` steps of following
    it, the state to head for is its index ``1 + age``."""
    n = 2
    agent = hdmi.Agent(hdmi.Config(**TINY, replan_every=0), POINTMAZE, unit_stats(6, 2), "cpu", 1)
    plan = torch.arange(n * 13 * 4, dtype=torch.float32).reshape(n, 13, 4) / 100
    monkeypatch.setattr(agent, "plan", lambda start, goal, target: plan.clone())
    agent.inverse = RecordingInverse(2)
    agent.reset()
    obs = np.random.default_rng(0).normal(size=(n, 6)).astype(np.float32)
    for _ in range(5):
        agent.act(obs)
    state = agent.norm.states(torch.as_tensor(obs[:, :4]))
    assert len(agent.inverse.calls) == 5
    for age, (s, s_next) in enumerate(agent.inverse.calls):
        torch.testing.assert_close(s, state)
        torch.testing.assert_close(s_next, plan[:, 1 + age])
