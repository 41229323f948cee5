"""Safe-task definitions: barriers, costs, budgets, the cost wrapper and cost-labelled data."""

import math

import numpy as np
import pytest
import torch

from tasks.envs import make_env
from tasks.registry import POINTMAZE_UMAZE_OBSTACLES, TREBI_MAX_COST, get_task, list_tasks
from tasks.safety import (
    Ceiling,
    Safety,
    SuperEllipse,
    barrier_values,
    dataset_costs,
    dataset_x_velocity,
    episode_costs,
    pendulum_cost,
    resolve_budget,
)
from tasks.sources import load_dataset

BARRIERS = [
    SuperEllipse(dims=(0, 1), center=(0.5, -1.0), radii=(1.0, 2.0), power=2),
    SuperEllipse(dims=(1, 2), center=(0.0, 0.3), radii=(0.7, 0.7), power=4, keep_out=False),
    Ceiling(dim=2, limit=1.5),
    Ceiling(dim=0, limit=-0.5, upper=False),
]


@pytest.mark.parametrize("barrier", BARRIERS, ids=lambda b: type(b).__name__)
def test_barrier_gradient_matches_autograd_and_numpy_matches_torch(barrier):
    states = torch.randn(64, 4, dtype=torch.float64, requires_grad=True)
    values = barrier.value(states)
    (auto,) = torch.autograd.grad(values.sum(), states)
    analytic = barrier.gradient(states.detach())
    torch.testing.assert_close(analytic, auto[:, list(barrier.dims)])
    np.testing.assert_allclose(barrier.value(states.detach().numpy()), values.detach().numpy())


@pytest.mark.parametrize("barrier", BARRIERS, ids=lambda b: type(b).__name__)
def test_boundary_points_lie_on_the_boundary_in_numpy_and_torch(barrier):
    states = torch.randn(64, 4, dtype=torch.float64)
    points = barrier.boundary_point(states)
    assert points.shape == (64, len(barrier.dims))
    on = states.clone()
    on[:, list(barrier.dims)] = points
    torch.testing.assert_close(barrier.value(on), torch.zeros(64, dtype=torch.float64))
    np.testing.assert_allclose(barrier.boundary_point(states.numpy()), points.numpy())


def test_super_ellipse_signs_inside_and_outside():
    disc = SuperEllipse(dims=(0, 1), center=(1.0, 0.0), radii=(0.3, 0.3))
    points = np.array([[1.0, 0.0], [1.0, 0.29], [1.0, 0.31], [2.0, 2.0]])
    assert (disc.value(points) < 0).tolist() == [True, True, False, False]
    square = SuperEllipse(dims=(0, 1), center=(0.0, 0.0), radii=(1.0, 1.0), power=4)
    corner = np.array([[0.8, 0.8]])  # outside the unit circle, inside the power-4 super-ellipse
    assert square.value(corner)[0] < 0 and (corner**2).sum() > 1
    with pytest.raises(ValueError, match="even"):
        SuperEllipse(dims=(0,), center=(0.0,), radii=(1.0,), power=3)


def test_pendulum_cost_is_positive_only_in_the_hazard_band():
    degrees = np.array([-30.0, -19.0, 0.0, 25.0, 60.0, 74.0, 76.0, 180.0])
    theta = np.radians(degrees)
    obs = np.stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)], axis=1)
    expected = np.where(np.abs(degrees - 25) <= 50, (50 - np.abs(degrees - 25)) / 50, 0.0)
    np.testing.assert_allclose(pendulum_cost(obs), expected, atol=1e-9)
    assert pendulum_cost(obs)[3] == pytest.approx(1.0)


def test_velocity_from_qpos_per_episode():
    x = np.array([0.0, 0.1, 0.3, 0.6, 5.0, 5.2])  # two episodes: 4 steps, 2 steps
    arrays = {"infos/qpos": np.stack([x, np.ones_like(x)], axis=1)}
    vel = dataset_x_velocity(arrays, np.array([4, 6]), "hopper")
    np.testing.assert_allclose(vel, np.array([0.1, 0.2, 0.3, 0.3, 0.2, 0.2]) / 0.008)
    arrays["infos/x_velocity"] = np.full(6, -2.0)
    np.testing.assert_allclose(dataset_x_velocity(arrays, np.array([4, 6]), "hopper"), -2.0)


