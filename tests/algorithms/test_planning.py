"""Shared planner pieces: layouts, inpainting constraints, env memories, controller, value,
inverse-dynamics acting."""

import numpy as np
import pytest
import torch

from algorithms.common.contract import DatasetStats, TaskInfo
from algorithms.common.planning import (
    Constraints,
    InverseDynamics,
    OpenLoopPlans,
    StateHistory,
    StateLayout,
    act_by_inverse_dynamics,
    best_of,
    check_warm_start,
    condition,
    follow_plan,
    guided,
    make_normalizer,
    returns_scale,
    warm_start_from,
    with_inpainting,
)
from bench.data import quantiles


def stats(obs_dim: int, act_dim: int, **kw) -> DatasetStats:
    base = {
        "obs_mean": np.arange(obs_dim, dtype=np.float32),
        "obs_std": np.full(obs_dim, 2.0, np.float32),
        "act_mean": np.zeros(act_dim, np.float32),
        "act_std": np.ones(act_dim, np.float32),
        "reward_min": 0.0,
        "reward_max": 1.0,
        "return_min": 0.0,
        "return_max": 1.0,
        "n_transitions": 100,
        "n_episodes": 2,
    }
    return DatasetStats(**{**base, **kw})


def test_layout_drops_goal_dims_and_finds_goals():
    point = StateLayout.from_info(TaskInfo("pointmaze-umaze", "maze", 6, 2, goal_dims=(4, 5)))
    obs = torch.arange(12.0).reshape(2, 6)
    assert point.state_idx == (0, 1, 2, 3) and point.is_maze
    torch.testing.assert_close(point.states(obs), obs[:, :4])
    torch.testing.assert_close(point.goal(obs), obs[:, 4:])
    maze2d = StateLayout.from_info(TaskInfo("maze2d-large-v1", "maze", 4, 2))
    torch.testing.assert_close(maze2d.goal(obs[:, :4]), torch.tensor([[7.0, 9.0]] * 2))
    hopper = StateLayout.from_info(TaskInfo("hopper-medium-v2", "locomotion", 11, 3))
    assert hopper.state_dim == 11 and not hopper.is_maze
    with pytest.raises(ValueError, match="goal"):
        StateLayout.from_info(TaskInfo("antmaze-umaze-v2", "maze", 29, 8))


def test_normalizer_round_trips_and_normalizes_goal_dims():
    layout = StateLayout.from_info(TaskInfo("pointmaze-umaze", "maze", 6, 2, goal_dims=(4, 5)))
    s = torch.randn(5, 4)
    data = {"observations": np.random.default_rng(0).normal(size=(500, 6)) * 2 + 1}
    data["actions"] = data["observations"][:, :2]
    q = {
        "obs_quantiles": quantiles(data["observations"]),
        "act_quantiles": quantiles(data["actions"]),
    }
    for name in ("gaussian", "limits", "cdf"):
        norm = make_normalizer(name, stats(6, 2, **q), layout, torch.device("cpu"))
        inside = s.clamp(-1.5, 3.5)  # inside the data's range, where every normalizer inverts
        torch.testing.assert_close(norm.unstates(norm.states(inside)), inside, atol=1e-4, rtol=0)
        torch.testing.assert_close(norm.state_dims(s[:, :2], (0, 1)), norm.states(s)[:, :2])
    with pytest.raises(ValueError, match="quantiles"):
        make_normalizer("cdf", stats(6, 2), layout, torch.device("cpu"))


