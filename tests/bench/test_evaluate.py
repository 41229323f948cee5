"""The evaluator's safety metrics against single-env rollouts of the same scripted policy, and its
seeding of an agent's sampling noise."""

import numpy as np
import pytest
import torch

from bench.evaluate import evaluate
from tasks.envs import make_env
from tasks.registry import get_task
from tasks.safety import barrier_values


class TowardsPoint:
    """A deterministic controller that drives a point maze's ball towards ``target``; it records
    the costs the evaluator reports through ``observe_cost``."""

    def __init__(self, target=(1.0, 0.0)):
        self.target = np.asarray(target)
        self.observed: list[np.ndarray] = []

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.clip(2.0 * (self.target - obs[:, :2]) - 0.5 * obs[:, 2:4], -1, 1)

    def reset(self, done=None) -> None:
        pass

    def observe_cost(self, costs: np.ndarray) -> None:
        self.observed.append(costs.copy())


class Sway:
    """A deterministic open-loop hopper policy (a sine on every joint)."""

    def __init__(self):
        self.t = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        self.t += 1
        return np.full((len(obs), 3), np.sin(0.3 * self.t), dtype=np.float32)

    def reset(self, done=None) -> None:
        self.t = 0


def rollout(spec, policy, seed: int) -> tuple[float, float, float]:
    """(discounted cost, min barrier, return) of one episode in a single env."""
    env = make_env(spec)
    obs, _ = env.reset(seed=seed)
    gamma, cost, ret, t = spec.safety.cost_discount, 0.0, 0.0, 0
    low = float("inf")
    if spec.safety.barriers:
        low = float(barrier_values(spec.safety.barriers, obs[None]).min())
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs[None])[0])
        cost += gamma**t * info["cost"]
        ret += reward
        t += 1
        if spec.safety.barriers:
            low = min(low, float(barrier_values(spec.safety.barriers, obs[None]).min()))
        done = terminated or truncated
    env.close()
    return cost, low, ret


def test_obstacle_costs_barriers_and_budget_share():
    spec = get_task("obstacles-pointmaze-umaze")
    agent = TowardsPoint()
    result = evaluate(agent, spec, episodes=4, seed=7, ref_min=0.0, ref_max=1.0, budget=0.0)
    manual = [rollout(spec, agent.act, 7 + i) for i in range(4)]
    np.testing.assert_allclose(result.costs, [m[0] for m in manual])
    np.testing.assert_allclose(result.returns, [m[2] for m in manual])
    assert result.barrier_min_executed == pytest.approx(min(m[1] for m in manual))
    assert result.barrier_min_executed < 0 and result.costs.max() > 0  # it drives into the disc
    np.testing.assert_allclose(np.sum(agent.observed, axis=0), result.costs)
    summary = result.summary()
    assert summary["over_budget_rate"] == pytest.approx(np.mean(result.costs > 0))
    assert summary["cost_budget"] == 0.0 and "barrier_min_planned" not in summary


def test_velocity_cost_is_discounted_as_the_task_says():
    spec = get_task("velocity-hopper-medium-v2")
    assert spec.safety.cost_discount == 0.997
    result = evaluate(Sway(), spec, episodes=2, seed=3, ref_min=0.0, ref_max=1.0, budget=5.0)
    manual = []
    for i in range(2):
        policy = Sway()
        manual.append(rollout(spec, policy.act, 3 + i)[0])
    np.testing.assert_allclose(result.costs, manual, rtol=1e-6)
    assert result.summary()["over_budget_rate"] == pytest.approx(np.mean(np.array(manual) > 5.0))
    assert result.barrier_min_executed is None


class NoisyTowardsPoint(TowardsPoint):
    """:class:`TowardsPoint` with Gaussian action noise drawn from torch's global RNG, as a
    diffusion agent's sampler draws it; it keeps the noise it drew."""

    def __init__(self):
        super().__init__()
        self.noise: list[np.ndarray] = []

    def act(self, obs: np.ndarray) -> np.ndarray:
        self.noise.append(torch.randn(len(obs), 2).numpy())
        return np.clip(super().act(obs) + 0.5 * self.noise[-1], -1, 1)


def test_sampling_noise_depends_on_the_evaluation_seed_alone():
    spec = get_task("pointmaze-umaze")

    def run(draws_before: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
        torch.manual_seed(123)
        torch.randn(draws_before)  # training drew this many numbers before evaluating
        state = torch.get_rng_state()
        agent = NoisyTowardsPoint()
        result = evaluate(agent, spec, episodes=3, seed=seed, ref_min=0, ref_max=1)
        assert torch.equal(torch.get_rng_state(), state), "evaluation moved training's RNG"
        return np.concatenate(agent.noise), result.returns

    noise, returns = run(draws_before=0)
    again, returns_again = run(draws_before=1000)
    np.testing.assert_array_equal(noise, again)
    np.testing.assert_array_equal(returns, returns_again)
    other, _ = run(draws_before=0, seed=6)
    assert not np.array_equal(noise[:10], other[:10])
