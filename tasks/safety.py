"""Safe tasks: per-step costs, cost budgets and state constraints (barrier functions).

A safe task is a :class:`~tasks.spec.TaskSpec` with a :class:`Safety`: what a step costs, the
per-episode budget on the (discounted) cumulative cost, and the state constraints whose barrier
``b(s) >= 0`` must hold at every planned and executed state. The same definitions label a
dataset's ``costs`` (:func:`dataset_costs`), put ``info["cost"]`` on every env step
(:class:`CostWrapper`), measure barriers at evaluation and reach the agents through
``TaskInfo`` (SafeDiffuser projects onto the barriers, TREBI plans against the budget).

Cost signals, after the papers:

* ``velocity``: ``|x-velocity|`` of the torso (TREBI, ``cost.py`` ``vel_cost``); in a dataset it
  comes from ``infos/x_velocity`` or the first ``infos/qpos`` coordinate's change over ``dt``;
* ``pendulum-band``: Saute RL's safe pendulum, which TREBI uses: the pole angle ``theta`` (0 up)
  of the pre-step observation within 45 degrees of the unsafe band [20, 30] degrees costs
  ``1 - |theta - 25 deg| / 50 deg``;
* ``reacher-region``: Saute RL's / TREBI's safe reacher: the fingertip within 0.5 of (0.5, 0.5)
  costs ``100 * (1 - 2 * distance)``;
* ``barrier``: 1 for every step whose next state violates a state constraint (SafeDiffuser's
  obstacles and torso-height ceiling), so the cumulative cost counts violating steps.

State constraints are barrier functions over observation dims, written with array operations
that numpy arrays and torch tensors share, so the evaluator (numpy) and the planners (torch,
batched over plans and environments) use one definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

Array = Any  # np.ndarray or torch.Tensor

# MuJoCo control steps of the locomotion envs (frame_skip x timestep), for velocity from qpos.
LOCOMOTION_DT = {"hopper": 0.008, "walker2d": 0.008, "halfcheetah": 0.05}

PENDULUM_UNSAFE = (math.radians(20.0), math.radians(30.0))
PENDULUM_HAZARD = math.radians(45.0)
REACHER_UNSAFE_CENTER = (0.5, 0.5)
REACHER_UNSAFE_RADIUS = 0.5


def _tiny(like: Array) -> float:
    """The smallest positive normal number of ``like``'s dtype."""
    if isinstance(like, torch.Tensor):
        return torch.finfo(like.dtype).tiny
    return float(np.finfo(like.dtype).tiny)


def _const(like: Array, values) -> Array:
    """``values`` as an array of ``like``'s kind, dtype and device."""
    if isinstance(like, torch.Tensor):
        return torch.as_tensor(values, dtype=like.dtype, device=like.device)
    return np.asarray(values, dtype=np.result_type(like, np.float32))


# ---------------------------------------------------------------------------------- barriers


@dataclass(frozen=True)
class SuperEllipse:
    """Region ``sum_d ((s_d - c_d) / r_d)^p <= 1`` over observation ``dims`` (``p`` even).

    ``keep_out``: the region is an obstacle, ``b(s) = sum_d (...)^p - 1``; else the state must
    stay inside, ``b(s) = 1 - sum_d (...)^p``. ``p = 2`` is an ellipse (a circle with equal radii),
    ``p = 4`` SafeDiffuser's super-ellipse.
    """

    dims: tuple[int, ...]
    center: tuple[float, ...]
    radii: tuple[float, ...]
    power: int = 2
    keep_out: bool = True

    def __post_init__(self):
        if self.power % 2 or self.power < 2:
            raise ValueError(f"power must be an even integer >= 2, got {self.power}")

    def _scaled(self, states: Array) -> Array:
        return (states[..., list(self.dims)] - _const(states, self.center)) / _const(
            states, self.radii
        )

    def value(self, states: Array) -> Array:
        """``b(s)`` for states ``[..., obs_dim]``; ``>= 0`` is safe."""
        level = (self._scaled(states) ** self.power).sum(-1) - 1.0
        return level if self.keep_out else -level

    def gradient(self, states: Array) -> Array:
        """``d b / d s`` over ``dims``: ``[..., len(dims)]``."""
        grad = self.power * self._scaled(states) ** (self.power - 1) / _const(states, self.radii)
        return grad if self.keep_out else -grad

    def boundary_point(self, states: Array) -> Array:
        """Where truncation (SafeDiffuser's Shield) puts each state: the region's boundary point
        on the ray from its centre through the state, over ``dims`` ``[..., len(dims)]`` (a state
        at the centre stays there)."""
        scaled = self._scaled(states)
        level = (scaled**self.power).sum(-1)[..., None] ** (1.0 / self.power)
        radii = _const(states, self.radii)
        return _const(states, self.center) + radii * scaled / level.clip(min=_tiny(level))


