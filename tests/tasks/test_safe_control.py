"""Safe-control tasks: the two envs, their costs, and the SAC replay-buffer forge at tiny scales."""

import math

import gymnasium as gym
import numpy as np
import pytest

from tasks.envs import make_env
from tasks.forge import forge
from tasks.forge.safe_control import forge_safe_control
from tasks.registry import get_task
from tasks.safe_control import REACHER_TARGET
from tasks.safety import pendulum_cost, reacher_cost, reacher_fingertip
from tasks.sources import load_dataset

# Scales of a few whole episodes: pendulum 2 x 200 steps (SAC collects only, no update yet);
# reacher 22 x 50 = 1,100 steps, so SAC makes 100 updates after its 1,000 warm-up steps.
PENDULUM_SCALE = 2 / 500
REACHER_SCALE = 22 / 4000
D4RL_KEYS = {"observations", "actions", "rewards", "next_observations", "terminals", "timeouts"}


def pendulum_obs(degrees) -> np.ndarray:
    theta = np.radians(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)], axis=-1)


def reacher_obs(fingertip_xy) -> np.ndarray:
    """Reacher observations whose fingertip is ``fingertip_xy`` (target entries (1, 1))."""
    fingertip_xy = np.atleast_2d(fingertip_xy)
    obs = np.zeros((len(fingertip_xy), 10))
    obs[:, 4:6] = REACHER_TARGET[:2]
    obs[:, 8:10] = fingertip_xy - REACHER_TARGET[:2]
    return obs


# ------------------------------------------------------------------------------------ envs


def test_safe_pendulum_is_pendulum_v1():
    ours, theirs = make_env(get_task("safe-pendulum")), gym.make("Pendulum-v1")
    obs, info = ours.reset(seed=3)
    ref, _ = theirs.reset(seed=3)
    assert obs.shape == (3,) and obs.dtype == np.float32 and info["cost"] == 0.0
    np.testing.assert_array_equal(obs, ref)
    for t in range(200):
        action = np.array([math.sin(t / 7.0) * 2.0], dtype=np.float32)
        previous = obs
        obs, reward, terminated, truncated, info = ours.step(action)
        ref, ref_reward, _, ref_truncated, _ = theirs.step(action)
        np.testing.assert_array_equal(obs, ref)
        assert reward == ref_reward and not terminated and truncated == ref_truncated
        assert info["cost"] == pendulum_cost(previous.astype(np.float64))  # pre-step state
    assert truncated  # 200 steps


def test_safe_reacher_layout_reward_and_fingertip():
    env = make_env(get_task("safe-reacher"))
    mj = env.unwrapped
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for t in range(50):
        assert obs.shape == (10,) and obs.dtype == np.float32
        np.testing.assert_allclose(obs[4:6], [1.0, 1.0])
        q = mj.data.qpos[:2]
        np.testing.assert_allclose(obs[:4], np.r_[np.cos(q), np.sin(q)], atol=1e-6)
        np.testing.assert_allclose(obs[6:8], mj.data.qvel[:2], rtol=1e-6, atol=1e-6)
        tip = mj.data.body("fingertip").xpos
        np.testing.assert_allclose(reacher_fingertip(obs), tip[:2], atol=1e-6)
        action = rng.uniform(-1, 1, 2).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        tip = mj.data.body("fingertip").xpos  # after the step
        expected = -math.hypot(tip[0] - 1.0, tip[1] - 1.0) - float(np.sum(action**2))
        assert reward == pytest.approx(expected, abs=1e-9) and not terminated
        assert reward == pytest.approx(-np.linalg.norm(obs[8:10]) - np.sum(action**2), abs=1e-5)
        assert truncated == (t == 49)  # 50 steps


def test_reacher_cost_in_the_env_only_at_full_reach_towards_the_disc():
    """The arm (reach 0.21) enters the disc (0.5, 0.5; 0.5) only stretched along the diagonal."""
    mj = gym.make("diffrl/SafeReacher-v0").unwrapped
    mj.reset(seed=0)
    costs = {}
    for name, q in (("diagonal", (math.pi / 4, 0.0)), ("off", (math.pi / 4 + 0.3, 0.0))):
        mj.set_state(np.r_[q, mj.data.qpos[2:]], np.zeros(mj.model.nv))
        obs = mj._get_obs()
        np.testing.assert_allclose(reacher_fingertip(obs), mj.data.body("fingertip").xpos[:2])
        costs[name] = float(reacher_cost(obs))
    depth = 0.5 - (math.sqrt(0.5) - 0.21)
    assert costs["diagonal"] == pytest.approx(100 * depth / 0.5, abs=1e-6) and costs["off"] == 0


# ------------------------------------------------------------------------------------ costs


