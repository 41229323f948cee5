"""Diffuser: per-task defaults, inpainting through the planner, value guidance on a toy, batched
planning, and reaching the goal of a forged point maze (the contract's generic checks, state
round trip included, are in test_contract.py)."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from agent_data import POINTMAZE, random_batch, unit_stats

from algorithms import diffuser
from algorithms.common.contract import TaskInfo

TINY = {"dim": 8, "dim_mults": (1, 2), "n_diffusion_steps": 5, "horizon": 12}
LINE = TaskInfo("toy-line", "toy", 1, 1)


def test_official_values_per_task():
    def resolved(task_id: str, kind: str = "locomotion") -> diffuser.Config:
        return diffuser.resolve(diffuser.Config(), TaskInfo(task_id, kind, 4, 2), unit_stats(4, 2))

    hopper = resolved("hopper-medium-v2")
    assert (hopper.horizon, hopper.n_diffusion_steps, hopper.dim_mults) == (32, 20, (1, 2, 4, 8))
    assert (hopper.n_candidates, hopper.guide_scale, hopper.t_stopgrad, hopper.action_weight) == (
        64,
        0.1,
        2,
        10.0,
    )
    assert hopper.guided and hopper.controller == "actions" and hopper.replan_every == 1
    assert hopper.discount == 0.997
    assert resolved("hopper-medium-expert-v2").guide_scale == 0.0001
    cheetah = resolved("halfcheetah-medium-v2")
    assert (cheetah.horizon, cheetah.dim_mults, cheetah.t_stopgrad) == (4, (1, 4, 8), 4)
    umaze = resolved("pointmaze-umaze", "maze")
    assert (umaze.horizon, umaze.n_diffusion_steps, umaze.guided) == (128, 64, False)
    assert (umaze.controller, umaze.replan_every, umaze.action_weight) == ("pd", 0, 1.0)
    large = resolved("maze2d-large-v1", "maze")
    assert (large.horizon, large.n_diffusion_steps, large.dim_mults) == (384, 256, (1, 4, 8))
    assert resolved("pointmaze-medium", "maze").horizon == 256
    # the other tasks but the mazes take the locomotion values
    assert resolved("toy-line", "toy") == resolved("safe-pendulum", "safe") == hopper
    # explicit values win over the defaults
    hopper_info = TaskInfo("hopper-medium-v2", "locomotion", 4, 2)
    own = diffuser.resolve(diffuser.Config(horizon=8), hopper_info, unit_stats(4, 2))
    assert own.horizon == 8
    with pytest.raises(ValueError, match="maze"):
        diffuser.resolve(diffuser.Config(controller="pd"), hopper_info, unit_stats(4, 2))
    with pytest.raises(ValueError, match=r"algo\.controller='auto'.*valid: pd, actions"):
        diffuser.resolve(diffuser.Config(controller="auto"), hopper_info, unit_stats(4, 2))
    with pytest.raises(ValueError, match=r"algo\.normalizer='cdf'"):
        diffuser.resolve(diffuser.Config(normalizer="cdf"), hopper_info, unit_stats(4, 2))
    with pytest.raises(ValueError, match=r"algo\.goal_exit_radius"):
        diffuser.resolve(diffuser.Config(goal_exit_radius=0.5), hopper_info, unit_stats(4, 2))


def test_official_data_settings_per_task():
    """config/locomotion.py: z-scores, no clamp, -100 on terminal value targets, padded windows,
    attention in halfcheetah's U-Net; config/maze2d.py: limits, clip_denoised, unpadded windows
    over maze2d_set_terminals' episodes (radius 0.5), no penalty."""

    def resolved(task_id: str, kind: str = "locomotion") -> tuple:
        cfg = diffuser.resolve(diffuser.Config(), TaskInfo(task_id, kind, 4, 2), unit_stats(4, 2))
        return (
            cfg.normalizer,
            cfg.clip_denoised,
            cfg.termination_penalty,
            cfg.padding,
            cfg.goal_exit_radius,
            cfg.attention,
        )

    assert resolved("hopper-medium-v2") == ("gaussian", False, -100.0, True, 0.0, False)
    assert resolved("halfcheetah-medium-expert-v2")[-1] is True
    assert resolved("walker2d-medium-v2")[-1] is False
    assert resolved("maze2d-large-v1", "maze") == ("limits", True, 0.0, False, 0.5, False)
    # pointmaze-* (no official setting): limits and clamp, but the dataset's padded episodes
    assert resolved("pointmaze-umaze", "maze") == ("limits", True, 0.0, True, 0.0, False)


