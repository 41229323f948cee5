"""SafeDiffuser: Safe Planning with Diffusion Probabilistic Models
(Xiao, Wang, Gan, Hasani, Lechner & Rus, ICLR 2025, arXiv:2306.00148).

Method: Diffuser (:mod:`algorithms.diffuser`, trained unchanged: its model, losses and planning
pass from :mod:`algorithms.common.diffuser_core`, its settings extended) whose sampler filters every
denoising step through a control barrier function: on the constrained state dims the update
``u_ref = x_prev - x_t`` is replaced by the closest ``u`` that satisfies the discrete-time CBF
condition ``grad b(x_t) . u + k b(x_t) >= 0`` of every barrier, one tiny QP per planned state.

Official code (Weixy21/SafeDiffuser ``diffuser/models/diffusion.py``: branch ``maze2d`` for the
maze2d-large obstacles, branch ``locomotion`` for the torso-height ceilings, whose values
``tasks.registry`` takes), followed:
- ``p_sample`` proposes the usual DDPM step (noise included), then ``invariance*`` solves, per
  planned state (the plan reshaped to ``[horizon, ...]``), ``min ||u - u_ref||^2`` s.t.
  ``grad b . u + Lfb + k b >= 0`` (qpth ``G z <= h`` with ``G = -grad b``, ``h = Lfb + k b``),
  ``k = 1``, with ``b`` and its gradient at ``x_t``; ``x_prev = x_t + u`` on the constrained
  dims, the other dims keep the proposed step; ``apply_conditioning`` follows. Methods
  (``method``):
- settings: Diffuser's, except on locomotion the locomotion branch's ``config/locomotion.py``
  and ``scripts/plan_guided.py``: H = 600 for the model and the value, one plan per step
  (``batch_size`` 1: nothing to rank), value discount 0.99, guide scale 0.001 on
  hopper-medium-expert (its episodes last 500 steps: the harness's budget sets ours);
- ``robust`` (RoS, ``invariance`` / ``invariance_cf``): ``b - margin``, ``Lfb = 0``; the margin
  is the maze branch's "robust term" 0.01, and 0 on locomotion (the ceilings' ``invariance`` /
  ``invariance_hopper`` leave it commented out);
- ``relaxed`` (ReS, ``invariance_relax``): a slack ``r_i`` per barrier, ``z = [u, r]``, objective
  ``||u - u_ref||^2 + ||r||^2``, rows ``[-grad b_i, w e_i] z <= k (b_i - 0.01)``, i.e.
  ``grad b_i . u + k b_i - w r_i >= 0``, with ``w = 100`` while ``t >= 10`` (the constraint may
  be broken at a quadratic price) and ``w = 0`` below (``r`` leaves the row: exact constraint);
- ``time-varying`` (TVS, ``invariance_time``): ``b(x, t) = sum(((x - c) / r)^p) - s - 0.01``
  with ``s = sigmoid(t_bias - t)``, ``t_bias = 5``, and ``Lfb = s (1 - s)``: the obstacle grows
  from almost a point at large ``t`` to its full size at ``t = 0``;
- ``truncate`` (the paper's baseline, ``Shield``): after the step, a planned position inside an
  obstacle is moved along the ray from the obstacle's centre onto its boundary;
- ``gradient-push`` (the paper's "CG" baseline, ``GD``): where ``b(x_prev) < 0.1`` for the first
  such obstacle (the official ``if / elif``), each of its dims ``d`` moves by
  ``0.2 * 0.001 / (db / dx_d)``, so ``b`` rises by about ``2e-4`` per dim to first order (the
  official divides by the gradient, not multiplies);
- ``none``: plain Diffuser in the same agent, for comparisons.

Differences and why:
- barriers come from ``TaskInfo.barriers`` (any number, over any planned observation dims, used
  only through their methods ``dims``, ``value``, ``gradient`` and, to truncate,
  ``boundary_point``), not hard-coded obstacles and heights; the QP's variables are the union of
  their dims. ``b`` is evaluated on unnormalized states and the QP is solved in the planner's
  normalized coordinates (Diffuser's: the [-1, 1] limits on mazes, z-scores on locomotion, as
  the official's branches), the gradient by the chain rule ``db/dz_d = db/ds_d * scale_d``. The
  official writes ``b`` in normalized coordinates with its constants converted by hand: the same
  super-ellipse values, and for a ceiling ``(H - z) / std_z``, a positive multiple of ours, so
  with the locomotion margin 0 the same constraint; the "complex" ceiling specification of the
  locomotion branch (``invariance_cpx``: limit 1.6 / 1.4 with a ``-0.1`` term on the normalized
  z-velocity) is not offered: it is defined in the normalized coordinates of its dataset;
- the QP is solved exactly by active-set enumeration (:mod:`algorithms.common.qp`), not with
  qpth's interior-point solver (qpth pins ``numpy<2``) or the two-constraint closed form; same
  optimum. For convex keep-out barriers (super-ellipses) and the ceiling, ``k = 1`` makes the
  planned state after every step satisfy ``b >= margin`` exactly (``b`` lies above its tangent);
  for keep-in regions only to first order;
- time-varying for any barrier: ``b(x, t) = b(x) + 1 - s - margin`` (the official's form for
  keep-out super-ellipses, whose ``b`` has the ``-1``); a ``Ceiling`` thus starts raised by
  ``1 - s`` (in its own units, torso height) and comes down to ``1 - sigmoid(t_bias)`` above its
  limit at ``t = 0``. ``Lfb = -s (1 - s)``, the official's term with its sign corrected:
  ``b(x, t)`` falls by about ``s (1 - s)`` per denoising step (``t`` decreases), which the CBF
  condition must anticipate (``db/dtau`` along the denoising time ``tau = -t``); the official's
  ``+s (1 - s)`` loosens the row instead, and its plans end at ``b >= -0.0033``. With the
  corrected sign they end at ``b(x) >= margin - (1 - sigmoid(t_bias)) = 0.0033``;
- ``truncate`` moves states out of every barrier in task order (the official truncates only the
  circle) onto the point each barrier names (``boundary_point``: a super-ellipse's on the ray
  from its centre, a ceiling's limit); a state exactly at a centre stays there;
- ``gradient-push`` skips a dim whose gradient component is exactly zero (the official divides
  by it);
- the hooks act on every planned state, the inpainted ones too: inpainting re-imposes those right
  after (as the official's ``apply_conditioning``), and each state's QP is separate, so a start
  state inside an obstacle cannot make another state's QP infeasible (its own is solvable: ``u``
  is unbounded; with an exactly zero gradient inside an obstacle the solver returns the least
  violating candidate);
- with ``ddim_steps`` (or ``warm_start``) the hooks act at every visited step ``t``; the ReS / TVS
  schedules use ``t``;
- the margin, ``k``, ``w`` and ``t_bias`` apply to every barrier alike; the margin is in ``b``'s
  units (level-set units for super-ellipses as the official, distance for a ceiling, whose
  official margin is 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from algorithms.common.contract import DatasetStats, TaskInfo
from algorithms.common.defaults import Official, PaperDefaults, Settings, check_choice
from algorithms.common.diffuser_core import (
    DIFFUSER_PAPER,
    DiffuserAgent,
    DiffuserConfig,
    PlanHooks,
    Projection,
    diffuser_fidelity,
    fidelity_rows,
    resolve_diffuser,
    value_fidelity,
)
from algorithms.common.planning import AffineNormalizer, StateLayout
from algorithms.common.qp import project_polyhedron

_LOCOMOTION = "Weixy21/SafeDiffuser branch locomotion"

# Diffuser's settings (the official SafeDiffuser trains Diffuser's models) plus the safety
# filter's constants: the maze branch's; on locomotion the locomotion branch's margin, horizon
# (600), single plan and value discount (0.99).
PAPER = DIFFUSER_PAPER.extend(
    families={
        "default": Settings(
            "Weixy21/SafeDiffuser branch maze2d diffuser/models/diffusion.py (invariance, "
            "invariance_relax, invariance_time, GD)",
            {
                "k": 1.0,
                "robust_margin": 0.01,
                "relax_weight": 100.0,
                "relax_until": 10,
                "t_bias": 5.0,
                "push_step": 2e-4,
                "push_threshold": 0.1,
            },
        ),
        "locomotion": Settings(
            f"{_LOCOMOTION} diffuser/models/diffusion.py (invariance, invariance_hopper: no "
            "robust term), config/locomotion.py, scripts/plan_guided.py (batch_size 1)",
            {"robust_margin": 0.0, "horizon": 600, "n_candidates": 1, "discount": 0.99},
        ),
    },
    datasets={
        "hopper-medium-expert-v2": Settings(
            f"{_LOCOMOTION} config/locomotion.py hopper_medium_expert_v2", {"guide_scale": 0.001}
        )
    },
)
METHODS = ("robust", "relaxed", "time-varying", "truncate", "gradient-push", "none")


@dataclass
class Config(DiffuserConfig):
    """Diffuser's fields plus the safety filter's; ``None`` takes :data:`PAPER`'s value."""

    method: str = "robust"  # safety filter, one of METHODS (module docstring; none: plain Diffuser)
    k: float | None = None  # CBF class-K gain: b(x_prev) >= (1 - k) b(x_t) to first order
    robust_margin: float | None = None  # b - margin in robust, relaxed and time-varying
    relax_weight: float | None = None  # w of the slack while t >= relax_until
    relax_until: int | None = None  # below this diffusion step the relaxed constraint is exact
    t_bias: float | None = None  # time-varying: s = sigmoid(t_bias - t)
    push_step: float | None = None  # gradient-push: 0.2 * 0.001, divided by db/dz per dim
    push_threshold: float | None = None  # gradient-push acts where b(x_prev) < this


