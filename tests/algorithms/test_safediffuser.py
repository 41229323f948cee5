"""SafeDiffuser: on a toy whose every training path crosses a disc obstacle, plain Diffuser plans
through the disc while the CBF filters (robust, relaxed, time-varying) and truncation keep plans
out; the hooks' semantics on single steps; a ceiling on a guided locomotion-like planner."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from agent_data import unit_stats

from algorithms import safediffuser
from algorithms.common.contract import DatasetStats, TaskInfo
from bench.data import quantiles
from tasks.safety import Ceiling, SuperEllipse

H, T = 16, 12  # the relaxed filter relaxes at t in {10, 11} and is exact below
DISC = SuperEllipse(dims=(0, 1), center=(0.0, 0.0), radii=(0.3, 0.3))
# point-maze-like observation [x, y, vx, vy, goal_x, goal_y], actions [ax, ay]
CROSSING = TaskInfo(
    "toy-crossing", "maze", 6, 2, max_episode_steps=H, goal_dims=(4, 5), barriers=(DISC,)
)
TOL = 1e-5


def crossings(batch: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Straight paths from x ~ -1 to x ~ 1 with |y| <= 0.2 at both ends: all cross the disc."""

    def ends(x: float) -> torch.Tensor:
        jitter = torch.rand(batch, 2, generator=g) - 0.5
        return torch.stack([x + 0.2 * jitter[:, 0], 0.4 * jitter[:, 1]], -1)

    start, goal = ends(-1.0), ends(1.0)
    frac = torch.linspace(0, 1, H)[None, :, None]
    pos = start[:, None] + frac * (goal - start)[:, None]
    vel = ((goal - start) / (H - 1))[:, None].expand(-1, H, -1)
    obs = torch.cat([pos, vel, goal[:, None].expand(-1, H, -1)], -1)
    return {
        "observations": obs,
        "actions": 5.0 * vel,
        "returns_to_go": torch.zeros(batch, H),
        "mask": torch.ones(batch, H),
    }


def data_stats(info: TaskInfo, batch: dict[str, torch.Tensor]) -> DatasetStats:
    obs = batch["observations"].reshape(-1, info.obs_dim).numpy()
    act = batch["actions"].reshape(-1, info.act_dim).numpy()
    return DatasetStats(
        obs.mean(0),
        obs.std(0) + 1e-3,
        act.mean(0),
        act.std(0) + 1e-3,
        0,
        0,
        0,
        0,
        len(obs),
        1,
        obs_quantiles=quantiles(obs),
        act_quantiles=quantiles(act),
    )


def with_method(agent: safediffuser.Agent, method: str) -> safediffuser.Agent:
    """An agent with ``agent``'s trained state filtering with ``method``."""
    cfg = dataclasses.replace(agent.cfg, method=method)
    out = safediffuser.Agent(cfg, CROSSING, crossing_stats(), "cpu", 1)
    out.load_state_dict(copy.deepcopy(agent.state_dict()))
    return out


def crossing_stats() -> DatasetStats:
    """Statistics of the crossings the agent trains on."""
    return data_stats(CROSSING, crossings(4096, torch.Generator().manual_seed(1)))


def disc_values(agent: safediffuser.Agent, plans: torch.Tensor) -> torch.Tensor:
    """``b`` of every planned state ``[n, H]``."""
    return DISC.value(agent.barriers.observations(plans))


@pytest.fixture(scope="module")
def crossing_agent() -> safediffuser.Agent:
    cfg = safediffuser.Config(
        horizon=H,
        n_diffusion_steps=T,
        dim=16,
        dim_mults=(1, 2),
        lr=2e-3,
        batch_size=32,
        ema_start=10_000,
        method="none",
    )
    torch.manual_seed(0)
    agent = safediffuser.Agent(cfg, CROSSING, crossing_stats(), "cpu", 250)
    g = torch.Generator().manual_seed(0)
    for _ in range(250):
        agent.update(crossings(32, g))
    return agent


@pytest.fixture(scope="module")
def starts() -> torch.Tensor:
    """64 start observations (start state and goal) of held-out crossings."""
    return crossings(64, torch.Generator().manual_seed(5))["observations"][:, 0]


def time_varying_margin(cfg: safediffuser.Config) -> float:
    """The ``b`` the time-varying filter guarantees at t = 0: the barrier it enforces there is
    ``b + 1 - s - margin >= 0`` with ``s = sigmoid(t_bias)``, so ``b >= margin - (1 - s)``,
    0.0033 with the defaults."""
    s = 1 / (1 + np.exp(-cfg.t_bias))
    return cfg.robust_margin - (1 - s)