def test_data_spec_declares_the_official_data_reading():
    hopper = TaskInfo("hopper-medium-v2", "locomotion", 3, 2)
    spec = diffuser.Agent(diffuser.Config(**TINY), hopper, unit_stats(3, 2), "cpu", 1).data_spec
    assert (spec.terminal_reward, spec.padding, spec.goal_exits) == (-100.0, True, None)
    maze2d = TaskInfo("maze2d-umaze-v1", "maze", 4, 2)
    spec = diffuser.Agent(diffuser.Config(**TINY), maze2d, unit_stats(4, 2), "cpu", 1).data_spec
    assert (spec.terminal_reward, spec.padding) == (0.0, False)
    assert (spec.goal_exits.dims, spec.goal_exits.radius, spec.goal_exits.goal) == (
        (0, 1),
        0.5,
        (1.0, 1.0),
    )


def test_halfcheetahs_unet_has_attention():
    cheetah = TaskInfo("halfcheetah-medium-v2", "locomotion", 17, 6)
    agent = diffuser.Agent(diffuser.Config(dim=8), cheetah, unit_stats(17, 6), "cpu", 1)
    names = {type(m).__name__ for m in agent.model.modules()}
    assert "LinearAttention" in names
    hopper = TaskInfo("hopper-medium-v2", "locomotion", 11, 3)
    agent = diffuser.Agent(diffuser.Config(dim=8), hopper, unit_stats(11, 3), "cpu", 1)
    assert "LinearAttention" not in {type(m).__name__ for m in agent.model.modules()}


@pytest.mark.parametrize("ddim_steps", [None, 2])
def test_start_and_goal_hold_exactly_in_sampled_plans(ddim_steps):
    torch.manual_seed(0)
    agent = diffuser.Agent(
        diffuser.Config(**TINY, n_candidates=3, ddim_steps=ddim_steps),
        POINTMAZE,
        unit_stats(6, 2),
        "cpu",
        1,
    )
    obs = torch.rand(4, 6) * 2 - 1  # inside the limits of unit_stats' data, [-1, 1]
    plans = agent.plan(obs)
    assert plans.shape == (4, 12, 2 + 4)
    states = agent.planner.norm.unstates(plans[..., 2:])
    torch.testing.assert_close(states[:, 0], obs[:, :4])
    # the goal at rest, [goal, 0, 0] (plan_maze2d.py)
    torch.testing.assert_close(states[:, -1], torch.cat([obs[:, 4:], torch.zeros(4, 2)], -1))
    assert not torch.allclose(states[:, 1, :2], obs[:, :2])  # the rest is sampled


def test_training_inpaints_a_maze_windows_whole_first_and_last_states():
    """GoalDataset: conditions {0: obs[0], H - 1: obs[-1]}, whole states, carry no loss."""
    agent = diffuser.Agent(diffuser.Config(**TINY), POINTMAZE, unit_stats(6, 2), "cpu", 1)
    seg = agent.planner.segments(random_batch(POINTMAZE, 12))
    fixed = seg.weights == 0
    assert fixed[:, 0, 2:].all() and fixed[:, -1, 2:].all()  # states, not actions
    assert not fixed[:, 1:-1].any() and not fixed[:, :, :2].any()
    torch.testing.assert_close(
        seg.inpaint(torch.zeros_like(seg.x0))[:, -1], seg.x0[:, -1] * fixed[:, -1]
    )