@runtime_checkable
class TruncatableBarrier(Protocol):
    """A barrier (``TaskInfo.barriers``) that also names where truncation puts a state:
    ``boundary_point(states) -> [..., len(dims)]``, the boundary point over its dims."""

    dims: tuple[int, ...]

    def value(self, states: Tensor) -> Tensor: ...

    def boundary_point(self, states: Tensor) -> Tensor: ...


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with :data:`PAPER`'s values; the method validated against the task's barriers."""
    check_choice("method", cfg.method, METHODS)
    if not info.barriers:
        raise ValueError(
            f"SafeDiffuser needs state constraints (TaskInfo.barriers); task "
            f"{info.task_id!r} has none: use a safe task such as obstacles-* or ceiling-*"
        )
    unsupported = [b for b in info.barriers if not isinstance(b, TruncatableBarrier)]
    if cfg.method == "truncate" and unsupported:
        raise ValueError(f"algo.method=truncate needs barriers with boundary_point: {unsupported}")
    return resolve_diffuser(cfg, PAPER, info)


# ---------------------------------------------------------------------------------- barriers


class PlannedBarriers:
    """The task's barriers on normalized planner transitions ``[..., act_dim + state_dim]``.

    ``obs_dims``: the union of the barriers' observation dims (the QP's variables), ``columns``:
    their columns in a transition. :meth:`evaluate` gives ``b [..., m]`` at the unnormalized
    states and ``db/dz [..., m, n]`` w.r.t. the normalized coordinates of those columns.
    """

    def __init__(
        self,
        barriers: Sequence,
        layout: StateLayout,
        norm: AffineNormalizer,
        obs_dim: int,
        act_dim: int,
    ):
        position = {d: i for i, d in enumerate(layout.state_idx)}
        unplanned = sorted({d for b in barriers for d in b.dims} - set(position))
        if unplanned:
            raise ValueError(f"barriers on observation dims {unplanned} that are not planned")
        self.barriers, self.obs_dim = tuple(barriers), obs_dim
        self.obs_dims = sorted({d for b in barriers for d in b.dims})
        states = [position[d] for d in self.obs_dims]
        device = norm.device
        self.columns = torch.tensor(states, device=device) + act_dim
        self.shift, self.scale = norm.s_shift[states], norm.s_scale[states]
        self.slots = [
            torch.tensor([self.obs_dims.index(d) for d in b.dims], device=device) for b in barriers
        ]

    def observations(self, x: Tensor) -> Tensor:
        """Unnormalized observations ``[..., obs_dim]`` of transitions ``x`` on the barriers'
        dims; the other dims, which no barrier reads, are zero."""
        values = x[..., self.columns] * self.scale + self.shift
        dims = self.columns.new_tensor(self.obs_dims)
        return values.new_zeros(*values.shape[:-1], self.obs_dim).index_copy(-1, dims, values)

    def normalized(self, obs: Tensor) -> Tensor:
        """The barriers' dims of observations ``obs``, normalized as in a transition."""
        return (obs[..., self.obs_dims] - self.shift) / self.scale

    def evaluate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        obs = self.observations(x)
        values = torch.stack([b.value(obs) for b in self.barriers], dim=-1)
        zeros = obs.new_zeros(*obs.shape[:-1], len(self.obs_dims))
        rows = [
            zeros.index_copy(-1, slots, b.gradient(obs) * self.scale[slots])
            for b, slots in zip(self.barriers, self.slots, strict=True)
        ]
        return values, torch.stack(rows, dim=-2)


