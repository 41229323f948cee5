"""Diffuser's shared machinery: paper settings that variants extend, the segment value's loss and
guidance, and a variant's hooks in the planning pass."""

import numpy as np
import torch
from agent_data import unit_stats

from algorithms.common.contract import TaskInfo
from algorithms.common.defaults import Settings
from algorithms.common.diffuser_core import (
    DIFFUSER_PAPER,
    DiffuserConfig,
    DiffuserPlanner,
    PlanHooks,
    Segments,
    make_value,
    optimize,
    resolve_diffuser,
    value_loss,
)
from algorithms.common.diffusion import GaussianDiffusion, value_gradient
from algorithms.common.schedules import make_betas

HOPPER = TaskInfo("hopper-medium-expert-v2", "locomotion", 3, 2)


def test_a_variant_extends_diffusers_settings_entry_by_entry():
    extended = DIFFUSER_PAPER.extend(
        families={
            "default": Settings("variant, all tasks", {"n_candidates": 8}),
            "safe": Settings("variant, safe tasks", {"horizon": 16}),
        }
    )
    cfg = resolve_diffuser(DiffuserConfig(), extended, HOPPER)
    # the variant's value wins, the rest of the entry and the dataset's override stay
    assert (cfg.n_candidates, cfg.horizon, cfg.guide_scale) == (8, 32, 0.0001)
    assert extended.sources(HOPPER)[0].endswith("; variant, all tasks")
    pendulum = TaskInfo("safe-pendulum", "safe", 3, 1)
    assert resolve_diffuser(DiffuserConfig(), extended, pendulum).horizon == 16
    assert DIFFUSER_PAPER.for_task(HOPPER)["n_candidates"] == 64  # the base is unchanged


def test_segment_value_learns_returns_of_noisy_segments_and_guides_uphill():
    """The value of a segment is the sum of its first channel; guidance raises it."""
    torch.manual_seed(0)
    diffusion = GaussianDiffusion(make_betas("cosine", 10), predict_epsilon=False, event_dims=2)
    cfg = DiffuserConfig(
        horizon=8, dim=8, dim_mults=(1, 2), ema_decay=0.9, ema_start=0, ema_every=1
    )
    net, ema, optimizer = make_value(cfg, 2, 3e-3, torch.device("cpu"))
    for _ in range(300):
        x0 = torch.randn(64, 8, 2)
        seg = Segments(x0, lambda x: x, torch.ones_like(x0))
        optimize(value_loss(diffusion, net, seg, x0[..., 0].sum(-1)), optimizer, ema, net)
    x = torch.randn(256, 8, 2)
    t = torch.zeros(256, dtype=torch.long)
    pred, truth = ema.model(x, t), x[..., 0].sum(-1)
    assert torch.corrcoef(torch.stack([pred, truth]))[0, 1] > 0.8
    moved = x + value_gradient(ema.model)(x, t)
    assert ema.model(moved, t).mean() > ema.model(x, t).mean() + 1.0
    assert moved[..., 0].sum(-1).mean() > x[..., 0].sum(-1).mean() + 1.0


def test_a_variants_hooks_act_in_the_planning_pass():
    """A guide term adds to the value's gradient, the projection edits every denoising step and
    the score replaces the values in the ranking."""
    cfg = resolve_diffuser(
        DiffuserConfig(horizon=4, n_diffusion_steps=3, n_candidates=3, t_stopgrad=0),
        DIFFUSER_PAPER,
        HOPPER,
    )
    planner = DiffuserPlanner(cfg, HOPPER, unit_stats(3, 2), torch.device("cpu"))

    def value(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x[..., 0, 0]  # the first action entry

    def term(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, 2.0)

    x, t = torch.randn(2, 3, 4, 5), torch.zeros(2, 3, dtype=torch.long)
    grad = planner.guidance(value, term).grad_fn(x, t)
    expected = torch.full_like(x, 2.0)
    expected[..., 0, 0] += 1.0
    torch.testing.assert_close(grad, expected)

    steps = []

    def projection(x_prev: torch.Tensor, x_t: torch.Tensor, t: int) -> torch.Tensor:
        steps.append(t)
        return x_prev.clamp(-0.5, 0.5)

    def model(x: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        return torch.zeros_like(x)

    def lowest_first(plans: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return -values

    obs = torch.zeros(2, 3)
    hooks = PlanHooks(projection=projection, score=lowest_first)
    plans = planner.plan(obs, model, value, hooks)
    assert steps == [2, 1, 0] and plans.shape == (2, 4, 5) and plans.abs().max() <= 0.5
    chosen = planner.rank(x, value, lowest_first)
    torch.testing.assert_close(chosen[:, 0, 0], x[..., 0, 0].min(1).values)


def test_replans_warm_start_from_the_plan_being_followed():
    """With ``warm_start`` a replan visits only its share of the T steps, and starts cold again
    for every due environment once one of them was reset."""
    cfg = resolve_diffuser(
        DiffuserConfig(
            horizon=4, n_diffusion_steps=10, n_candidates=1, replan_every=1, warm_start=0.3
        ),
        DIFFUSER_PAPER,
        HOPPER,
    )
    planner = DiffuserPlanner(cfg, HOPPER, unit_stats(3, 2), torch.device("cpu"))
    visits = []

    def plan(obs, context, warm):
        steps = []
        hooks = PlanHooks(projection=lambda x_prev, x_t, t: steps.append(t) or x_prev)
        plans = planner.plan(obs, lambda x, t, c: torch.zeros_like(x), None, hooks, warm)
        visits.append(len(steps))
        return plans

    obs = np.zeros((2, 3), dtype=np.float32)
    planner.act(obs, plan)
    planner.act(obs, plan)
    planner.reset(np.array([True, False]))
    planner.act(obs, plan)
    planner.act(obs, plan)
    assert visits == [10, 3, 10, 3]