@dataclass(frozen=True)
class Ceiling:
    """``s[dim] <= limit`` (``upper``) or ``s[dim] >= limit``: ``b(s) = limit - s[dim]`` etc."""

    dim: int
    limit: float
    upper: bool = True

    @property
    def dims(self) -> tuple[int, ...]:
        return (self.dim,)

    def value(self, states: Array) -> Array:
        gap = self.limit - states[..., self.dim]
        return gap if self.upper else -gap

    def gradient(self, states: Array) -> Array:
        ones = states[..., self.dims] * 0.0 + 1.0
        return -ones if self.upper else ones

    def boundary_point(self, states: Array) -> Array:
        """Where truncation (SafeDiffuser's Shield) puts each state: on the limit, ``[..., 1]``."""
        return states[..., self.dims] * 0.0 + self.limit


Barrier = SuperEllipse | Ceiling


def barrier_values(barriers: tuple[Barrier, ...], states: Array) -> Array:
    """``[..., n_barriers]`` barrier values of ``states [..., obs_dim]``."""
    values = [b.value(states) for b in barriers]
    if isinstance(states, torch.Tensor):
        return torch.stack(values, dim=-1)
    return np.stack(values, axis=-1)


# ---------------------------------------------------------------------------------- costs


def pendulum_cost(obs: np.ndarray) -> np.ndarray:
    """Saute RL's safe-pendulum cost of observations ``[cos, sin, theta_dot]`` (pre-step)."""
    theta = np.arctan2(obs[..., 1], obs[..., 0])
    middle = 0.5 * sum(PENDULUM_UNSAFE)
    reach = PENDULUM_HAZARD + (middle - PENDULUM_UNSAFE[0])
    near = (theta >= PENDULUM_UNSAFE[0] - PENDULUM_HAZARD) & (
        theta <= PENDULUM_UNSAFE[1] + PENDULUM_HAZARD
    )
    return np.where(near, (reach - np.abs(middle - theta)) / reach, 0.0)


def reacher_fingertip(obs: np.ndarray) -> np.ndarray:
    """Fingertip ``(x, y)`` from a ``Reacher-v5`` observation (target + fingertip - target)."""
    return obs[..., 8:10] + obs[..., 4:6]


def reacher_cost(obs: np.ndarray) -> np.ndarray:
    """TREBI's safe-reacher cost: the fingertip inside the unsafe disc, linear in its depth."""
    dist = np.linalg.norm(reacher_fingertip(obs) - np.asarray(REACHER_UNSAFE_CENTER), axis=-1)
    return np.where(dist < REACHER_UNSAFE_RADIUS, 100.0 * (1.0 - dist / REACHER_UNSAFE_RADIUS), 0.0)


@dataclass(frozen=True)
class Safety:
    """A task's cost signal, budget and state constraints.

    The budget bounds an episode's cumulative cost discounted by ``cost_discount`` (1: a plain
    sum). It is ``budget`` when given, else ``budget_ratio * reference_cost``, where the reference
    is ``reference_cost`` for D4RL files (TREBI's ``MAX_COST_THRESHOLD``) and otherwise the largest
    such episode cost in the dataset (see :func:`resolve_budget`).
    """

    cost: str  # "velocity" | "pendulum-band" | "reacher-region" | "barrier"
    budget: float | None = None
    budget_ratio: float = 0.5
    reference_cost: float | None = None
    cost_discount: float = 1.0
    barriers: tuple[Barrier, ...] = field(default_factory=tuple)
    env: str | None = None  # locomotion env name for velocity from qpos

    def step_costs(
        self, obs: np.ndarray, next_obs: np.ndarray, x_velocity: np.ndarray | None = None
    ) -> np.ndarray:
        """Per-step costs of transitions ``obs -> next_obs`` (arrays ``[N, obs_dim]``)."""
        if self.cost == "velocity":
            if x_velocity is None:
                raise ValueError("the velocity cost needs the torso's x-velocity")
            return np.abs(np.asarray(x_velocity, dtype=np.float64))
        if self.cost == "pendulum-band":
            return pendulum_cost(obs)
        if self.cost == "reacher-region":
            return reacher_cost(obs)
        if self.cost == "barrier":
            return (barrier_values(self.barriers, next_obs).min(-1) < 0).astype(np.float64)
        raise ValueError(f"unknown cost {self.cost!r}")