def test_limits_normalizer_is_diffusers_limits_normalizer():
    """jannerm/diffuser ``LimitsNormalizer``: [min, max] -> [-1, 1], clamped to [-1, 1] before
    unnormalizing; a constant dimension (``SafeLimitsNormalizer``) gets [v - 1, v + 1]."""
    layout = StateLayout.from_info(TaskInfo("toy", "toy", 2, 1))
    obs = np.stack([np.linspace(-3.0, 5.0, 9), np.full(9, 2.0)], axis=1)
    q = {"obs_quantiles": quantiles(obs), "act_quantiles": quantiles(obs[:, :1])}
    norm = make_normalizer("limits", stats(2, 1, **q), layout, torch.device("cpu"))
    x = torch.tensor([[-3.0, 2.0], [5.0, 1.0], [1.0, 3.0]])
    torch.testing.assert_close(norm.states(x), torch.tensor([[-1.0, 0.0], [1.0, -1.0], [0.0, 1.0]]))
    torch.testing.assert_close(
        norm.unstates(torch.tensor([[2.0, -7.0]])), torch.tensor([[5.0, 1.0]])
    )


def official_cdf(data: np.ndarray, x: np.ndarray) -> np.ndarray:
    """anuragajay/decision-diffuser ``CDFNormalizer1d.normalize``: ``interp1d`` over the unique
    values and their cumulative frequencies, the input clipped to the data's range, to [-1, 1]."""
    values, counts = np.unique(data, return_counts=True)
    cumprob = np.cumsum(counts) / data.size
    return 2 * np.interp(np.clip(x, values.min(), values.max()), values, cumprob) - 1


def test_cdf_normalizer_is_decision_diffusers_within_a_quantile_step():
    rng = np.random.default_rng(1)
    obs = np.stack([rng.exponential(size=20_000), rng.integers(0, 4, size=20_000)], 1)
    layout = StateLayout.from_info(TaskInfo("toy", "toy", 2, 1))
    q = {"obs_quantiles": quantiles(obs), "act_quantiles": quantiles(obs[:, :1])}
    norm = make_normalizer("cdf", stats(2, 1, **q), layout, torch.device("cpu"))
    x = np.stack([rng.exponential(size=300) * 1.2, rng.integers(-1, 5, size=300)], 1)
    ours = norm.states(torch.as_tensor(x, dtype=torch.float32)).numpy()
    for d in range(2):
        official = official_cdf(obs[:, d], x[:, d])
        np.testing.assert_allclose(ours[:, d], official, atol=2e-3)
    assert ours.min() >= -1 and ours.max() <= 1
    y = torch.linspace(-1, 1, 11)[:, None].expand(-1, 2)
    back = norm.states(norm.unstates(y))
    torch.testing.assert_close(back[:, 0], y[:, 0], atol=1e-3, rtol=0)  # continuous dim inverts


def test_layout_goal_state_and_goal_exits():
    point = StateLayout.from_info(TaskInfo("pointmaze-umaze", "maze", 6, 2, goal_dims=(4, 5)))
    obs = torch.arange(12.0).reshape(2, 6)
    torch.testing.assert_close(
        point.goal_state(obs), torch.tensor([[4.0, 5, 0, 0], [10, 11, 0, 0]])
    )
    exits = point.goal_exits(0.5)
    assert (exits.dims, exits.radius, exits.goal_dims, exits.goal) == ((0, 1), 0.5, (4, 5), ())
    maze2d = StateLayout.from_info(TaskInfo("maze2d-umaze-v1", "maze", 4, 2))
    assert maze2d.goal_exits(0.5).goal == (1.0, 1.0)


def test_returns_scale_matches_decision_diffusers_hand_set_hopper_value():
    hopper = stats(11, 3, reward_max=4.0, return_max=3234.0)
    assert returns_scale(hopper, 0.99) == pytest.approx(400.0)
    sparse = stats(6, 2, reward_max=1.0, return_max=1.0)
    assert returns_scale(sparse, 0.99) == 1.0