def test_budget_rules():
    safety = Safety(cost="velocity", reference_cost=100.0, cost_discount=0.5, budget_ratio=0.3)
    costs, ends = np.array([1.0, 1.0, 1.0, 4.0]), np.array([3, 4])
    np.testing.assert_allclose(episode_costs(costs, ends, 0.5), [1.75, 4.0])
    assert resolve_budget(safety, costs, ends, "d4rl")[0] == pytest.approx(30.0)
    assert resolve_budget(safety, costs, ends, "forged")[0] == pytest.approx(0.3 * 4.0)
    assert resolve_budget(safety, costs, ends, "forged", budget_ratio=1.0)[0] == 4.0
    assert resolve_budget(safety, costs, ends, "forged", budget=7.0) == (7.0, {"rule": "absolute"})


def test_safe_tasks_share_their_base_dataset_and_constants():
    safe = [t for t in list_tasks() if get_task(t).safety is not None]
    assert len(safe) == 18
    for task_id in safe:
        spec = get_task(task_id)
        if spec.dataset_task is not None:
            base = get_task(spec.dataset_task)
            assert (spec.env_id, spec.d4rl_file, spec.ref_max_score) == (
                base.env_id,
                base.d4rl_file,
                base.ref_max_score,
            )
    assert (
        get_task("velocity-hopper-medium-v2").safety.reference_cost
        == TREBI_MAX_COST["hopper-medium-v2"]
    )


def test_cost_wrapper_puts_the_velocity_cost_on_every_step():
    env = make_env(get_task("velocity-hopper-medium-v2"))
    _, info = env.reset(seed=0)
    assert info["cost"] == 0.0
    for _ in range(5):
        _, _, _, _, info = env.step(env.action_space.sample())
        assert info["cost"] == pytest.approx(abs(info["x_velocity"]))
    env.close()


def test_obstacle_costs_label_the_dataset_and_the_env_alike():
    spec = get_task("obstacles-pointmaze-umaze")
    data = load_dataset(spec, scale=0.01, verbose=False)
    a = data.arrays
    inside = barrier_values(POINTMAZE_UMAZE_OBSTACLES, a["next_observations"]).min(-1) < 0
    np.testing.assert_array_equal(a["costs"], inside.astype(np.float32))
    assert 0 < a["costs"].mean() < 0.5  # the forged paths cross the disc, but not always
    assert np.array_equal(dataset_costs(spec.safety, a, data.episode_ends()), a["costs"])
    base = load_dataset(get_task("pointmaze-umaze"), scale=0.01, verbose=False)
    assert base.provenance.sha256 == data.provenance.sha256 and "costs" not in base.arrays
    env = make_env(spec)
    env.reset(seed=0)
    env.unwrapped.point_env.set_state(np.array([1.0, 0.05]), np.zeros(2))
    _, _, _, _, info = env.step(np.zeros(2))
    assert info["cost"] == 1.0
    assert math.isclose(
        float(barrier_values(spec.safety.barriers, np.array([[1.0, 0.2]]))[0, 0]),
        (0.2 / 0.3) ** 2 - 1,
    )
    env.close()


def test_episodes_start_outside_the_obstacles_reproducibly():
    spec = get_task("obstacles-pointmaze-umaze")
    env = make_env(spec)
    starts = []
    for seed in range(200):
        obs, _ = env.reset(seed=seed)
        starts.append(obs)
    starts = np.asarray(starts)
    assert barrier_values(spec.safety.barriers, starts).min() >= 0
    again = np.asarray([make_env(spec).reset(seed=seed)[0] for seed in (3, 150)])
    np.testing.assert_array_equal(again, starts[[3, 150]])
    plain = make_env(get_task("pointmaze-umaze"))
    plain_starts = np.asarray([plain.reset(seed=seed)[0] for seed in range(200)])
    assert barrier_values(spec.safety.barriers, plain_starts).min() < 0  # the redraw is exercised
    env.close()