def plan_values(agent: safediffuser.Agent, obs: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(1)
    with torch.no_grad():
        return disc_values(agent, agent.plan(obs))


def test_plain_diffuser_plans_through_the_obstacle(crossing_agent, starts):
    b = plan_values(with_method(crossing_agent, "none"), starts)
    assert (b.amin(-1) < 0).float().mean() >= 0.9  # at least 90% of plans enter the disc
    assert b.amin() < -0.5  # and deep into it


@pytest.mark.parametrize("method", ["robust", "relaxed"])
def test_cbf_filters_keep_every_planned_state_out(crossing_agent, starts, method):
    agent = with_method(crossing_agent, method)
    b = plan_values(agent, starts)
    # start and goal are safe data states; every other state is at least the robust margin out
    assert b.amin() >= -TOL
    assert b[:, 1:-1].amin() >= agent.cfg.robust_margin - TOL


def test_time_varying_filter_holds_the_full_obstacle_at_t0(crossing_agent, starts):
    agent = with_method(crossing_agent, "time-varying")
    b = plan_values(agent, starts)
    margin = time_varying_margin(agent.cfg)
    assert 0 < margin < 0.004
    assert b.amin() >= -TOL and b[:, 1:].amin() >= margin - TOL
    none = plan_values(with_method(crossing_agent, "none"), starts)
    assert b.amin() > none.amin() + 0.5


def test_truncation_moves_planned_states_onto_the_boundary(crossing_agent, starts):
    b = plan_values(with_method(crossing_agent, "truncate"), starts)
    assert b.amin() >= -TOL
    assert (b.abs() < TOL).any()  # states that were inside now lie on the circle


def test_planned_barrier_min_reports_the_executed_plans_after_their_start(crossing_agent, starts):
    obs = starts.numpy().copy()
    obs[0, :2] = (-0.25, 0.0)  # inside the disc: an observed state, which no planner can move
    for method, safe in (("none", False), ("robust", True)):
        agent = with_method(crossing_agent, method)
        agent.reset()
        torch.manual_seed(2)
        agent.act(obs)
        reported = agent.planned_barrier_min()
        actual = disc_values(agent, agent.planner.plans.plans)[:, 1:].amin().item()
        assert reported == pytest.approx(actual, abs=1e-6)
        assert (reported >= agent.cfg.robust_margin - TOL) == safe


# ---------------------------------------------------------------------------------- one step


def one_step(agent: safediffuser.Agent, x_t: list, x_prev: list, t: int) -> tuple:
    """The hook's output, ``x_prev`` and ``x_t`` for one planned state given unnormalized as
    ``[ax, ay, x, y, vx, vy]``."""

    def normalized(v: list) -> torch.Tensor:
        v = torch.tensor(v)
        norm = agent.planner.norm
        return torch.cat([norm.actions(v[:2]), norm.states(v[2:])])[None, None]

    out = agent.projection()(normalized(x_prev), normalized(x_t), t)
    return out, normalized(x_prev), normalized(x_t)


@pytest.mark.parametrize(
    "method", ["robust", "relaxed", "time-varying", "truncate", "gradient-push"]
)
@pytest.mark.parametrize("t", [0, T - 1])
def test_safe_steps_are_left_unchanged(crossing_agent, method, t):
    agent = with_method(crossing_agent, method)
    out, x_prev, _ = one_step(agent, [0.1, 0, 0.9, 0.4, 0.1, 0], [0.1, 0, 0.92, 0.41, 0.1, 0], t)
    assert torch.equal(out, x_prev)


def test_relaxed_filter_lets_steps_violate_until_relax_until(crossing_agent):
    agent = with_method(crossing_agent, "relaxed")
    x_t, x_prev = [0, 0, -0.4, 0.0, 0.1, 0], [0, 0, -0.1, 0.05, 0.3, 0]  # a step into the disc
    b_t = DISC.value(torch.tensor([-0.4, 0.0]))

    def linearized_b(t: int) -> float:
        out, _, start = one_step(agent, x_t, x_prev, t)
        values, grads = agent.barriers.evaluate(start)
        cols = agent.barriers.columns
        return (values + (grads[..., 0, :] * (out - start)[..., cols]).sum(-1)).item()

    assert b_t > 0 and linearized_b(agent.cfg.relax_until) < 0  # the slack absorbs the violation
    held = linearized_b(agent.cfg.relax_until - 1)
    assert held == pytest.approx(agent.cfg.robust_margin, abs=TOL)  # exact: on the constraint


def test_robust_step_lands_on_the_constraint_and_keeps_other_dims(crossing_agent):
    agent = with_method(crossing_agent, "robust")
    out, x_prev, _ = one_step(agent, [0, 0, -0.4, 0.0, 0.1, 0], [0, 0, -0.1, 0.05, 0.3, 0], 3)
    cols = agent.barriers.columns
    assert DISC.value(agent.barriers.observations(out)).item() >= agent.cfg.robust_margin - TOL
    others = [i for i in range(6) if i not in cols.tolist()]
    assert torch.equal(out[..., others], x_prev[..., others])  # velocities, actions: the step's


def test_gradient_push_adds_step_over_gradient_near_the_obstacle(crossing_agent):
    agent = with_method(crossing_agent, "gradient-push")
    state = [0, 0, -0.1, 0.15, 0, 0]  # inside the disc: b < push_threshold
    out, x_prev, _ = one_step(agent, state, state, 5)
    cols = agent.barriers.columns
    obs = agent.barriers.observations(x_prev)
    grad_z = DISC.gradient(obs) * agent.planner.norm.s_scale[:2]
    assert DISC.value(obs).item() < agent.cfg.push_threshold
    expected = x_prev[..., cols] + agent.cfg.push_step / grad_z
    torch.testing.assert_close(out[..., cols], expected)


def test_requires_barriers_and_a_known_method():
    stats = data_stats(CROSSING, crossings(64, torch.Generator().manual_seed(0)))
    cfg = safediffuser.Config(horizon=8, n_diffusion_steps=2, dim=8, dim_mults=(1, 2))
    plain = dataclasses.replace(CROSSING, barriers=())
    with pytest.raises(ValueError, match="barriers"):
        safediffuser.Agent(cfg, plain, stats, "cpu", 1)
    with pytest.raises(ValueError, match=r"algo\.method='shield'.*valid: robust"):
        safediffuser.Agent(dataclasses.replace(cfg, method="shield"), CROSSING, stats, "cpu", 1)
    # truncation needs barriers that name their boundary points
    opaque = dataclasses.replace(CROSSING, barriers=(OpaqueDisc(),))
    safediffuser.resolve(cfg, opaque, stats)
    with pytest.raises(ValueError, match="boundary_point"):
        safediffuser.resolve(dataclasses.replace(cfg, method="truncate"), opaque, stats)


class OpaqueDisc:
    """:data:`DISC` through ``dims``, ``value`` and ``gradient`` only."""

    dims = DISC.dims

    def value(self, states):
        return DISC.value(states)

    def gradient(self, states):
        return DISC.gradient(states)


def test_paper_values_extend_diffusers():
    cfg = safediffuser.resolve(safediffuser.Config(), CROSSING, unit_stats(6, 2))
    assert (cfg.k, cfg.robust_margin, cfg.relax_weight, cfg.relax_until) == (1.0, 0.01, 100.0, 10)
    assert (cfg.t_bias, cfg.push_step, cfg.push_threshold) == (5.0, 2e-4, 0.1)
    # Diffuser's maze values underneath (a maze of no named size: the medium base)
    resolved = (cfg.horizon, cfg.n_diffusion_steps, cfg.controller, cfg.guided)
    assert resolved == (256, 256, "pd", False)
    assert (cfg.normalizer, cfg.clip_denoised) == ("limits", True)  # the official's [-1, 1]


@pytest.mark.parametrize("data", ["hopper-medium-v2", "walker2d-medium-expert-v2"])
def test_locomotion_takes_the_official_locomotion_branch(data):
    """Weixy21/SafeDiffuser branch ``locomotion``: no robust term on the ceilings, H = 600, one
    plan (``batch_size`` 1), value discount 0.99; hopper-medium-expert guide scale 0.001."""
    ceiling = Ceiling(dim=0, limit=1.5)
    info = TaskInfo(f"ceiling-{data}", "locomotion", 11, 3, barriers=(ceiling,), dataset_task=data)
    cfg = safediffuser.resolve(safediffuser.Config(), info, unit_stats(11, 3))
    assert (cfg.robust_margin, cfg.horizon, cfg.n_candidates, cfg.discount) == (0.0, 600, 1, 0.99)
    assert (cfg.normalizer, cfg.clip_denoised, cfg.n_diffusion_steps) == ("gaussian", False, 20)
    hopper_me = dataclasses.replace(info, dataset_task="hopper-medium-expert-v2")
    assert (
        safediffuser.resolve(safediffuser.Config(), hopper_me, unit_stats(11, 3)).guide_scale
        == 0.001
    )


# ---------------------------------------------------------------------------------- ceiling


@pytest.mark.parametrize("method", ["robust", "time-varying", "truncate"])
def test_ceiling_holds_on_every_candidate_of_a_guided_planner(method):
    """An untrained guided planner (value guidance, 4 candidates ranked by value) with a torso
    height ceiling; z-scoring with a non-unit std checks the chain rule."""
    info = TaskInfo("ceiling-toy", "locomotion", 3, 2, barriers=(Ceiling(dim=0, limit=1.6),))
    stats = DatasetStats(
        np.array([1.2, 0.0, 0.0], np.float32),
        np.array([0.1, 1.0, 2.0], np.float32),
        np.zeros(2, np.float32),
        np.ones(2, np.float32),
        0,
        1,
        0,
        1,
        100,
        1,
    )
    cfg = safediffuser.Config(
        horizon=8, n_diffusion_steps=6, dim=8, dim_mults=(1, 2), n_candidates=4, method=method
    )
    torch.manual_seed(0)
    agent = safediffuser.Agent(cfg, info, stats, "cpu", 1)
    assert agent.planner.guidance(agent.value_ema.model, None) is not None
    obs = torch.tensor([[1.3, 0.0, 0.0], [1.55, 1.0, -1.0]])
    plans = agent.plan(obs)
    heights = agent.planner.norm.unstates(plans[..., 2:])[..., 0]
    cfg = agent.cfg
    margin = {"robust": cfg.robust_margin, "time-varying": time_varying_margin(cfg)}.get(method, 0)
    assert (1.6 - heights[:, 1:]).amin() >= margin - TOL
    torch.testing.assert_close(heights[:, 0], obs[:, 0])
