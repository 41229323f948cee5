"""TREBI: per-family defaults, budget bookkeeping per env, the constrained guidance and ranking
(each planning pass under the thresholds its call passes), and spending less when the budget
tightens on a toy speed task (generic checks, state round trip included: test_contract.py)."""

import copy

import numpy as np
import pytest
import torch
from agent_data import random_batch, unit_stats
from torch import nn

from algorithms import trebi
from algorithms.common.contract import TaskInfo
from bench.data import compute_stats, make_sampler
from tasks.spec import Dataset, Provenance

TINY = {"dim": 8, "dim_mults": (1, 2), "n_diffusion_steps": 5, "horizon": 12}
GAMMA = 0.9
HOPPER = TaskInfo(
    "velocity-hopper-medium-expert-v2", "locomotion", 3, 2, cost_budget=50.0, cost_discount=GAMMA
)


def to_go(values: torch.Tensor, discount: float) -> torch.Tensor:
    """``out[:, t] = sum_{k >= t} discount^(k - t) values[:, k]`` over ``[B, H]``."""
    out = torch.zeros_like(values)
    acc = torch.zeros(len(values))
    for t in range(values.shape[1] - 1, -1, -1):
        acc = values[:, t] + discount * acc
        out[:, t] = acc
    return out


def cost_batch(info: TaskInfo, horizon: int) -> dict[str, torch.Tensor]:
    """The shared random batch plus random costs and their costs-to-go under the task's discount."""
    costs = torch.rand(8, horizon, generator=torch.Generator().manual_seed(1))
    return {
        **random_batch(info, horizon),
        "costs": costs,
        "costs_to_go": to_go(costs, info.cost_discount),
    }


def tiny_agent(info: TaskInfo = HOPPER, **kw) -> trebi.Agent:
    return trebi.Agent(trebi.Config(**{**TINY, **kw}), info, unit_stats(info.obs_dim, 2), "cpu", 1)


# ---------------------------------------------------------------------------------- config


def test_official_values_per_family_and_refusals():
    def resolved(task_id: str, kind: str) -> trebi.Config:
        base = task_id.removeprefix("velocity-") if task_id.startswith("velocity-") else None
        info = TaskInfo(task_id, kind, 4, 2, cost_budget=1.0, dataset_task=base)
        return trebi.resolve(trebi.Config(), info, unit_stats(4, 2))

    hopper = resolved("velocity-hopper-medium-v2", "locomotion")
    assert (hopper.horizon, hopper.n_diffusion_steps, hopper.n_candidates) == (32, 20, 64)
    assert (hopper.cost_grad_weight, hopper.discount, hopper.guide_scale) == (5.0, 0.997, 0.1)
    assert hopper.guided and hopper.controller == "actions" and hopper.replan_every == 1
    # Diffuser's per-dataset overrides reach the velocity tasks built on those datasets
    assert resolved("velocity-hopper-medium-expert-v2", "locomotion").guide_scale == 0.0001
    assert resolved("velocity-halfcheetah-medium-v2", "locomotion").horizon == 4
    pendulum = resolved("safe-pendulum", "safe")
    assert (pendulum.horizon, pendulum.guide_scale, pendulum.controller) == (32, 0.1, "actions")
    assert (pendulum.n_candidates, pendulum.cost_grad_weight, pendulum.discount) == (
        128,
        20.0,
        0.99,
    )
    with pytest.raises(ValueError, match="maze"):
        resolved("obstacles-pointmaze-umaze", "maze")
    with pytest.raises(ValueError, match=r"algo\.guided"):
        trebi.resolve(trebi.Config(guided=False), HOPPER, unit_stats(3, 2))
    with pytest.raises(ValueError, match="budget"):
        trebi.Agent(trebi.Config(**TINY), TaskInfo("hopper", "locomotion", 3, 2), None, "cpu", 1)


def test_data_spec_asks_for_costs_discounted_like_the_budget():
    spec = tiny_agent().data_spec
    assert (spec.kind, spec.extra, spec.cost_discount, spec.horizon) == (
        "segments",
        ("costs",),
        GAMMA,
        12,
    )
    assert spec.discount == 0.997  # the reward value's discount
    # config/locomotion.py: 'values' termination_penalty -100, 'cost_values' +100
    assert (spec.terminal_reward, spec.terminal_cost) == (-100.0, 100.0)
    pendulum = TaskInfo("safe-pendulum", "safe", 3, 1, cost_budget=1.0)
    spec = tiny_agent(pendulum).data_spec
    assert (spec.terminal_reward, spec.terminal_cost) == (0.0, 0.0)  # config/toy_safe_env.py