def line_batch(batch: int, horizon: int, g: torch.Generator, discount: float) -> dict:
    """1-D toy: state = running sum of actions; reward = action; each window is an episode."""
    actions = (torch.rand(batch, 1, 1, generator=g) * 2 - 1).expand(batch, horizon, 1)
    actions = actions + 0.1 * torch.randn(batch, horizon, 1, generator=g)
    states = torch.cumsum(actions, dim=1) - actions
    discounts = discount ** torch.arange(horizon, dtype=torch.float32)
    rtg = torch.flip(torch.cumsum(torch.flip(actions[..., 0] * discounts, [1]), 1), [1]) / discounts
    return {
        "observations": states,
        "actions": actions,
        "returns_to_go": rtg,
        "mask": torch.ones(batch, horizon),
    }


def segment_returns(agent: diffuser.Agent, plans: torch.Tensor) -> torch.Tensor:
    actions = agent.planner.norm.unactions(plans[..., :1])[..., 0]
    discounts = agent.cfg.discount ** torch.arange(plans.shape[-2], dtype=torch.float32)
    return (actions * discounts).sum(-1)


@pytest.fixture(scope="module")
def toy_agent() -> diffuser.Agent:
    """Diffuser + value trained on 1-D segments whose return is the sum of a constant action."""
    cfg = diffuser.Config(
        horizon=8,
        n_diffusion_steps=10,
        dim=16,
        dim_mults=(1, 2),
        lr=2e-3,
        value_lr=2e-3,
        ema_start=10_000,
        n_candidates=1,
        guide_scale=0.0,
        batch_size=32,
    )
    torch.manual_seed(0)
    agent = diffuser.Agent(cfg, LINE, unit_stats(1, 1), "cpu", 200)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        agent.update(line_batch(32, 8, g, agent.cfg.discount))
    return agent


def variant(agent: diffuser.Agent, **settings) -> diffuser.Agent:
    """An agent with ``agent``'s trained state and other acting settings."""
    cfg = dataclasses.replace(agent.cfg, **settings)
    other = diffuser.Agent(cfg, LINE, unit_stats(1, 1), "cpu", 200)
    other.load_state_dict(copy.deepcopy(agent.state_dict()))
    return other


def test_value_guidance_raises_the_value_of_sampled_segments(toy_agent):
    obs = torch.zeros(64, 1)
    returns = {}
    for scale in (0.0, 1.0):
        agent = variant(toy_agent, guide_scale=scale)
        torch.manual_seed(1)
        returns[scale] = segment_returns(agent, agent.plan(obs)).mean().item()
    # data returns are uniform on about [-8, 8]; guidance pushes towards the top
    assert returns[1.0] > returns[0.0] + 2.0 and returns[1.0] > 5.0


def test_plans_are_ranked_by_value(toy_agent):
    agent = variant(toy_agent, n_candidates=16)
    torch.manual_seed(2)
    best = segment_returns(agent, agent.plan(torch.zeros(32, 1)))
    agent = variant(toy_agent, n_candidates=1)
    torch.manual_seed(2)
    single = segment_returns(agent, agent.plan(torch.zeros(32, 1)))
    assert best.mean() > single.mean() + 2.0


def test_one_denoising_pass_plans_for_every_env(monkeypatch):
    agent = diffuser.Agent(
        diffuser.Config(**TINY, replan_every=10), POINTMAZE, unit_stats(6, 2), "cpu", 1
    )
    calls = []
    sample = agent.planner.diffusion.sample
    monkeypatch.setattr(
        agent.planner.diffusion, "sample", lambda *a, **k: calls.append(a[1]) or sample(*a, **k)
    )
    obs = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    agent.reset()
    for _ in range(4):
        actions = agent.act(obs)
    assert actions.shape == (5, 2) and actions.dtype == np.float32 and np.abs(actions).max() <= 1
    assert calls == [(5, 1, 12, 6)]  # one pass at the first step, then open loop
    agent.reset(np.array([False, True, False, False, True]))
    agent.act(obs)
    assert calls[-1] == (2, 1, 12, 6)  # only the two reset envs plan again
    agent.act(obs)
    assert len(calls) == 2
    agent.act(obs[:3])  # a new set of environments
    assert calls[-1] == (3, 1, 12, 6)