def test_constraints_fix_entries_and_zero_their_loss_weight():
    cons = Constraints((2, 3, 5, 4), torch.device("cpu"))
    cons.fix(0, slice(2, None), torch.ones(2, 1, 2)).fix(-1, [0], torch.full((2, 3, 1), 7.0))
    x = cons.hook()(torch.zeros(2, 3, 5, 4))
    assert (x[:, :, 0, 2:] == 1).all() and (x[:, :, -1, 0] == 7).all()
    assert x.abs().sum() == 2 * 3 * (2 + 7)
    free = cons.free()
    assert free.sum() == 2 * 3 * (20 - 3) and free[0, 0, 0, 2] == 0
    seen = []
    model = with_inpainting(lambda x, t, c: seen.append(x) or x, cons.hook())
    model(torch.full((2, 3, 5, 4), 5.0), None, None)
    assert (seen[0][:, :, 0, 2:] == 1).all() and (seen[0][:, :, 1] == 5).all()


def test_condition_helpers_build_empty_base_and_composition():
    r = torch.rand(4, 1)
    base, cfg = guided([condition(r), condition(r + 1)], scale=1.5)
    assert (base["mask"] == 0).all() and cfg.scale == 1.5 and len(cfg.conds) == 2
    assert (cfg.conds[1]["value"] == r + 1).all() and (cfg.conds[1]["mask"] == 1).all()


def test_open_loop_plans_replan_on_age_and_reset():
    plans = OpenLoopPlans(replan_every=3)
    assert plans.due(2).all()
    plans.store(np.array([True, True]), torch.zeros(2, 5, 1))
    assert not plans.due(2).any()
    plans.advance()
    plans.advance()
    plans.reset(np.array([False, True]))
    assert plans.due(2).tolist() == [False, True]
    plans.store(np.array([False, True]), torch.ones(1, 5, 1))
    assert plans.age.tolist() == [2, 0] and plans.plans[1].eq(1).all()
    plans.advance()
    assert plans.due(2).tolist() == [True, False]
    assert plans.due(3).all()  # a new number of environments starts afresh
    plans.reset()
    assert plans.due(2).all()
    never = OpenLoopPlans(replan_every=0)
    never.store(np.array([True]), torch.zeros(1, 5, 1))
    for _ in range(10):
        never.advance()
    assert not never.due(1).any()


def test_a_warm_start_continues_each_plan_from_the_present():
    """Each due plan shifted by its age (the tail repeats its last step), noised to the step
    that leaves ``share`` of T; a cold start after a reset or with ``share=0``."""
    plans = OpenLoopPlans(replan_every=2)
    plans.store(np.array([True, True, True]), torch.arange(15.0).reshape(3, 5, 1))
    plans.advance()
    plans.store(np.array([False, True, False]), torch.arange(15.0, 20.0).reshape(1, 5, 1))
    plans.advance()
    due = np.array([True, True, True])
    warm = warm_start_from(plans, due, share=0.2, n_diffusion_steps=20)
    assert warm.step == 3  # steps 3, 2, 1, 0: a fifth of 20
    assert warm.x0[..., 0].tolist() == [
        [2.0, 3.0, 4.0, 4.0, 4.0],
        [16.0, 17.0, 18.0, 19.0, 19.0],
        [12.0, 13.0, 14.0, 14.0, 14.0],
    ]
    assert warm_start_from(plans, due, share=0.0, n_diffusion_steps=20) is None
    plans.reset(np.array([False, False, True]))
    assert warm_start_from(plans, due, share=0.2, n_diffusion_steps=20) is None
    assert warm_start_from(plans, np.array([True, True, False]), 1.0, 20).step == 19
    with pytest.raises(ValueError, match=r"algo\.warm_start=1\.5.*\[0, 1\]"):
        check_warm_start(1.5)


def test_state_history_keeps_the_last_states_and_refills_after_reset():
    history = StateHistory(3)
    h = history.push(torch.tensor([[1.0], [10.0]]))
    assert h[:, :, 0].tolist() == [[1, 1, 1], [10, 10, 10]]
    history.push(torch.tensor([[2.0], [20.0]]))
    history.reset(np.array([False, True]))
    h = history.push(torch.tensor([[3.0], [30.0]]))
    assert h[:, :, 0].tolist() == [[1, 2, 3], [30, 30, 30]]