def boundary_projection(barrier: TruncatableBarrier, obs: Tensor) -> Tensor:
    """``obs [..., obs_dim]`` with states that violate ``barrier`` moved onto its
    ``boundary_point`` (Shield's move)."""
    dims = torch.tensor(barrier.dims, device=obs.device)
    current = obs[..., barrier.dims]
    violated = (barrier.value(obs) < 0).unsqueeze(-1)
    return obs.index_copy(-1, dims, torch.where(violated, barrier.boundary_point(obs), current))


# ---------------------------------------------------------------------------------- agent


class Agent(DiffuserAgent):
    """Diffuser (:class:`DiffuserAgent`, trained unchanged) with SafeDiffuser's safety filter as
    the planning pass's projection; reports its planned barriers."""

    def __init__(
        self,
        cfg: Config,
        info: TaskInfo,
        stats: DatasetStats,
        device: torch.device | str,
        train_steps: int,
    ):
        super().__init__(resolve(cfg, info, stats), info, stats, device)
        planner = self.planner
        self.barriers = PlannedBarriers(
            info.barriers, planner.layout, planner.norm, info.obs_dim, info.act_dim
        )

    # -- planning ----------------------------------------------------------------------------

    def hooks(self, context: Tensor | None) -> PlanHooks:
        """The safety filter of ``cfg.method`` as the projection of every denoising step."""
        return PlanHooks(projection=self.projection())

    def projection(self) -> Projection | None:
        """The safety filter of ``cfg.method`` (None for ``none``)."""
        return {
            "robust": self.cbf_filter,
            "relaxed": self.cbf_filter,
            "time-varying": self.cbf_filter,
            "truncate": self.truncate,
            "gradient-push": self.gradient_push,
            "none": None,
        }[self.cfg.method]

    # -- CBF filters (RoS, ReS, TVS) ---------------------------------------------------------

    def cbf_terms(self, t: int) -> tuple[float, float, float]:
        """``(shift, Lfb, w)`` at diffusion step ``t``: the QP row of barrier ``b`` reads
        ``db . u + Lfb + k (b + shift) - w r >= 0`` (``w = 0``: no slack)."""
        cfg = self.cfg
        if cfg.method == "time-varying":
            s = 1.0 / (1.0 + math.exp(t - cfg.t_bias))  # sigmoid(t_bias - t)
            return 1.0 - s - cfg.robust_margin, -s * (1.0 - s), 0.0
        weight = cfg.relax_weight if cfg.method == "relaxed" and t >= cfg.relax_until else 0.0
        return -cfg.robust_margin, 0.0, weight

    def cbf_problem(self, x_prev: Tensor, x_t: Tensor, t: int) -> tuple[Tensor, Tensor, Tensor]:
        """The QPs ``min ||z - p||^2 s.t. A z >= c`` of every planned state, flattened to
        ``p [B, n']``, ``A [B, m, n']``, ``c [B, m]``: ``z = u`` on the barriers' dims, plus one
        slack per barrier while the relaxed filter relaxes (``z = [u, r]``, rows ``[db, -w e_i]``)."""
        cols = self.barriers.columns
        values, grads = self.barriers.evaluate(x_t)  # [..., m], [..., m, n]
        shift, lfb, weight = self.cbf_terms(t)
        m, n = grads.shape[-2:]
        p, A = (x_prev[..., cols] - x_t[..., cols]).reshape(-1, n), grads.reshape(-1, m, n)
        c = -(lfb + self.cfg.k * (values + shift)).reshape(-1, m)
        if weight > 0:
            slack = -weight * torch.eye(m, dtype=A.dtype, device=A.device).expand(len(A), m, m)
            p, A = torch.cat([p, p.new_zeros(len(p), m)], -1), torch.cat([A, slack], -1)
        return p, A, c

    def cbf_filter(self, x_prev: Tensor, x_t: Tensor, t: int) -> Tensor:
        """Replace the step on the barriers' dims by the CBF-QP's solution (batched over every
        planned state of every plan and environment)."""
        cols = self.barriers.columns
        start, u_ref = x_t[..., cols], x_prev[..., cols] - x_t[..., cols]
        u = project_polyhedron(*self.cbf_problem(x_prev, x_t, t))[:, : len(cols)]
        u = u.reshape(u_ref.shape)
        kept = torch.where(u == u_ref, x_prev[..., cols], start + u)  # untouched steps: bitwise
        return x_prev.index_copy(-1, cols, kept)

    # -- baselines ---------------------------------------------------------------------------

    def truncate(self, x_prev: Tensor, x_t: Tensor, t: int) -> Tensor:
        """Shield: move planned states inside a barrier onto its boundary after the step."""
        obs = self.barriers.observations(x_prev)
        moved = obs
        for barrier in self.barriers.barriers:
            moved = boundary_projection(barrier, moved)
        cols, dims = self.barriers.columns, self.barriers.obs_dims
        changed = moved[..., dims] != obs[..., dims]
        new = torch.where(changed, self.barriers.normalized(moved), x_prev[..., cols])
        return x_prev.index_copy(-1, cols, new)

    def gradient_push(self, x_prev: Tensor, x_t: Tensor, t: int) -> Tensor:
        """The official ``GD``: near the first barrier with ``b(x_prev) < threshold`` add
        ``push_step / (db/dz_d)`` to each of its dims ``d`` (zero components skipped)."""
        cfg, cols = self.cfg, self.barriers.columns
        values, grads = self.barriers.evaluate(x_prev)
        near = values < cfg.push_threshold
        first = near & (near.cumsum(-1) == 1)  # [..., m]
        nonzero = grads != 0
        moves = torch.where(nonzero, cfg.push_step / torch.where(nonzero, grads, 1.0), 0.0)
        delta = (moves * first.unsqueeze(-1)).sum(-2)
        return x_prev.index_copy(-1, cols, x_prev[..., cols] + delta)