# ---------------------------------------------------------------------------------- falls


def falls_and_runs(n_each: int = 64) -> Dataset:
    """Episodes of a 2-D toy ``[height, phase]`` with the same velocity cost, 1 per step: fallers
    (12 steps, height sinking to 0.2, then ``terminals``) and runners (40 steps upright, then a
    timeout). Without a penalty a fall is the cheaper future."""
    obs, terminals, timeouts = [], [], []
    for length, falls in [(12, True)] * n_each + [(40, False)] * n_each:
        steps = np.arange(length)
        height = 1.0 - 0.8 * steps / 11 if falls else np.ones(length)
        obs.append(np.stack([height, (steps % 12) / 12], 1))
        end = np.zeros(length, bool)
        end[-1] = True
        terminals.append(end & falls)
        timeouts.append(end & (not falls))
    obs = np.concatenate(obs).astype(np.float32)
    n = len(obs)
    arrays = {
        "observations": obs,
        "actions": np.zeros((n, 1), np.float32),
        "rewards": np.ones(n, np.float32),
        "next_observations": obs,
        "terminals": np.concatenate(terminals),
        "timeouts": np.concatenate(timeouts),
        "costs": np.ones(n, np.float32),
    }
    return Dataset(arrays, Provenance("synthetic", "-", "-", n, 2 * n_each), 0.0, 1.0)


def test_a_plan_that_falls_ranks_below_one_that_does_not_at_equal_velocity_cost():
    """Trained on :func:`falls_and_runs` through its own ``DataSpec``, TREBI's cost value prices
    a fall at the official +100: under a budget that neither window's velocity cost fits, the
    upright window (28 more steps of cost ahead) is the cheaper, and it wins; with a budget both
    fit, the -100 on the fall's reward makes the upright one the better."""
    dataset = falls_and_runs()
    info = TaskInfo(
        "velocity-hopper-medium-v2",
        "locomotion",
        2,
        1,
        cost_budget=1.0,
        cost_discount=0.997,
        dataset_task="hopper-medium-v2",
    )
    cfg = trebi.Config(
        **{**TINY, "horizon": 8}, lr=2e-3, value_lr=2e-3, cost_value_lr=2e-3, ema_start=10_000
    )
    torch.manual_seed(0)
    agent = trebi.Agent(cfg, info, compute_stats(dataset), "cpu", 1)
    sampler = make_sampler(dataset, agent.data_spec, torch.device("cpu"), seed=0)
    for _ in range(150):
        agent.update(sampler.sample())
    # steps 4..11 of a faller (it falls at 11) and of a runner (28 steps to go after)
    window = {k: torch.as_tensor(v[None, 4:12]) for k, v in dataset.arrays.items()}
    runner = {
        k: torch.as_tensor(v[None, 64 * 12 + 4 : 64 * 12 + 12]) for k, v in dataset.arrays.items()
    }
    x = torch.cat(
        [agent.planner.segments({**b, "mask": torch.ones(1, 8)}).x0 for b in (window, runner)]
    )[None]  # [1 env, 2 candidates, H, C]
    value = agent.value_ema.model
    for threshold in (1.0, 1000.0):  # neither window's cost fits / both fit
        hooks = agent.hooks(torch.tensor([threshold]))
        chosen = agent.planner.rank(x, value, hooks.score)
        torch.testing.assert_close(chosen, x[:, 1])


# ---------------------------------------------------------------------------------- budget


def test_thresholds_are_the_remaining_discounted_budget_per_env():
    agent = tiny_agent()
    costs = np.array([[1.0, 0.0, 2.0], [3.0, 1.0, 0.5], [0.5, 4.0, 0.0]])
    agent.reset()
    for c in costs:
        agent.observe_cost(c)
    spent = (costs * GAMMA ** np.arange(3)[:, None]).sum(0)
    expected = (50.0 - spent) / GAMMA**3
    np.testing.assert_allclose(agent.budget.thresholds(3), expected)
    # a finished episode starts over with the whole budget; the others keep theirs
    agent.reset(np.array([False, True, False]))
    np.testing.assert_allclose(agent.budget.thresholds(3), [expected[0], 50.0, expected[2]])
    agent.observe_cost(np.array([1.0, 2.0, 0.0]))
    second = [(50.0 - spent[0] - GAMMA**3) / GAMMA**4, (50.0 - 2.0) / GAMMA, expected[2] / GAMMA]
    np.testing.assert_allclose(agent.budget.thresholds(3), second)
    agent.reset()
    np.testing.assert_allclose(agent.budget.thresholds(3), [50.0] * 3)