def dataset_x_velocity(arrays: dict[str, np.ndarray], ends: np.ndarray, env: str) -> np.ndarray:
    """Torso x-velocity of every transition: ``infos/x_velocity``, else from ``infos/qpos``.

    From qpos, the velocity of step ``t`` is ``(x[t+1] - x[t]) / dt`` inside an episode; an
    episode's last step, whose next position is not stored, repeats the step before it.
    """
    if "infos/x_velocity" in arrays:
        return arrays["infos/x_velocity"].astype(np.float64)
    if "infos/qpos" not in arrays:
        raise ValueError("the velocity cost needs infos/x_velocity or infos/qpos in the dataset")
    x = arrays["infos/qpos"][:, 0].astype(np.float64)
    vel = np.zeros_like(x)
    vel[:-1] = (x[1:] - x[:-1]) / LOCOMOTION_DT[env]
    last = ends - 1
    starts = np.r_[0, ends[:-1]]
    vel[last] = np.where(last > starts, vel[np.maximum(last - 1, 0)], 0.0)
    return vel


def dataset_costs(safety: Safety, arrays: dict[str, np.ndarray], ends: np.ndarray) -> np.ndarray:
    """``costs [N]`` (float32) of a dataset's transitions under ``safety``."""
    x_velocity = None
    if safety.cost == "velocity":
        x_velocity = dataset_x_velocity(arrays, ends, safety.env or "hopper")
    costs = safety.step_costs(arrays["observations"], arrays["next_observations"], x_velocity)
    return costs.astype(np.float32)


def episode_costs(costs: np.ndarray, ends: np.ndarray, discount: float) -> np.ndarray:
    """Discounted cumulative cost of each episode (``ends``: exclusive end indices)."""
    out = np.zeros(len(ends))
    start = 0
    for i, end in enumerate(ends):
        out[i] = float(np.sum(costs[start:end] * discount ** np.arange(end - start)))
        start = end
    return out


def resolve_budget(
    safety: Safety,
    costs: np.ndarray,
    ends: np.ndarray,
    source: str,
    budget: float | None = None,
    budget_ratio: float | None = None,
) -> tuple[float, dict[str, Any]]:
    """The episode cost budget and how it was set (``budget``/``budget_ratio`` override)."""
    if budget is None:
        budget = safety.budget
    if budget is not None:
        return float(budget), {"rule": "absolute"}
    ratio = safety.budget_ratio if budget_ratio is None else float(budget_ratio)
    if source == "d4rl" and safety.reference_cost is not None:
        reference, rule = safety.reference_cost, "ratio x TREBI's MAX_COST_THRESHOLD"
    else:
        reference = float(episode_costs(costs, ends, safety.cost_discount).max())
        rule = "ratio x the dataset's largest discounted episode cost"
    return ratio * reference, {"rule": rule, "ratio": ratio, "reference_cost": reference}


# ---------------------------------------------------------------------------------- env side


MAX_SAFE_RESETS = 1000


class CostWrapper(gym.Wrapper):
    """Puts the task's per-step ``info["cost"]`` on every step (0.0 on reset); wraps an env whose
    observations are already flat, in the dataset's layout.

    Episodes start in a safe state: a reset that lands inside a state constraint (``b < 0``,
    e.g. a point-maze start inside an obstacle) is redrawn from the env's own random stream, so a
    seeded reset stays reproducible. A state constraint is an invariance requirement, which no
    agent can meet from an unsafe start.
    """

    def __init__(self, env: gym.Env, safety: Safety):
        super().__init__(env)
        self.safety = safety
        self._obs = None

    def _unsafe(self, obs) -> bool:
        barriers = self.safety.barriers
        return bool(barriers) and float(barrier_values(barriers, np.asarray(obs)[None]).min()) < 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        for _ in range(MAX_SAFE_RESETS):
            if not self._unsafe(obs):
                break
            obs, info = self.env.reset(options=kwargs.get("options"))
        else:
            raise RuntimeError(f"no safe start state in {MAX_SAFE_RESETS} resets")
        self._obs = np.asarray(obs, dtype=np.float64)
        info["cost"] = 0.0
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        flat = np.asarray(obs, dtype=np.float64)
        x_velocity = np.asarray([info["x_velocity"]]) if "x_velocity" in info else None
        cost = self.safety.step_costs(self._obs[None], flat[None], x_velocity)
        info["cost"] = float(cost[0])
        self._obs = flat
        return obs, reward, terminated, truncated, info
