"""What the trajectory planners (Diffuser, Decision Diffuser, HDMI) share beyond the sampler.

* :class:`StateLayout`: which observation dimensions a planner diffuses (all but the goal ones),
  where position and velocity sit for point mazes, and where the goal comes from;
* :func:`make_normalizer`: the planners' normalizers of states and actions (z-scores, the data's
  limits onto [-1, 1], or per-dimension CDFs), from the dataset statistics;
* :class:`Constraints`: fixed entries of a trajectory batch, used as the sampler's inpainting
  hook at planning time and by :func:`with_inpainting` at training time (Diffuser's
  ``apply_conditioning`` on the noisy input, so a constrained entry is never "denoised");
* :class:`InverseDynamics`: Decision Diffuser's ``a_t = f(s_t, s_{t+1})`` MLP (also HDMI's);
* :class:`OpenLoopPlans` / :class:`StateHistory`: per-environment plans with their age, and
  per-environment histories, cleared by ``reset(done)``;
* :func:`act_by_inverse_dynamics`: the acting step of Decision Diffuser and HDMI (plan for the
  due environments, then inverse dynamics towards each plan's next state);
* :func:`follow_plan`: the PD-style controller of Diffuser's ``plan_maze2d.py``;
* :class:`BarrierMonitor`: the smallest barrier value over every planned state (safe tasks).

All tensors are batched over environments (and candidate plans) so one denoising pass plans for
every evaluation environment at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import DatasetStats, GoalExits, TaskInfo
from algorithms.common.diffusion import (
    ClassifierFreeGuidance,
    Denoiser,
    WarmStart,
    inpainting,
)
from algorithms.common.nets import mlp

# D4RL maze2d's fixed targets (``d4rl/pointmaze/maze_model.py``, the 'G' cell of each layout, in
# D4RL's frame; the same cells as ``tasks.envs.MAZE2D_TARGET_CELLS``). Diffuser reads them from
# ``env._target``; the agent cannot see the env, and maze2d observations carry no goal.
MAZE2D_TARGETS: dict[str, tuple[float, float]] = {
    "maze2d-umaze-v1": (1.0, 1.0),
    "maze2d-medium-v1": (6.0, 6.0),
    "maze2d-large-v1": (7.0, 9.0),
}
MAZE_POSITION = (0, 1)  # point-maze state [x, y, vx, vy]
MAZE_VELOCITY = (2, 3)


# ---------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class StateLayout:
    """Observation dims a planner diffuses and, for mazes, where the goal position comes from.

    ``state_idx``: observation dims of the planned state (the goal dims are left out: a goal is
    imposed by inpainting, not diffused). ``goal_dims``: observation dims holding the goal, or
    empty with ``fixed_goal`` for D4RL maze2d. ``is_maze``: the task is a point maze whose state
    starts with position then velocity.
    """

    state_idx: tuple[int, ...]
    goal_dims: tuple[int, ...] = ()
    fixed_goal: tuple[float, ...] | None = None
    is_maze: bool = False

    @classmethod
    def from_info(cls, info: TaskInfo) -> StateLayout:
        goal_dims = tuple(info.goal_dims)
        state_idx = tuple(i for i in range(info.obs_dim) if i not in goal_dims)
        is_maze = info.kind == "maze"
        fixed = MAZE2D_TARGETS.get(info.data_id)
        if is_maze and not goal_dims and fixed is None:
            raise ValueError(
                f"maze task {info.task_id!r} has no goal dims and no known fixed target"
            )
        return cls(state_idx, goal_dims, fixed, is_maze)

    @property
    def state_dim(self) -> int:
        return len(self.state_idx)

    def states(self, obs: Tensor) -> Tensor:
        """The planned part of observations ``[..., obs_dim] -> [..., state_dim]``."""
        return obs[..., list(self.state_idx)]

    def segment_states(self, obs: Tensor, mask: Tensor) -> Tensor:
        """Planned states of a segment batch ``[B, H, obs_dim] -> [B, H, state_dim]``.

        On mazes the point rests after its episode's end: the sampler's padding repeats the last
        state, velocity included; here padded steps keep the position with zero velocity, so a
        segment that reaches its goal early stops there (Diffuser's "stay at the goal").
        """
        states = self.states(obs)
        if not self.is_maze:
            return states
        moving = torch.ones_like(states)
        moving[..., list(MAZE_VELOCITY)] = mask.unsqueeze(-1)
        return states * moving

    def to_obs(self, states: Tensor, obs_dim: int) -> Tensor:
        """Planned states ``[..., state_dim]`` in the observation layout (goal dims zero), so
        constraints written over observation dims apply to plans."""
        obs = states.new_zeros(*states.shape[:-1], obs_dim)
        obs[..., list(self.state_idx)] = states
        return obs

    def goal(self, obs: Tensor) -> Tensor:
        """Goal positions ``[n, 2]`` of a maze task for observations ``[n, obs_dim]``."""
        if self.goal_dims:
            return obs[:, list(self.goal_dims)]
        return torch.as_tensor(self.fixed_goal, dtype=obs.dtype, device=obs.device).expand(
            len(obs), -1
        )

    def goal_state(self, obs: Tensor) -> Tensor:
        """The planned state at rest at the goal, ``[goal, 0, 0]`` ``[n, state_dim]``, for
        observations ``[n, obs_dim]`` (Diffuser's maze2d goal condition)."""
        state = obs.new_zeros(len(obs), self.state_dim)
        state[:, list(MAZE_POSITION)] = self.goal(obs)
        return state

    def goal_exits(self, radius: float) -> GoalExits:
        """The data's episodes cut where the point leaves its goal within ``radius``
        (Diffuser's ``maze2d_set_terminals``): the fixed target, else the goal dims."""
        dims = tuple(self.state_idx[i] for i in MAZE_POSITION)
        if self.goal_dims:
            return GoalExits(dims, radius, goal_dims=self.goal_dims)
        return GoalExits(dims, radius, goal=tuple(self.fixed_goal))


NORMALIZERS = ("gaussian", "limits", "cdf")


class AffineNormalizer:
    """Planned states and actions mapped per dimension by ``x -> (x - shift) / scale``.

    ``gaussian``: z-scores with the dataset's mean and std (Diffuser's ``GaussianNormalizer``);
    ``limits``: the data's ``[min, max]`` onto ``[-1, 1]`` (Diffuser's ``LimitsNormalizer``; a
    constant dimension gets the range ``[v - 1, v + 1]`` as its ``SafeLimitsNormalizer``), and,
    as the official, values are clamped to ``[-1, 1]`` before they are unnormalized.
    """

    def __init__(
        self,
        shifts: tuple[np.ndarray, np.ndarray],
        scales: tuple[np.ndarray, np.ndarray],
        device: torch.device,
        bound: float | None = None,
    ):
        def tensor(a: np.ndarray) -> Tensor:
            return torch.as_tensor(a, dtype=torch.float32, device=device)

        self.device, self.bound = device, bound
        self.s_shift, self.a_shift = tensor(shifts[0]), tensor(shifts[1])
        self.s_scale, self.a_scale = tensor(scales[0]), tensor(scales[1])

    def _bounded(self, x: Tensor) -> Tensor:
        return x if self.bound is None else x.clamp(-self.bound, self.bound)

    def states(self, s: Tensor) -> Tensor:
        return (s - self.s_shift) / self.s_scale

    def unstates(self, s: Tensor) -> Tensor:
        return self._bounded(s) * self.s_scale + self.s_shift

    def actions(self, a: Tensor) -> Tensor:
        return (a - self.a_shift) / self.a_scale

    def unactions(self, a: Tensor) -> Tensor:
        return self._bounded(a) * self.a_scale + self.a_shift

    def state_dims(self, s: Tensor, dims: Sequence[int]) -> Tensor:
        """Normalize values of some state dims only (e.g. a goal position)."""
        dims = list(dims)
        return (s - self.s_shift[dims]) / self.s_scale[dims]


class PiecewiseCdf:
    """One empirical CDF per dimension, from quantiles ``[Q, d]`` at ``linspace(0, 1, Q)``: a
    value maps to ``2 F(x) - 1`` with ``F`` linear between the quantiles (at a repeated quantile
    the upper end of its jump, as the official's ``interp1d`` over unique values), values
    outside the data clamped to its range; the inverse interpolates the quantiles."""

    def __init__(self, knots: np.ndarray, device: torch.device):
        self.knots = torch.as_tensor(knots.T.copy(), dtype=torch.float32, device=device)  # [d, Q]
        self.q = self.knots.shape[1]

    def __call__(self, x: Tensor, dims: Sequence[int] | None = None) -> Tensor:
        knots = self.knots if dims is None else self.knots[list(dims)]
        flat = x.reshape(-1, len(knots)).T.contiguous()  # [d, N]
        flat = torch.maximum(torch.minimum(flat, knots[:, -1:]), knots[:, :1])
        i = (torch.searchsorted(knots, flat, right=True) - 1).clamp(0, self.q - 2)
        low, high = knots.gather(1, i), knots.gather(1, i + 1)
        gap = high - low
        frac = torch.where(gap > 0, (flat - low) / torch.where(gap > 0, gap, 1.0), 1.0)
        p = (i + frac.clamp(0.0, 1.0)) / (self.q - 1)
        return (2 * p - 1).T.reshape(x.shape)

    def inverse(self, y: Tensor) -> Tensor:
        flat = y.reshape(-1, len(self.knots)).T.contiguous()
        pos = ((flat + 1) / 2).clamp(0.0, 1.0) * (self.q - 1)
        i = pos.floor().long().clamp(max=self.q - 2)
        low, high = self.knots.gather(1, i), self.knots.gather(1, i + 1)
        return (low + (pos - i) * (high - low)).T.reshape(y.shape)


class CdfNormalizer:
    """Each planned dimension through its empirical CDF onto ``[-1, 1]`` (Decision Diffuser's
    ``CDFNormalizer``; here from the dataset's quantiles, :class:`PiecewiseCdf`)."""

    def __init__(self, stats: DatasetStats, layout: StateLayout, device: torch.device):
        self.device = device
        self.state_cdf = PiecewiseCdf(stats.obs_quantiles[:, list(layout.state_idx)], device)
        self.action_cdf = PiecewiseCdf(stats.act_quantiles, device)

    def states(self, s: Tensor) -> Tensor:
        return self.state_cdf(s)

    def unstates(self, s: Tensor) -> Tensor:
        return self.state_cdf.inverse(s)

    def actions(self, a: Tensor) -> Tensor:
        return self.action_cdf(a)

    def unactions(self, a: Tensor) -> Tensor:
        return self.action_cdf.inverse(a)

    def state_dims(self, s: Tensor, dims: Sequence[int]) -> Tensor:
        """Normalize values of some state dims only (e.g. a goal position)."""
        return self.state_cdf(s, dims)


Normalizer = AffineNormalizer | CdfNormalizer


def make_normalizer(
    name: str, stats: DatasetStats, layout: StateLayout, device: torch.device
) -> Normalizer:
    """The normalizer called ``name`` (one of :data:`NORMALIZERS`) of the planned states and the
    actions; ``limits`` and ``cdf`` need the dataset's quantiles (``DatasetStats``)."""
    if name != "gaussian" and (stats.obs_quantiles is None or stats.act_quantiles is None):
        raise ValueError(f"the {name} normalizer needs DatasetStats with quantiles")
    idx = list(layout.state_idx)
    if name == "gaussian":
        return AffineNormalizer(
            (stats.obs_mean[idx], stats.act_mean), (stats.obs_std[idx], stats.act_std), device
        )
    if name == "limits":
        (s_low, s_high), (a_low, a_high) = (
            _limits(stats.obs_quantiles[:, idx]),
            _limits(stats.act_quantiles),
        )
        shifts = ((s_high + s_low) / 2, (a_high + a_low) / 2)
        return AffineNormalizer(shifts, ((s_high - s_low) / 2, (a_high - a_low) / 2), device, 1.0)
    return CdfNormalizer(stats, layout, device)


def _limits(quantiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension ``(min, max)``, widened by 1 each way where they are equal."""
    low, high = quantiles[0].astype(np.float64), quantiles[-1].astype(np.float64)
    flat = high == low
    return np.where(flat, low - 1.0, low), np.where(flat, high + 1.0, high)


def clip_range(bound: float | None) -> tuple[float, float] | None:
    """``(-bound, bound)`` for the sampler's ``clip_denoised`` (None: no clamp)."""
    return None if bound is None else (-bound, bound)


def returns_scale(stats: DatasetStats, discount: float) -> float:
    """Scale that maps discounted returns-to-go to about [0, 1] for return conditioning.

    ``min(reward_max / (1 - discount), return_max)``: the first term is the bound on a
    discounted return, the rule behind Decision Diffuser's one published hand-set value (hopper
    400: a largest reward of about 4 over ``1 - 0.99``; the official publishes no other), the
    second caps it for sparse-reward tasks (a point maze earns 1 per goal). Decision Diffuser
    uses it where no hand-set value exists; HDMI everywhere.
    """
    bound = min(stats.reward_max / (1.0 - discount), stats.return_max)
    return float(max(bound, 1e-6))


# ---------------------------------------------------------------------------------- inpainting


class Constraints:
    """Entries of a trajectory batch ``[*batch, H, D]`` fixed to given values."""

    def __init__(self, shape: Sequence[int], device: torch.device):
        self.mask = torch.zeros(tuple(shape), dtype=torch.bool, device=device)
        self.values = torch.zeros(tuple(shape), device=device)

    def fix(self, step: int | slice, dims: Sequence[int] | slice, values: Tensor) -> Constraints:
        """Fix ``x[..., step, dims] = values``; ``values [*batch, d]`` broadcast to that slice."""
        dims = dims if isinstance(dims, slice) else list(dims)
        view = self.values[..., step, :]
        view[..., dims] = values.to(view.dtype).expand_as(view[..., dims])
        self.mask[..., step, :][..., dims] = True
        return self

    def hook(self) -> Callable[[Tensor], Tensor]:
        """The sampler's ``inpaint`` hook."""
        return inpainting(self.mask, self.values)

    def free(self) -> Tensor:
        """Float weights, 0 on fixed entries: their loss is zero once inpainted."""
        return (~self.mask).float()


def with_inpainting(model: Denoiser, hook: Callable[[Tensor], Tensor]) -> Denoiser:
    """A denoiser whose noisy input has the constrained entries set to their clean values."""
    return lambda x_t, t, cond: model(hook(x_t), t, cond)


# ---------------------------------------------------------------------------------- conditions (classifier-free guidance)


def condition(value: Tensor, keep: Tensor | float = 1.0) -> dict[str, Tensor]:
    """A condition ``{"value", "mask"}`` for :class:`TemporalUnet` (``keep`` 0 drops it)."""
    mask = torch.as_tensor(keep, dtype=value.dtype, device=value.device).expand_as(value)
    return {"value": value, "mask": mask}


def dropped(value: Tensor, p: float) -> dict[str, Tensor]:
    """Condition with each component dropped independently with probability ``p``."""
    keep = (torch.rand_like(value) >= p).to(value.dtype)
    return condition(value, keep)


def guided(conds: Sequence[dict[str, Tensor]], scale: float) -> tuple[dict, ClassifierFreeGuidance]:
    """The empty base condition and the guidance that composes ``conds`` with weight ``scale``."""
    return condition(conds[0]["value"], 0.0), ClassifierFreeGuidance(list(conds), scale)


# ---------------------------------------------------------------------------------- value


def best_of(plans: Tensor, scores: Tensor) -> Tensor:
    """The highest-scoring candidate per environment: ``[n, P, ...]``, ``[n, P] -> [n, ...]``."""
    idx = scores.argmax(dim=1)
    return plans[torch.arange(len(plans), device=plans.device), idx]


# ---------------------------------------------------------------------------------- actions


class InverseDynamics(nn.Module):
    """``a_t = f(s_t, s_{t+1})``: Decision Diffuser's ReLU MLP on normalized states."""

    def __init__(self, state_dim: int, act_dim: int, hidden: int):
        super().__init__()
        self.net = mlp(2 * state_dim, act_dim, hidden, depth=2)

    def forward(self, s: Tensor, s_next: Tensor) -> Tensor:
        return self.net(torch.cat([s, s_next], dim=-1))

    def loss(self, states: Tensor, actions: Tensor, mask: Tensor) -> Tensor:
        """Masked MSE over consecutive pairs of ``[B, H, S]`` states (both steps real)."""
        pred = self(states[:, :-1], states[:, 1:])
        pair = (mask[:, :-1] * mask[:, 1:]).unsqueeze(-1)
        return ((pred - actions[:, :-1]) ** 2 * pair).sum() / (pair.sum() * actions.shape[-1])


def follow_plan(plan: Tensor, step: Tensor, state: Tensor) -> Tensor:
    """Diffuser's maze2d controller towards the plan's next waypoint (``plan_maze2d.py``).

    ``plan [n, H, 4]`` and ``state [n, 4]`` are unnormalized point-maze states ``[pos, vel]``;
    ``step [n]`` is how many steps each env has followed its plan. The waypoint is
    ``plan[step + 1]``, or past the end the last state with zero velocity; the action is
    ``(wp_pos - pos) + (wp_vel - vel)``.
    """
    horizon = plan.shape[1]
    idx = (step + 1).clamp(max=horizon - 1)
    waypoint = plan[torch.arange(len(plan), device=plan.device), idx].clone()
    waypoint[step + 1 >= horizon, 2:] = 0.0
    pos, vel = list(MAZE_POSITION), list(MAZE_VELOCITY)
    return (waypoint[:, pos] - state[:, pos]) + (waypoint[:, vel] - state[:, vel])


# ---------------------------------------------------------------------------------- env memory


class OpenLoopPlans:
    """Per-environment open-loop plans ``[n, H, D]`` and how many steps each has been followed.

    An environment needs a new plan after ``reset`` or once its plan is ``replan_every`` steps
    old (``replan_every = 0``: never, as Diffuser's maze2d script plans once per episode).
    """

    def __init__(self, replan_every: int):
        self.replan_every = replan_every
        self.plans: Tensor | None = None
        self.age = torch.zeros(0, dtype=torch.long)
        self.stale = np.zeros(0, dtype=bool)

    def reset(self, done: np.ndarray | None = None) -> None:
        if done is None:
            self.plans, self.stale = None, np.zeros(0, dtype=bool)
        elif len(self.stale):
            self.stale |= np.asarray(done, dtype=bool)

    def due(self, n_envs: int) -> np.ndarray:
        """Boolean ``[n]``: environments that must plan before acting now."""
        if self.plans is None or len(self.stale) != n_envs:
            return np.ones(n_envs, dtype=bool)
        old = (self.age.cpu().numpy() >= self.replan_every) if self.replan_every > 0 else False
        return self.stale | old

    def store(self, which: np.ndarray, plans: Tensor) -> None:
        """Install new plans for the environments flagged in ``which`` (``plans [k, H, D]``)."""
        n = len(which)
        if self.plans is None or len(self.stale) != n:
            self.plans = plans.new_zeros(n, *plans.shape[1:])
            self.age = torch.zeros(n, dtype=torch.long, device=plans.device)
            self.stale = np.ones(n, dtype=bool)
        idx = torch.as_tensor(np.flatnonzero(which), device=plans.device)
        self.plans[idx] = plans
        self.age[idx] = 0
        self.stale[which] = False

    def advance(self) -> None:
        self.age += 1

    def shifted(self, which: np.ndarray) -> Tensor | None:
        """The plans of the environments flagged in ``which``, each shifted by its age so that
        its step 0 is the present (the freed tail repeats the last step): the start of a
        warm-started replan. ``None`` when one of them has no plan to continue (after a reset).
        """
        if self.plans is None or len(self.stale) != len(which) or self.stale[which].any():
            return None
        idx = torch.as_tensor(np.flatnonzero(which), device=self.plans.device)
        horizon = self.plans.shape[1]
        steps = torch.arange(horizon, device=self.plans.device)
        rows = (steps + self.age[idx, None]).clamp(max=horizon - 1)  # [k, H]
        return self.plans[idx[:, None], rows]


def warm_start_from(
    plans: OpenLoopPlans, due: np.ndarray, share: float, n_diffusion_steps: int
) -> WarmStart | None:
    """A replan's :class:`WarmStart` for the environments flagged in ``due``: the plans they
    follow, shifted to the present, noised to the step after which ``share`` of the ``T`` steps
    remain (``share=0.2``, T=20: from step 3, four denoiser calls instead of twenty). None, a
    cold plan, when ``share`` is 0 or one of them follows no plan (it was reset)."""
    if share <= 0:
        return None
    previous = plans.shifted(due)
    if previous is None:
        return None
    return WarmStart(previous, max(math.ceil(share * n_diffusion_steps), 1) - 1)


def check_warm_start(share: float) -> None:
    """``algo.warm_start`` is a share of the diffusion steps, in [0, 1]."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(
            f"algo.warm_start={share}: a share of the diffusion steps, in [0, 1] (0: official)"
        )


class StateHistory:
    """The last ``length`` states of every environment ``[n, length, S]``, newest last.

    After a reset the history is filled with the first state seen (no earlier states exist).
    """

    def __init__(self, length: int):
        self.length = length
        self.states: Tensor | None = None
        self.fresh = np.zeros(0, dtype=bool)

    def reset(self, done: np.ndarray | None = None) -> None:
        if done is None:
            self.states, self.fresh = None, np.zeros(0, dtype=bool)
        elif len(self.fresh):
            self.fresh |= np.asarray(done, dtype=bool)

    def push(self, state: Tensor) -> Tensor:
        """Append ``state [n, S]`` and return the history ``[n, length, S]``."""
        n = len(state)
        if self.states is None or len(self.fresh) != n:
            self.states = state.unsqueeze(1).repeat(1, self.length, 1)
            self.fresh = np.zeros(n, dtype=bool)
            return self.states
        self.states = torch.cat([self.states[:, 1:], state.unsqueeze(1)], dim=1)
        if self.fresh.any():
            idx = torch.as_tensor(np.flatnonzero(self.fresh), device=state.device)
            self.states[idx] = state[idx].unsqueeze(1).expand(-1, self.length, -1)
            self.fresh[:] = False
        return self.states


# ---------------------------------------------------------------------------------- acting


@torch.no_grad()
def act_by_inverse_dynamics(
    obs: np.ndarray,
    plan: Callable[[Tensor, Tensor | None, Tensor, WarmStart | None], Tensor],
    *,
    layout: StateLayout,
    norm: Normalizer,
    plans: OpenLoopPlans,
    inverse: InverseDynamics,
    info: TaskInfo,
    target_return: float,
    history: StateHistory | None = None,
    warm_start: float = 0.0,
    n_diffusion_steps: int = 0,
) -> np.ndarray:
    """Decision Diffuser's acting step (also HDMI's): plan for every due environment in one
    batch, then ``a_t = f(s_t, s_next)`` towards the state the plan puts after the current one.

    ``plan(start, goal, target, warm)`` returns normalized state plans ``[n, H, S]`` for the due
    environments: ``start`` is their history ``[n, k, S]`` (newest last, pushed here every step)
    or, without ``history``, their current state ``[n, S]`` (``k = 1``); ``goal`` the normalized
    maze goal position ``[n, 2]`` (``None`` off mazes); ``target`` the normalized target return
    ``[n, 1]``; ``warm`` the :class:`WarmStart` of the replan (:func:`warm_start_from` with
    ``warm_start`` and ``n_diffusion_steps``; always None at ``warm_start=0``). A plan holds the ``k`` starting states first, so after ``age`` steps of following
    it the next state is at ``k + age`` (the last one past its end). Returns actions
    ``[n_envs, act_dim]`` clamped to the action bounds.
    """
    device = norm.device
    obs_t = to_tensor(obs, device)
    state = norm.states(layout.states(obs_t))
    start, k = (state, 1) if history is None else (history.push(state), history.length)
    due = plans.due(len(obs_t))
    if due.any():
        rows = torch.as_tensor(due, device=device)
        goal = None
        if layout.is_maze:
            goal = norm.state_dims(layout.goal(obs_t[rows]), MAZE_POSITION)
        target = torch.full((int(due.sum()), 1), target_return, device=device)
        warm = warm_start_from(plans, due, warm_start, n_diffusion_steps)
        plans.store(due, plan(start[rows], goal, target, warm))
    nxt = (plans.age + k).clamp(max=plans.plans.shape[1] - 1)
    next_state = plans.plans[torch.arange(len(plans.plans), device=device), nxt]
    action = norm.unactions(inverse(state, next_state))
    plans.advance()
    return action.clamp(info.action_low, info.action_high).cpu().numpy()


class BarrierMonitor:
    """The smallest barrier value ``b(s)`` over every planned state since the last ``clear``.

    ``barriers`` are the task's state constraints (``TaskInfo.barriers``, over observation dims);
    with none, :attr:`minimum` stays ``None``. Kept as a device tensor (no host sync per plan).
    """

    def __init__(self, barriers: Sequence, layout: StateLayout, obs_dim: int):
        self.barriers, self.layout, self.obs_dim = tuple(barriers), layout, obs_dim
        self._min: Tensor | None = None

    def observe(self, states: Tensor) -> None:
        """Record unnormalized planned states ``[..., state_dim]``."""
        if not self.barriers:
            return
        obs = self.layout.to_obs(states, self.obs_dim)
        low = torch.stack([b.value(obs).min() for b in self.barriers]).min()
        self._min = low if self._min is None else torch.minimum(self._min, low)

    def clear(self) -> None:
        self._min = None

    @property
    def minimum(self) -> float | None:
        return None if self._min is None else float(self._min)


def to_tensor(obs: np.ndarray, device: torch.device) -> Tensor:
    return torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=device)