def test_act_plans_each_due_env_under_its_own_threshold(monkeypatch):
    agent = tiny_agent(n_candidates=2, replan_every=10)
    contexts = []
    plan = agent.plan
    monkeypatch.setattr(agent, "plan", lambda o, c, w: contexts.append(c.numpy()) or plan(o, c, w))
    obs = np.zeros((3, 3), np.float32)
    agent.reset()
    agent.act(obs)
    np.testing.assert_allclose(contexts[-1], [50.0] * 3)
    agent.observe_cost(np.array([10.0, 20.0, 30.0]))
    agent.reset(np.array([False, False, True]))  # only env 2 plans again
    agent.act(obs)
    np.testing.assert_allclose(contexts[-1], [50.0])
    agent.observe_cost(np.array([1.0, 1.0, 5.0]))
    agent.reset(np.array([True, False, False]))
    agent.act(obs)
    np.testing.assert_allclose(contexts[-1], [50.0])
    agent.planner.plans.reset(np.ones(3, bool))  # every plan stale, budgets kept
    agent.act(obs)
    expected = [50.0, (50.0 - 20.0 - GAMMA) / GAMMA**2, (50.0 - 5.0) / GAMMA]
    np.testing.assert_allclose(contexts[-1], expected, rtol=1e-6)
    assert len(contexts) == 4


# ---------------------------------------------------------------------------------- guidance and ranking


class Readout(nn.Module):
    """A deterministic value: entry ``channel`` of a segment's first step."""

    def __init__(self, channel: int):
        super().__init__()
        self.channel = channel

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x[..., 0, self.channel]


def read_values(agent: trebi.Agent) -> trebi.Agent:
    """``agent`` whose reward value is the first action entry and cost value the second."""
    agent.value_ema.model = Readout(0)
    agent.cost_value_ema.model = Readout(1)
    return agent


