"""Diffuser: per-task defaults, inpainting through the planner, value guidance on a toy, batched
planning, checkpoints, and reaching the goal of a forged point maze."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from agent_data import POINTMAZE, random_batch, unit_stats

from algorithms import diffuser
from algorithms.common.contract import TaskInfo

TINY = {"dim": 8, "dim_mults": (1, 2), "n_diffusion_steps": 5, "horizon": 12}


def test_official_values_per_task():
    def resolved(task_id: str, kind: str = "locomotion") -> diffuser.Config:
        return diffuser.resolve_config(diffuser.Config(), TaskInfo(task_id, kind, 4, 2))

    hopper = resolved("hopper-medium-v2")
    assert (hopper.horizon, hopper.n_diffusion_steps, hopper.dim_mults) == (32, 20, (1, 2, 4, 8))
    assert (hopper.n_plans, hopper.guide_scale, hopper.t_stopgrad, hopper.action_weight) == (
        64,
        0.1,
        2,
        10.0,
    )
    assert hopper.guided and hopper.controller == "actions" and hopper.replan_every == 1
    assert resolved("hopper-medium-expert-v2").guide_scale == 0.0001
    cheetah = resolved("halfcheetah-medium-v2")
    assert (cheetah.horizon, cheetah.dim_mults, cheetah.t_stopgrad) == (4, (1, 4, 8), 4)
    umaze = resolved("pointmaze-umaze", "maze")
    assert (umaze.horizon, umaze.n_diffusion_steps, umaze.guided) == (128, 64, False)
    assert (umaze.controller, umaze.replan_every, umaze.action_weight) == ("pd", 0, 1.0)
    large = resolved("maze2d-large-v1", "maze")
    assert (large.horizon, large.n_diffusion_steps, large.dim_mults) == (384, 256, (1, 4, 8))
    assert resolved("pointmaze-medium", "maze").horizon == 256
    # explicit values win over the defaults
    own = diffuser.resolve_config(
        diffuser.Config(horizon=8), TaskInfo("hopper-medium-v2", "locomotion", 4, 2)
    )
    assert own.horizon == 8
    with pytest.raises(ValueError, match="maze"):
        diffuser.resolve_config(
            diffuser.Config(controller="pd"), TaskInfo("hopper-medium-v2", "locomotion", 4, 2)
        )


@pytest.mark.parametrize("ddim_steps", [None, 2])
def test_start_and_goal_hold_exactly_in_sampled_plans(ddim_steps):
    torch.manual_seed(0)
    agent = diffuser.Agent(
        diffuser.Config(**TINY, n_plans=3, ddim_steps=ddim_steps),
        POINTMAZE,
        unit_stats(6, 2),
        "cpu",
    )
    obs = torch.randn(4, 6)
    plans = agent.plan(obs)
    assert plans.shape == (4, 12, 2 + 4)
    states = agent.norm.unstates(plans[..., 2:])
    torch.testing.assert_close(states[:, 0], obs[:, :4])
    torch.testing.assert_close(states[:, -1, :2], obs[:, 4:])
    assert not torch.allclose(states[:, 1, :2], obs[:, :2])  # the rest is sampled


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
    actions = agent.norm.unactions(plans[..., :1])[..., 0]
    discounts = agent.cfg.value_discount ** torch.arange(plans.shape[-2], dtype=torch.float32)
    return (actions * discounts).sum(-1)


@pytest.fixture(scope="module")
def toy_agent() -> diffuser.Agent:
    """Diffuser + value trained on 1-D segments whose return is the sum of a constant action."""
    info = TaskInfo("toy-line", "toy", 1, 1)
    cfg = diffuser.Config(
        horizon=8,
        n_diffusion_steps=10,
        dim=16,
        dim_mults=(1, 2),
        lr=2e-3,
        value_lr=2e-3,
        ema_start=10_000,
        n_plans=1,
        guide_scale=0.0,
        batch_size=32,
    )
    torch.manual_seed(0)
    agent = diffuser.Agent(cfg, info, unit_stats(1, 1), "cpu")
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        agent.update(line_batch(32, 8, g, cfg.value_discount))
    return agent


def test_value_guidance_raises_the_value_of_sampled_segments(toy_agent):
    obs = torch.zeros(64, 1)
    returns = {}
    for scale in (0.0, 1.0):
        agent = copy.copy(toy_agent)
        agent.cfg = dataclasses.replace(toy_agent.cfg, guide_scale=scale)
        torch.manual_seed(1)
        returns[scale] = segment_returns(agent, agent.plan(obs)).mean().item()
    # data returns are uniform on about [-8, 8]; guidance pushes towards the top
    assert returns[1.0] > returns[0.0] + 2.0 and returns[1.0] > 5.0


def test_plans_are_ranked_by_value(toy_agent):
    agent = copy.copy(toy_agent)
    agent.cfg = dataclasses.replace(toy_agent.cfg, n_plans=16)
    torch.manual_seed(2)
    best = segment_returns(agent, agent.plan(torch.zeros(32, 1)))
    agent.cfg = dataclasses.replace(toy_agent.cfg, n_plans=1)
    torch.manual_seed(2)
    single = segment_returns(agent, agent.plan(torch.zeros(32, 1)))
    assert best.mean() > single.mean() + 2.0


def test_one_denoising_pass_plans_for_every_env(monkeypatch):
    agent = diffuser.Agent(
        diffuser.Config(**TINY, replan_every=10), POINTMAZE, unit_stats(6, 2), "cpu"
    )
    calls = []
    sample = agent.diffusion.sample
    monkeypatch.setattr(
        agent.diffusion, "sample", lambda *a, **k: calls.append(a[1]) or sample(*a, **k)
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
    agent = diffuser.Agent(diffuser.Config(**TINY, n_plans=4), info, unit_stats(3, 2), "cpu")
    agent.update(random_batch(info, 12))
    actions = agent.act(np.zeros((3, 3), np.float32))
    assert actions.shape == (3, 2) and np.abs(actions).max() <= 0.5


def test_update_returns_detached_scalars_and_state_round_trips():
    info = TaskInfo("hopper-medium-v2", "locomotion", 3, 2)
    torch.manual_seed(0)
    source = diffuser.Agent(diffuser.Config(**TINY, n_plans=2), info, unit_stats(3, 2), "cpu")
    out = source.update(random_batch(info, 12))
    assert set(out) == {"diffusion_loss", "value_loss"}
    assert all(v.dim() == 0 and not v.requires_grad for v in out.values())
    restored = diffuser.Agent(diffuser.Config(**TINY, n_plans=2), info, unit_stats(3, 2), "cpu")
    restored.load_state_dict(copy.deepcopy(source.state_dict()))
    results = []
    for agent in (source, restored):
        torch.manual_seed(3)
        loss = agent.update(random_batch(info, 12))["diffusion_loss"].item()
        agent.reset()
        torch.manual_seed(3)
        results.append((loss, agent.act(np.zeros((2, 3), np.float32))))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


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


def test_harness_runs_diffuser_on_a_forged_point_maze(tmp_path):
    from bench.run import run_overrides

    rec = run_overrides(
        [
            "algo=diffuser",
            f"task={MAZE_DATA['task']}",
            "data.scale=0.01",
            "train.steps=6",
            "train.eval_every=3",
            "train.log_every=3",
            "eval.episodes=2",
            "eval.periodic_episodes=1",
            "algo.horizon=16",
            "algo.dim=8",
            "algo.dim_mults=[1,2]",
            "algo.n_diffusion_steps=3",
            "algo.ddim_steps=2",
            "device=cpu",
            f"results_dir={tmp_path}",
        ]
    )
    assert rec["status"] == "completed", rec["failure_reason"]
    assert "success_rate" in rec["final"] and rec["timings"]["decisions_per_s"] > 0
    resolved = rec["config"]["algo_resolved"]
    assert (resolved["controller"], resolved["replan_every"], resolved["horizon"]) == ("pd", 0, 16)


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
        diffuser.Config(**MAZE_BUDGET), task_info(spec, dataset), compute_stats(dataset), "cpu"
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