def test_pendulum_cost_positive_exactly_in_the_hazard_band():
    degrees = np.arange(-180.0, 180.0, 0.5)
    costs = pendulum_cost(pendulum_obs(degrees))
    in_band = (degrees > 20 - 45) & (degrees < 30 + 45)
    np.testing.assert_array_equal(costs > 0, in_band)
    np.testing.assert_allclose(costs[in_band], (50 - np.abs(degrees[in_band] - 25)) / 50, atol=1e-9)
    checks = {25: 1.0, 20: 0.9, 30: 0.9, 0: 0.5, 70: 0.1, -20: 0.1, -30: 0.0, 80: 0.0, 180: 0.0}
    for angle, expected in checks.items():
        assert float(pendulum_cost(pendulum_obs(angle))) == pytest.approx(expected, abs=1e-9)


def test_reacher_cost_positive_inside_the_disc_only():
    center = np.array([0.5, 0.5])
    angles = np.linspace(0, 2 * np.pi, 13)
    for radius, expected in ((0.0, 100.0), (0.25, 50.0), (0.4, 20.0), (0.5, 0.0), (0.7, 0.0)):
        tips = center + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        np.testing.assert_allclose(reacher_cost(reacher_obs(tips)), expected, atol=1e-9)
    assert reacher_cost(reacher_obs([0.0, 0.0]))[0] == 0.0  # the arm's base


# ------------------------------------------------------------------------------------ forge


def check_layout(arrays: dict, obs_dim: int, act_dim: int, bound: float, episode: int) -> None:
    assert set(arrays) >= D4RL_KEYS
    n = len(arrays["observations"])
    assert n % episode == 0
    for key, width in (("observations", obs_dim), ("next_observations", obs_dim)):
        assert arrays[key].shape == (n, width) and arrays[key].dtype == np.float32
    assert arrays["actions"].shape == (n, act_dim) and arrays["actions"].dtype == np.float32
    assert arrays["rewards"].shape == (n,) and arrays["rewards"].dtype == np.float32
    assert not arrays["terminals"].any()
    np.testing.assert_array_equal(
        np.flatnonzero(arrays["timeouts"]) + 1, np.arange(1, n // episode + 1) * episode
    )
    inside = ~arrays["timeouts"][:-1]
    np.testing.assert_array_equal(
        arrays["next_observations"][:-1][inside], arrays["observations"][1:][inside]
    )
    assert np.abs(arrays["actions"]).max() <= bound + 1e-6


def test_reacher_forge_layout_and_determinism():
    spec = get_task("safe-reacher")
    arrays, attrs = forge_safe_control(spec, REACHER_SCALE, seed=0, progress=False)
    check_layout(arrays, obs_dim=10, act_dim=2, bound=1.0, episode=50)
    assert len(arrays["observations"]) == 1100
    np.testing.assert_allclose(arrays["observations"][:, 4:6], 1.0)
    assert attrs["params"]["sac_steps"] == 1100 and attrs["params"]["episodes"] == 22
    assert np.isfinite(attrs["ref_min_score"]) and np.isfinite(attrs["ref_max_score"])
    again, attrs_again = forge_safe_control(spec, REACHER_SCALE, seed=0, progress=False)
    for key, value in arrays.items():
        np.testing.assert_array_equal(value, again[key], err_msg=key)
    assert attrs_again == attrs
    other, other_attrs = forge_safe_control(spec, REACHER_SCALE, seed=1, progress=False)
    assert not np.array_equal(other["observations"], arrays["observations"])
    assert not np.array_equal(other["actions"], arrays["actions"])
    assert other_attrs["ref_min_score"] == attrs["ref_min_score"]  # does not depend on the seed
    assert other_attrs["ref_max_score"] != attrs["ref_max_score"]


def test_pendulum_forges_on_first_use_and_labels_costs():
    spec = get_task("safe-pendulum")
    dataset = load_dataset(spec, scale=PENDULUM_SCALE, verbose=False)  # nothing forged before
    path = forge(spec, scale=PENDULUM_SCALE, seed=0, progress=False)  # reuses the file
    assert dataset.provenance.path == str(path) and dataset.provenance.protocol == "safe_control"
    arrays = dataset.arrays
    check_layout(arrays, obs_dim=3, act_dim=1, bound=2.0, episode=200)
    assert len(arrays["observations"]) == 400 and dataset.provenance.n_episodes == 2
    np.testing.assert_allclose(np.linalg.norm(arrays["observations"][:, :2], axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(
        arrays["costs"], pendulum_cost(arrays["observations"]).astype(np.float32)
    )
    assert dataset.ref_min_score < 0 and np.isfinite(dataset.ref_max_score)