def rank(agent: trebi.Agent, x: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """The plans the planning pass picks among ``x`` under ``thresholds``."""
    return agent.planner.rank(x, agent.value_ema.model, agent.hooks(thresholds).score)


def guide_gradient(agent: trebi.Agent, x: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """The gradient the planning pass guides ``x`` with under ``thresholds`` (at step 0)."""
    term = agent.hooks(thresholds).guide_term
    guide = agent.planner.guidance(agent.value_ema.model, term)
    return guide.grad_fn(x, torch.zeros(x.shape[:2], dtype=torch.long))


def plans_with(reward: list[list[float]], cost: list[list[float]]) -> torch.Tensor:
    """Segments ``[n, P, 12, 5]`` whose first step carries the given reward and cost readouts."""
    r, c = torch.tensor(reward), torch.tensor(cost)
    x = torch.randn(*r.shape, 12, 5)
    x[..., 0, 0], x[..., 0, 1] = r, c
    return x


def test_ranking_puts_plans_over_budget_last_and_falls_back_to_the_cheapest():
    agent = read_values(tiny_agent(n_candidates=4))
    x = plans_with(
        reward=[[1.0, 10.0, 2.0, 20.0], [5.0, 1.0, 9.0, 3.0]],
        cost=[[0.5, 2.0, 0.8, 3.0], [0.5, 2.0, 0.3, 3.0]],
    )
    chosen = rank(agent, x, torch.tensor([1.0, 0.1]))
    torch.testing.assert_close(chosen[0], x[0, 2])  # best reward within budget
    torch.testing.assert_close(chosen[1], x[1, 2])  # none within: the cheapest
    chosen = rank(agent, x, torch.tensor([100.0, 2.0]))
    torch.testing.assert_close(chosen[0], x[0, 3])  # loose: the best reward
    torch.testing.assert_close(chosen[1], x[1, 2])  # plan 0 (reward 5) and 2 (9) fit


def test_cost_gradient_pushes_only_plans_over_their_threshold():
    agent = read_values(tiny_agent(n_candidates=3, cost_grad_weight=2.0))
    x = plans_with(reward=[[0.0, 0.0, 0.0]], cost=[[0.5, 1.5, 4.0]])
    grad = guide_gradient(agent, x, torch.tensor([1.0]))
    # dV/dx: 1 on the reward entry; dC/dx: 1 on the cost entry, weighted 2 exp(min(excess, 1))
    torch.testing.assert_close(grad[..., 0, 0], torch.ones(1, 3))
    torch.testing.assert_close(
        grad[..., 0, 1], torch.tensor([[0.0, -2 * np.exp(0.5), -2 * np.e]], dtype=torch.float32)
    )
    assert grad[..., 1:, :].abs().max() == 0 and grad[..., 0, 2:].abs().max() == 0
    # a spent budget (threshold 0) keeps plans at zero cost unpushed and finite
    x = plans_with(reward=[[0.0, 0.0, 0.0]], cost=[[0.0, -1.0, 0.5]])
    grad = guide_gradient(agent, x, torch.tensor([0.0]))
    torch.testing.assert_close(
        grad[..., 0, 1], torch.tensor([[0.0, 0.0, -2 * np.e]], dtype=torch.float32)
    )


# -------------------------------------------------------------------------- training and reporting


def test_update_trains_the_denoiser_and_both_values():
    out = tiny_agent(n_candidates=2).update(cost_batch(HOPPER, 12))
    assert set(out) == {"diffusion_loss", "value_loss", "cost_value_loss"}


def test_no_planned_barrier_minimum_without_barriers():
    agent = tiny_agent(n_candidates=2)
    agent.reset()
    actions = agent.act(np.zeros((2, 3), np.float32))
    assert actions.shape == (2, 2) and np.abs(actions).max() <= 1
    assert agent.planned_barrier_min() is None


# ---------------------------------------------------------------------------------- learning

# Toy speed task: state x, action a in [-1, 1], x' = x + a, reward a, cost |a|; an episode is
# HORIZON steps, each data episode holds a constant speed in [-1, 1] (plus noise).
HORIZON = 8
SPEED = TaskInfo(
    "toy-speed", "safe", 1, 1, max_episode_steps=HORIZON, cost_budget=100.0, cost_discount=0.99
)


def speed_batch(batch: int, g: torch.Generator, discount: float) -> dict[str, torch.Tensor]:
    speed = (torch.rand(batch, 1, 1, generator=g) * 2 - 1).expand(batch, HORIZON, 1)
    actions = (speed + 0.1 * torch.randn(batch, HORIZON, 1, generator=g)).clamp(-1, 1)
    costs = actions[..., 0].abs()
    return {
        "observations": torch.cumsum(actions, dim=1) - actions,
        "actions": actions,
        "returns_to_go": to_go(actions[..., 0], discount),
        "costs": costs,
        "costs_to_go": to_go(costs, SPEED.cost_discount),
        "mask": torch.ones(batch, HORIZON),
    }


@pytest.fixture(scope="module")
def speed_agent() -> trebi.Agent:
    cfg = trebi.Config(
        horizon=HORIZON,
        n_diffusion_steps=10,
        dim=16,
        dim_mults=(1, 2),
        lr=2e-3,
        value_lr=2e-3,
        cost_value_lr=2e-3,
        ema_start=10_000,
        n_candidates=8,
        guide_scale=1.0,
        batch_size=32,
        replan_every=4,  # two plans per episode, the second under the budget left
    )
    torch.manual_seed(0)
    agent = trebi.Agent(cfg, SPEED, unit_stats(1, 1), "cpu", 200)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        agent.update(speed_batch(32, g, agent.cfg.discount))
    return agent


def run_episodes(agent: trebi.Agent, budget: float, n_envs: int = 8) -> tuple[float, float]:
    """Mean discounted cost and return of ``n_envs`` toy episodes under ``budget``."""
    agent = copy.copy(agent)
    agent.budget = trebi.CostBudget(budget, SPEED.cost_discount)
    agent.reset()
    obs = np.zeros((n_envs, 1), np.float32)
    cost, ret = np.zeros(n_envs), np.zeros(n_envs)
    for t in range(HORIZON):
        action = agent.act(obs)[:, 0]
        agent.observe_cost(np.abs(action))
        cost += SPEED.cost_discount**t * np.abs(action)
        ret += action
        obs = obs + action[:, None]
    return cost.mean(), ret.mean()


def test_spends_less_as_the_budget_tightens(speed_agent):
    torch.manual_seed(1)
    loose_cost, loose_return = run_episodes(speed_agent, budget=100.0)
    torch.manual_seed(1)
    tight_cost, tight_return = run_episodes(speed_agent, budget=2.0)
    # loose: near full speed (cost 5.4-6.2 over seeds 0-2, at most 7.7); tight: 0.9-1.8
    assert loose_cost > 4.5 and loose_return > 4.5
    assert tight_cost < loose_cost - 3.0 and tight_cost < 2.5
    assert tight_return > 0.0  # still heading the rewarding way