def test_locomotion_acts_with_the_first_planned_action_of_the_best_plan():
    info = TaskInfo("hopper-medium-v2", "locomotion", 3, 2, action_low=-0.5, action_high=0.5)
    agent = diffuser.Agent(
        diffuser.Config(**TINY, n_candidates=4), info, unit_stats(3, 2), "cpu", 1
    )
    agent.update(random_batch(info, 12))
    actions = agent.act(np.zeros((3, 3), np.float32))
    assert actions.shape == (3, 2) and np.abs(actions).max() <= 0.5


def test_update_trains_a_value_model_only_when_guided():
    hopper = TaskInfo("hopper-medium-v2", "locomotion", 3, 2)
    guided = diffuser.Agent(diffuser.Config(**TINY), hopper, unit_stats(3, 2), "cpu", 1)
    assert set(guided.update(random_batch(hopper, 12))) == {"diffusion_loss", "value_loss"}
    maze = diffuser.Agent(diffuser.Config(**TINY), POINTMAZE, unit_stats(6, 2), "cpu", 1)
    assert maze.value is None and maze.value_ema is None and maze.value_optimizer is None
    assert set(maze.update(random_batch(POINTMAZE, 12))) == {"diffusion_loss"}


# ---------------------------------------------------------------------------------- point maze

# The budget that reaches the goal on 2 CPU cores (bench/conf/grid/planners-pointmaze.yaml uses it): the official umaze
# horizon and acting (one plan per episode, followed by the PD controller), a narrower U-Net,
# 8 diffusion steps instead of 64, a larger learning rate and a short EMA.
MAZE_BUDGET = {
    "horizon": 128,
    "dim": 16,
    "dim_mults": (1, 2, 4),
    "n_diffusion_steps": 8,
    "batch_size": 32,
    "lr": 2e-3,
    "ema_start": 400,
    "ema_every": 1,
    "ema_decay": 0.99,
}
MAZE_STEPS = 3000
MAZE_DATA = {"task": "pointmaze-umaze", "scale": 0.05}


class StraightToGoal:
    """The baseline the planner must beat: the controller aimed straight at the goal."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.clip((obs[:, 4:6] - obs[:, :2]) - obs[:, 2:4], -1.0, 1.0)

    def reset(self, done=None) -> None:
        pass


@pytest.mark.slow
def test_reaches_the_goal_of_a_forged_point_maze():
    from bench.data import compute_stats, make_sampler
    from bench.evaluate import evaluate
    from bench.run import task_info
    from tasks.registry import get_task
    from tasks.sources import load_dataset

    torch.manual_seed(0)
    spec = get_task(MAZE_DATA["task"])
    dataset = load_dataset(spec, scale=MAZE_DATA["scale"], verbose=False)
    agent = diffuser.Agent(
        diffuser.Config(**MAZE_BUDGET),
        task_info(spec, dataset),
        compute_stats(dataset),
        "cpu",
        MAZE_STEPS,
    )
    sampler = make_sampler(dataset, agent.data_spec, torch.device("cpu"), seed=0)
    for _ in range(MAZE_STEPS):
        agent.update(sampler.sample())
    refs = {"ref_min": dataset.ref_min_score, "ref_max": dataset.ref_max_score}
    torch.manual_seed(0)
    planned = evaluate(agent, spec, 20, seed=10_000, **refs)
    straight = evaluate(StraightToGoal(), spec, 20, seed=10_000, **refs)
    assert straight.successes.mean() < 0.7  # half the starts need the way round the U
    assert planned.successes.mean() >= 0.8