def test_follow_plan_heads_for_the_next_waypoint_then_stops_at_the_end():
    plan = torch.zeros(1, 3, 4)
    plan[0, 1] = torch.tensor([1.0, 0.0, 2.0, 0.0])
    plan[0, 2] = torch.tensor([2.0, 1.0, 3.0, 3.0])
    state = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    a = follow_plan(plan, torch.tensor([0]), state)
    torch.testing.assert_close(a, torch.tensor([[1.0 + 1.0, 0.0]]))
    past = follow_plan(plan, torch.tensor([5]), state)  # zero target velocity past the end
    torch.testing.assert_close(past, torch.tensor([[2.0 - 1.0, 1.0]]))


def test_best_of_picks_the_highest_score_per_env():
    plans = torch.arange(2 * 3 * 2.0).reshape(2, 3, 2)
    torch.testing.assert_close(
        best_of(plans, torch.tensor([[0.0, 2, 1], [5, 0, 1]])), plans[[0, 1], [1, 0]]
    )


def test_inverse_dynamics_loss_ignores_padded_pairs():
    torch.manual_seed(0)
    inv = InverseDynamics(2, 1, 16)
    states, actions = torch.randn(3, 4, 2), torch.randn(3, 4, 1)
    mask = torch.ones(3, 4)
    mask[:, 2:] = 0
    corrupted = actions.clone()
    corrupted[:, 0] = 100.0  # pair (0, 1) is the only real one
    assert inv.loss(states, actions, mask) != inv.loss(states, corrupted, mask)
    corrupted = actions.clone()
    corrupted[:, 1:] = 100.0
    assert inv.loss(states, actions, mask) == inv.loss(states, corrupted, mask)


def test_inverse_dynamics_step_plans_due_envs_and_heads_for_the_next_planned_state():
    """Plans rise by 1 a step from the newest start state; the inverse dynamics returns the
    step ``s_next - s``, so each action shows which planned state it heads for."""
    info = TaskInfo("toy-line", "toy", 1, 1, action_low=-10.0, action_high=10.0)
    layout = StateLayout.from_info(info)
    unit = {"obs_mean": np.zeros(1, np.float32), "obs_std": np.ones(1, np.float32)}
    norm = make_normalizer("gaussian", stats(1, 1, **unit), layout, torch.device("cpu"))
    calls = []

    def plan(start, goal, target, warm):
        calls.append((start.clone(), target.clone()))
        newest = start[:, -1:] if start.dim() == 3 else start[:, None]
        return newest + torch.arange(-(k - 1.0), 4 - (k - 1.0))[None, :, None]

    def act(obs, plans, history=None):
        return act_by_inverse_dynamics(
            np.array(obs, np.float32)[:, None],
            plan,
            layout=layout,
            norm=norm,
            plans=plans,
            inverse=lambda s, s_next: s_next - s,
            info=info,
            target_return=0.5,
            history=history,
        )[:, 0].tolist()

    k, plans, history = 2, OpenLoopPlans(replan_every=0), StateHistory(2)
    assert act([0.0, 10.0], plans, history) == [1.0, 1.0]  # plans [-1, 0, 1, 2] + s, next at k
    assert act([5.0, 10.0], plans, history) == [-3.0, 2.0]  # followed open-loop: plan[3] - s
    assert act([5.0, 10.0], plans, history) == [-3.0, 2.0]  # past the end: the last state
    assert len(calls) == 1 and calls[0][0][:, :, 0].tolist() == [[0, 0], [10, 10]]
    assert calls[0][1].tolist() == [[0.5], [0.5]]
    plans.reset(np.array([False, True]))
    history.reset(np.array([False, True]))
    assert act([5.0, 3.0], plans, history) == [-3.0, 1.0]  # only the reset env plans afresh
    assert calls[1][0][:, :, 0].tolist() == [[3, 3]]
    k, plans = 1, OpenLoopPlans(replan_every=1)  # no history: start is the state, next at 1
    assert act([0.0, 7.0], plans) == [1.0, 1.0] and calls[-1][0].shape == (2, 1)