# ---------------------------------------------------------------------------------- fidelity

REPO = "Weixy21/SafeDiffuser"
MAZE_BRANCH = f"{REPO} branch maze2d"
MAZE_MODEL = f"{MAZE_BRANCH} diffuser/models/diffusion.py"
LOCO_MODEL = f"{_LOCOMOTION} diffuser/models/diffusion.py"
# budget=paper: the final checkpoint; the locomotion branch's plan_guided.py runs 10 episodes, the
# maze2d branch's plan_maze2d.py one per call ("num of testing runs"), so budget=paper is refused
# on the mazes.
PAPER_BUDGET = PaperDefaults(
    families={
        "locomotion": Settings(
            f"{_LOCOMOTION} config/locomotion.py (n_train_steps 1e6), scripts/plan_guided.py "
            "(for kk in range(10))",
            {"train_steps": 1_000_000, "eval_every": 1_000_000, "eval_episodes": 10},
        ),
        "maze": Settings(
            f"{MAZE_BRANCH} config/maze2d.py (n_train_steps 2e6)",
            {"train_steps": 2_000_000, "eval_every": 2_000_000},
        ),
    }
)
FIDELITY_TASKS = ("obstacles-maze2d-large-v1", "ceiling-hopper-medium-v2")
MAZE_TASK, CEILING_TASK = FIDELITY_TASKS
FIDELITY = (
    *diffuser_fidelity(REPO),
    *fidelity_rows(
        MAZE_TASK,
        f"{MAZE_BRANCH} config/maze2d.py (maze2d_large_v1 over the base), scripts/plan_maze2d.py",
        {
            "horizon": 384,
            "n_diffusion_steps": 256,
            "dim_mults": (1, 4, 8),
            "attention": False,
            "action_weight": 1.0,
            "guided": False,
            "n_candidates": 1,
            "replan_every": 0,
            "controller": "pd",
            "normalizer": "limits",
            "clip_denoised": True,
            "padding": False,
            "goal_exit_radius": 0.5,
        },
    ),
    Official("termination_penalty", 0.0, f"{MAZE_BRANCH} config/maze2d.py (None)", task=MAZE_TASK),
    *fidelity_rows(
        MAZE_TASK,
        f"{MAZE_MODEL} (p_sample: invariance_cf, RoS; invariance_relax, invariance_time, GD)",
        {
            "method": "robust",
            "k": 1.0,
            "robust_margin": 0.01,
            "relax_weight": 100.0,
            "relax_until": 10,
            "t_bias": 5.0,
            "push_step": 2e-4,
            "push_threshold": 0.1,
        },
    ),
    Official(
        "time-varying barrier's Lfb",
        "+s (1 - s)",
        f"{MAZE_MODEL} (invariance_time)",
        "the official sign loosens the row (its plans end at b >= -0.0033); b(x, t) falls as t "
        "decreases, which the corrected sign anticipates",
        ours="-s (1 - s)",
        task=MAZE_TASK,
    ),
    *fidelity_rows(
        CEILING_TASK,
        f"{_LOCOMOTION} config/locomotion.py, scripts/plan_guided.py (batch_size 1)",
        {
            "horizon": 600,
            "n_diffusion_steps": 20,
            "dim_mults": (1, 2, 4, 8),
            "attention": False,
            "action_weight": 10.0,
            "guided": True,
            "discount": 0.99,
            "n_candidates": 1,
            "guide_scale": 0.1,
            "t_stopgrad": 2,
            "replan_every": 1,
            "controller": "actions",
            "normalizer": "gaussian",
            "clip_denoised": False,
            "termination_penalty": -100.0,
            "padding": True,
            "goal_exit_radius": 0.0,
        },
    ),
    *value_fidelity(REPO, CEILING_TASK),
    *fidelity_rows(
        CEILING_TASK,
        f"{LOCO_MODEL} (p_sample_loop: invariance_cf; invariance_hopper, no robust term)",
        {"method": "robust", "k": 1.0, "robust_margin": 0.0},
    ),
    Official(
        "ceiling height",
        "torso height at most 1.5 (hopper), 1.3 (walker2d)",
        f"{LOCO_MODEL} (invariance_hopper, invariance)",
        task=CEILING_TASK,
    ),
    Official(
        "value model's input normalization",
        "limits ('values' LimitsNormalizer) while the diffuser samples in z-scores",
        f"{_LOCOMOTION} config/locomotion.py",
        "one normalization for the segments the value learns on and the samples it guides",
        ours="the diffuser's z-scores",
        task=CEILING_TASK,
    ),
    Official(
        "QP solver",
        "qpth's interior-point QPFunction, or a closed form for one or two barriers (_cf)",
        MAZE_MODEL,
        "qpth pins numpy<2; the exact active-set solution is the same optimum for any number "
        "of barriers",
        ours="exact active-set enumeration (algorithms.common.qp)",
    ),
)
