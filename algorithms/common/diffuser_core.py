"""Diffuser's model and planning pass, shared by Diffuser and the planners built on it.

Diffuser (Janner et al. 2022; :mod:`algorithms.diffuser` documents the method, its sources and
every departure) is a trained model and a planning pass at once; its safe variants
(:mod:`algorithms.safediffuser`, :mod:`algorithms.trebi`) train the same model and change the pass
through explicit hooks. Here, once:

* :data:`DIFFUSER_PAPER`, :class:`DiffuserConfig`, :func:`resolve_diffuser`: Diffuser's published
  settings, its Config fields and their resolution; a variant extends the settings
  (:meth:`~algorithms.common.defaults.PaperDefaults.extend`) and the Config (a subclass);
* :func:`make_denoiser`, :func:`make_value`: the trained pieces (network, EMA copy, Adam);
* :class:`Segments`, :func:`diffusion_loss`, :func:`value_loss`, :func:`optimize`: training
  batches as Diffuser sees them and its two losses;
* :class:`DiffuserAgent`: Diffuser's agent (training, planning, acting), which a variant
  subclasses, overriding the hooks it adds;
* :class:`PlanHooks` and :class:`DiffuserPlanner`: the guided planning pass, one batched
  denoising pass over environments x candidate plans with the start (and a maze's goal)
  inpainted, guided up the value's gradient plus a variant's guide term, each denoising step
  edited by a variant's projection, the candidates ranked by value or a variant's score; then
  open-loop acting (new plans for the environments due, the planned action or the maze
  controller).

A variant builds its hooks per call from that call's context (TREBI: each environment's remaining
cost budget); the planner stores nothing between calls but the plans being followed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from algorithms.common.contract import Checkpointable, DatasetStats, DataSpec, TaskInfo
from algorithms.common.defaults import Official, PaperDefaults, Settings, check_choice, fill
from algorithms.common.diffusion import (
    ClassifierGuidance,
    Denoiser,
    GaussianDiffusion,
    GradFn,
    WarmStart,
    value_gradient,
)
from algorithms.common.nets import EMA, gradient_step
from algorithms.common.planning import (
    BarrierMonitor,
    Constraints,
    OpenLoopPlans,
    StateLayout,
    best_of,
    check_warm_start,
    follow_plan,
    make_normalizer,
    to_tensor,
    warm_start_from,
    with_inpainting,
)
from algorithms.common.schedules import make_betas
from algorithms.common.unet import TemporalUnet, TemporalValue

_LOCOMOTION = "jannerm/diffuser config/locomotion.py"
_MAZE = "jannerm/diffuser config/maze2d.py"

# Diffuser's published settings (official code): config/locomotion.py for every task but the
# point mazes (locomotion, toy and safe control tasks alike), config/maze2d.py and
# scripts/plan_maze2d.py for the mazes (the base is the medium maze), per-dataset overrides.
DIFFUSER_PAPER = PaperDefaults(
    families={
        "default": Settings(
            f"{_LOCOMOTION}, scripts/plan_guided.py; discount of the released value checkpoints "
            "(values/defaults_H32_T20_d0.997)",
            {
                "horizon": 32,
                "n_diffusion_steps": 20,
                "dim_mults": (1, 2, 4, 8),
                "action_weight": 10.0,
                "guided": True,
                "discount": 0.997,
                "n_candidates": 64,
                "guide_scale": 0.1,
                "t_stopgrad": 2,
                "replan_every": 1,
                "controller": "actions",
                "normalizer": "gaussian",
                "clip_denoised": False,
                "attention": False,
                "termination_penalty": -100.0,
                "padding": True,
                "goal_exit_radius": 0.0,
            },
        ),
        "maze": Settings(
            f"{_MAZE} base, scripts/plan_maze2d.py (one plan per episode, PD controller), "
            "diffuser/datasets/preprocessing.py maze2d_set_terminals",
            {
                "dim_mults": (1, 4, 8),
                "action_weight": 1.0,
                "guided": False,
                "n_candidates": 1,
                "guide_scale": 0.0,
                "t_stopgrad": 0,
                "replan_every": 0,
                "controller": "pd",
                "normalizer": "limits",
                "clip_denoised": True,
                "termination_penalty": 0.0,
                "padding": False,
                "goal_exit_radius": 0.5,
            },
        ),
        "maze-umaze": Settings(
            f"{_MAZE} maze2d_umaze_v1", {"horizon": 128, "n_diffusion_steps": 64}
        ),
        "maze-medium": Settings(f"{_MAZE} base", {"horizon": 256, "n_diffusion_steps": 256}),
        "maze-large": Settings(
            f"{_MAZE} maze2d_large_v1", {"horizon": 384, "n_diffusion_steps": 256}
        ),
    },
    datasets={
        "hopper-medium-expert-v2": Settings(
            f"{_LOCOMOTION} hopper_medium_expert_v2", {"guide_scale": 0.0001, "t_stopgrad": 4}
        ),
        **{
            f"halfcheetah-{level}-v2": Settings(
                f"{_LOCOMOTION} halfcheetah_{level.replace('-', '_')}_v2",
                {
                    "horizon": 4,
                    "dim_mults": (1, 4, 8),
                    "attention": True,
                    "guide_scale": 0.001,
                    "t_stopgrad": 4,
                },
            )
            for level in ("medium", "medium-replay", "medium-expert")
        },
        # Ours: maze2d_set_terminals cuts at maze2d's one fixed target; with a goal per episode
        # (pointmaze-*) it would leave only goal-to-goal trips longer than H (umaze: 6% of the
        # steps); these keep the dataset's episodes, padded with the point at rest at its goal.
        **{
            f"pointmaze-{size}": Settings(
                "ours: the dataset's episodes, padded (maze2d_set_terminals needs a fixed target)",
                {"padding": True, "goal_exit_radius": 0.0},
            )
            for size in ("umaze", "medium", "large")
        },
    },
)
CONTROLLERS = ("pd", "actions")
AFFINE_NORMALIZERS = ("gaussian", "limits")  # SafeDiffuser's QP needs an affine normalizer


@dataclass
class DiffuserConfig:
    """Diffuser's hyperparameters; ``None`` fields take the paper's value for the task."""

    horizon: int | None = None  # planned segment length H
    n_diffusion_steps: int | None = None  # diffusion steps T of the cosine schedule
    dim: int = 32  # base channel width of the temporal U-Net (and of the value network)
    dim_mults: tuple[int, ...] | None = None  # U-Net channel multipliers per resolution
    predict_epsilon: bool = False  # the denoiser predicts the noise (False: the clean segment)
    action_weight: float | None = None  # loss weight of the first step's action
    lr: float = 2e-4  # Adam learning rate of the denoiser
    batch_size: int = 64  # segments per update (the official 32 x 2 accumulation steps)
    ema_decay: float = 0.995  # decay of the EMA copies (denoiser, values), which plan
    ema_start: int = 2000  # updates before the EMAs start averaging
    ema_every: int = 10  # updates between EMA updates
    guided: bool | None = None  # train a value model; guide and rank plans with it
    discount: float | None = None  # discount of the value model's returns-to-go
    value_lr: float = 2e-4  # Adam learning rate of the value model
    n_candidates: int | None = None  # plans sampled per decision, the best-valued one executed
    guide_scale: float | None = None  # step size of the value-gradient guidance (0: none)
    t_stopgrad: int | None = None  # no guidance at diffusion steps below this one
    n_guide_steps: int = 2  # guidance moves per denoising step
    normalizer: str | None = None  # of states and actions: gaussian (z-scores) or limits ([-1, 1])
    clip_denoised: bool | None = None  # clamp the predicted x0 to [-1, 1] (the limits range)
    attention: bool | None = None  # linear-attention layers in the U-Net (Diffuser's halfcheetah)
    termination_penalty: float | None = None  # added to terminal rewards of the value's targets
    padding: bool | None = None  # training windows may run past their episode's end (masked)
    goal_exit_radius: float | None = None  # >0 (mazes): episodes cut where the goal is left
    ddim_steps: int | None = None  # sampler steps at acting time (None: all T DDPM steps)
    ddim_eta: float = 0.0  # DDIM's stochasticity (0: deterministic)
    replan_every: int | None = None  # steps between new plans (0: one plan per episode)
    warm_start: float = 0.0  # replans denoise the last plan from this share of T (0: pure noise)
    controller: str | None = None  # pd: follow planned states (mazes); actions: planned actions


C = TypeVar("C", bound=DiffuserConfig)


def resolve_diffuser(cfg: C, paper: PaperDefaults, info: TaskInfo) -> C:
    """``cfg`` with ``paper``'s values for ``info`` filled in and the controller validated."""
    out = fill(cfg, paper, info)
    check_choice("controller", out.controller, CONTROLLERS)
    check_choice("normalizer", out.normalizer, AFFINE_NORMALIZERS)
    if out.controller == "pd" and info.kind != "maze":
        raise ValueError(
            "algo.controller=pd follows planned point-maze states; use it on maze tasks"
        )
    if out.goal_exit_radius > 0 and info.kind != "maze":
        raise ValueError("algo.goal_exit_radius cuts episodes at a maze goal; use 0 off mazes")
    check_warm_start(out.warm_start)
    return dataclasses.replace(out, dim_mults=tuple(out.dim_mults))


# ---------------------------------------------------------------------------------- networks


def make_denoiser(
    cfg: DiffuserConfig, transition_dim: int, device: torch.device
) -> tuple[TemporalUnet, EMA, torch.optim.Adam]:
    """The temporal U-Net over ``[action, state]`` segments, its EMA copy (which plans) and
    its Adam."""
    model = TemporalUnet(transition_dim, cfg.dim, cfg.dim_mults, attention=cfg.attention)
    model = model.to(device)
    ema = EMA(model, decay=cfg.ema_decay, start=cfg.ema_start, every=cfg.ema_every)
    return model, ema, torch.optim.Adam(model.parameters(), lr=cfg.lr)


def make_value(
    cfg: DiffuserConfig, transition_dim: int, lr: float, device: torch.device
) -> tuple[TemporalValue, EMA, torch.optim.Adam]:
    """A value of noisy segments (the U-Net's down path), its EMA copy (which guides and ranks,
    as Diffuser's trainer), its Adam."""
    net = TemporalValue(cfg.horizon, transition_dim, cfg.dim, cfg.dim_mults).to(device)
    ema = EMA(net, decay=cfg.ema_decay, start=cfg.ema_start, every=cfg.ema_every)
    return net, ema, torch.optim.Adam(net.parameters(), lr=lr)


# ---------------------------------------------------------------------------------- losses


@dataclass(frozen=True)
class Segments:
    """A training batch as Diffuser sees it."""

    x0: Tensor  # normalized [action, state] segments [B, H, act_dim + state_dim]
    inpaint: Callable[[Tensor], Tensor]  # sets the constrained entries to their clean values
    weights: Tensor  # per-entry loss weights: action_weight on the first action, 0 if constrained


def diffusion_loss(diffusion: GaussianDiffusion, model: Denoiser, seg: Segments) -> Tensor:
    """Diffuser's denoising loss: the weighted squared error at a uniformly drawn step, the
    constrained entries clean in the noisy input (``apply_conditioning``) and out of the loss."""
    return diffusion.loss(with_inpainting(model, seg.inpaint), seg.x0, None, seg.weights)


def value_loss(
    diffusion: GaussianDiffusion, value: TemporalValue, seg: Segments, target: Tensor
) -> Tensor:
    """Squared error of ``V(x_t, t)`` to ``target [B]`` on ``x_t ~ q(x_t | x_0)`` at a uniform
    step with the constrained entries clean (Diffuser's ``ValueDiffusion``), on raw
    (unnormalized) targets as the official ``normed=False``, so the guide scale keeps its
    meaning."""
    t = torch.randint(0, diffusion.T, seg.x0.shape[:-2], device=seg.x0.device)
    x_t = seg.inpaint(diffusion.q_sample(seg.x0, t, torch.randn_like(seg.x0)))
    return (value(x_t, t) - target).pow(2).mean()


def optimize(
    loss: Tensor, optimizer: torch.optim.Optimizer, ema: EMA, net: torch.nn.Module
) -> Tensor:
    """One gradient step on ``loss``, then ``net``'s EMA update; returns the detached loss."""
    gradient_step(optimizer, loss)
    ema.update(net)
    return loss.detach()


# ---------------------------------------------------------------------------------- planning

Projection = Callable[[Tensor, Tensor, int], Tensor]
Score = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class PlanHooks:
    """A variant's part of one planning pass, built for that call (every hook optional)."""

    guide_term: GradFn | None = None  # (x_t, t) -> term added to dV/dx_t at every guided step
    projection: Projection | None = None  # (x_prev, x_t, t) -> x_prev after each denoising step
    score: Score | None = None  # (plans [n, P, H, C], values [n, P]) -> scores; None: the values


def _summed(first: GradFn, second: GradFn) -> GradFn:
    return lambda x, t: first(x, t) + second(x, t)


class DiffuserPlanner:
    """Diffuser's segments, planning pass and open-loop acting for a resolved Config.

    It holds no trained weights: the agent passes its EMA denoiser and value per call. Its
    state is the plans being followed (:class:`OpenLoopPlans`) and the smallest planned barrier
    value (:class:`BarrierMonitor`).
    """

    def __init__(
        self, cfg: DiffuserConfig, info: TaskInfo, stats: DatasetStats, device: torch.device
    ):
        self.cfg, self.info, self.device = cfg, info, device
        self.layout = StateLayout.from_info(info)
        self.norm = make_normalizer(cfg.normalizer, stats, self.layout, device)
        self.act_dim = info.act_dim
        self.transition_dim = info.act_dim + self.layout.state_dim
        self.diffusion = GaussianDiffusion(
            make_betas("cosine", cfg.n_diffusion_steps),
            predict_epsilon=cfg.predict_epsilon,
            clip_denoised=(-1.0, 1.0) if cfg.clip_denoised else None,
            event_dims=2,
        ).to(device)
        self.loss_weights = torch.ones(cfg.horizon, self.transition_dim, device=device)
        self.loss_weights[0, : self.act_dim] = cfg.action_weight
        self.plans = OpenLoopPlans(cfg.replan_every)
        self.monitor = BarrierMonitor(info.barriers, self.layout, info.obs_dim)

    def constraints(self, shape: tuple, start: Tensor, goal: Tensor | None) -> Constraints:
        """Start state at step 0; for mazes the goal state at step H-1 (both normalized, whole
        states, as Diffuser's ``GoalDataset`` and ``plan_maze2d.py``)."""
        cons = Constraints(shape, self.device)
        cons.fix(0, slice(self.act_dim, None), start)
        if goal is not None:
            cons.fix(-1, slice(self.act_dim, None), goal)
        return cons

    def segments(self, batch: dict[str, Tensor]) -> Segments:
        """Normalized ``[actions, states]`` of a segment batch, constrained at their start (and a
        maze segment at its last state, the goal it reached)."""
        mask = batch["mask"]
        states = self.norm.states(self.layout.segment_states(batch["observations"], mask))
        actions = batch["actions"] * mask.unsqueeze(-1) if self.layout.is_maze else batch["actions"]
        x0 = torch.cat([self.norm.actions(actions), states], dim=-1)
        goal = states[:, -1] if self.layout.is_maze else None
        cons = self.constraints(x0.shape, states[:, 0], goal)
        return Segments(x0, cons.hook(), self.loss_weights * cons.free())

    def guidance(self, value: Callable | None, term: GradFn | None) -> ClassifierGuidance | None:
        """Guidance up ``value``'s gradient plus ``term`` (Diffuser's ``n_step_guided_p_sample``);
        None without a value or with ``guide_scale <= 0``."""
        cfg = self.cfg
        if value is None or cfg.guide_scale <= 0:
            return None
        grad = value_gradient(value)
        if term is not None:
            grad = _summed(grad, term)
        return ClassifierGuidance(
            grad, scale=cfg.guide_scale, n_steps=cfg.n_guide_steps, t_stopgrad=cfg.t_stopgrad
        )

    def rank(self, x: Tensor, value: Callable | None, score: Score | None) -> Tensor:
        """The plan each environment follows among its candidates ``[n, P, H, C]``: the best by
        ``value`` at diffusion step 0, or by ``score`` of those values; the first without a value
        or with one candidate."""
        if value is None or self.cfg.n_candidates == 1:
            return x[:, 0]
        values = value(x, torch.zeros(x.shape[:2], dtype=torch.long, device=x.device))
        return best_of(x, values if score is None else score(x, values))

    def plan(
        self,
        obs: Tensor,
        model: Denoiser,
        value: Callable | None,
        hooks: PlanHooks,
        warm: WarmStart | None = None,
    ) -> Tensor:
        """Normalized plans ``[n, H, C]`` for observations ``[n, obs_dim]``: ``n_candidates``
        each, sampled in one pass by the denoiser ``model`` (from ``warm``'s plans ``[n, H, C]``
        when given, see :meth:`warm_start`), guided by ``value`` (``V(x, t)``, None: unguided)
        and ``hooks``, then ranked (:meth:`rank`)."""
        cfg = self.cfg
        start = self.norm.states(self.layout.states(obs)).unsqueeze(1)
        goal = None
        if self.layout.is_maze:  # at rest at the goal: [target, 0, 0]
            goal = self.norm.states(self.layout.goal_state(obs)).unsqueeze(1)
        shape = (len(obs), cfg.n_candidates, cfg.horizon, self.transition_dim)
        x = self.diffusion.sample(
            model,
            shape,
            ddim_steps=cfg.ddim_steps,
            eta=cfg.ddim_eta,
            guidance=self.guidance(value, hooks.guide_term),
            projection=hooks.projection,
            inpaint=self.constraints(shape, start, goal).hook(),
            warm=None if warm is None else WarmStart(warm.x0.unsqueeze(1), warm.step),
        )
        return self.rank(x, value, hooks.score)

    def warm_start(self, due: np.ndarray) -> WarmStart | None:
        """The warm start of a replan for the environments flagged in ``due`` (``warm_start``
        > 0 and each of them following a plan), else None: a cold plan from pure noise."""
        return warm_start_from(self.plans, due, self.cfg.warm_start, self.diffusion.T)

    @torch.no_grad()
    def act(
        self,
        obs: np.ndarray,
        plan: Callable[[Tensor, Tensor | None, WarmStart | None], Tensor],
        context: Tensor | None = None,
    ) -> np.ndarray:
        """Actions ``[n_envs, act_dim]``: ``plan(obs, context, warm)`` once for all environments
        due to plan (``context [n_envs, ...]`` cut to them; ``warm`` from :meth:`warm_start`),
        then each plan's action at its age, or on mazes the controller towards its next
        waypoint."""
        obs_t = to_tensor(obs, self.device)
        due = self.plans.due(len(obs_t))
        if due.any():
            rows = torch.as_tensor(due, device=self.device)
            context = None if context is None else context[rows]
            new = plan(obs_t[rows], context, self.warm_start(due))
            # Step 0 is the observed state, inpainted: the planner's states start at step 1.
            self.monitor.observe(self.norm.unstates(new[:, 1:, self.act_dim :]))
            self.plans.store(due, new)
        plans, age = self.plans.plans, self.plans.age
        if self.cfg.controller == "pd":
            states = self.norm.unstates(plans[..., self.act_dim :])
            action = follow_plan(states, age, self.layout.states(obs_t))
        else:
            idx = age.clamp(max=self.cfg.horizon - 1)
            planned = plans[torch.arange(len(plans), device=self.device), idx]
            action = self.norm.unactions(planned[:, : self.act_dim])
        self.plans.advance()
        return action.clamp(self.info.action_low, self.info.action_high).cpu().numpy()

    def reset(self, done: np.ndarray | None = None) -> None:
        """Drop the plans of the environments flagged in ``done`` (all, and the barrier
        minimum, when None)."""
        self.plans.reset(done)
        if done is None:
            self.monitor.clear()


# ---------------------------------------------------------------------------------- agent


class DiffuserAgent(Checkpointable):
    """Diffuser's agent, which its variants extend: it trains the denoiser and, when guided, the
    value model (each with its EMA copy), plans through :class:`DiffuserPlanner` with the hooks
    that :meth:`hooks` builds for each call, acts open-loop and reports its planned barriers (a
    ``BarrierReporter``). A variant overrides :meth:`hooks` and extends ``__init__``,
    :meth:`update` and :meth:`act` with its own parts; ``cfg`` arrives resolved."""

    state_attrs = ("model", "ema", "optimizer", "value", "value_ema", "value_optimizer", "step")

    def __init__(
        self,
        cfg: DiffuserConfig,
        info: TaskInfo,
        stats: DatasetStats,
        device: torch.device | str,
        extra: tuple[str, ...] = (),
    ):
        self.cfg = cfg
        self.device = torch.device(device)
        self.planner = DiffuserPlanner(cfg, info, stats, self.device)
        exits = cfg.goal_exit_radius
        self.data_spec = DataSpec(
            kind="segments",
            batch_size=cfg.batch_size,
            horizon=cfg.horizon,
            discount=cfg.discount,
            extra=extra,
            cost_discount=info.cost_discount if "costs" in extra else None,
            terminal_reward=cfg.termination_penalty,
            padding=cfg.padding,
            goal_exits=self.planner.layout.goal_exits(exits) if exits > 0 else None,
        )
        dim = self.planner.transition_dim
        self.model, self.ema, self.optimizer = make_denoiser(cfg, dim, self.device)
        self.value = self.value_ema = self.value_optimizer = None
        if cfg.guided:
            self.value, self.value_ema, self.value_optimizer = make_value(
                cfg, dim, cfg.value_lr, self.device
            )
        self.step = 0

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One step of the denoiser and, when guided, of the value model (each with its EMA)."""
        seg = self.planner.segments(batch)
        diffusion = self.planner.diffusion
        loss = diffusion_loss(diffusion, self.model, seg)
        out = {"diffusion_loss": optimize(loss, self.optimizer, self.ema, self.model)}
        self.step += 1
        if self.value is not None:
            loss = value_loss(diffusion, self.value, seg, batch["returns_to_go"][:, 0])
            out["value_loss"] = optimize(loss, self.value_optimizer, self.value_ema, self.value)
        return out

    def hooks(self, context: Tensor | None) -> PlanHooks:
        """Plain Diffuser adds nothing to the planning pass."""
        return PlanHooks()

    def plan(
        self, obs: Tensor, context: Tensor | None = None, warm: WarmStart | None = None
    ) -> Tensor:
        """Best of ``n_candidates`` normalized plans ``[n, H, C]`` for observations ``[n, obs]``
        under the hooks built from ``context`` (per environment, or None), warm-started from
        ``warm`` when given."""
        value = None if self.value_ema is None else self.value_ema.model
        return self.planner.plan(obs, self.ema.model, value, self.hooks(context), warm)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[n_envs, act_dim]``: one batched denoising pass for all envs due to plan."""
        return self.planner.act(obs, self.plan)

    def reset(self, done: np.ndarray | None = None) -> None:
        """Drop the open-loop plans of the environments flagged in ``done`` (all when None)."""
        self.planner.reset(done)

    def planned_barrier_min(self) -> float | None:
        """Smallest barrier value over the planned states (after the observed start) of the
        executed plans since the last full reset."""
        return self.planner.monitor.minimum


# ---------------------------------------------------------------------------------- fidelity


def fidelity_rows(task: str | None, source: str, values: Mapping[str, Any]) -> tuple[Official, ...]:
    """Fidelity-report rows (:class:`~algorithms.common.defaults.Official`) of Config fields whose
    official values ``values`` come from ``source``, on ``task``'s table (None: every table)."""
    return tuple(Official(name, value, source, task=task) for name, value in values.items())


def diffuser_fidelity(repo: str) -> tuple[Official, ...]:
    """The rows Diffuser and its variants share on every task, whose official code is
    jannerm/diffuser or a fork of it (``repo``): network width, objective, optimizer, EMA and
    sampler (the per-task settings, and the value model's on guided tasks, are each module's)."""
    training = f"{repo} diffuser/utils/training.py (Trainer)"
    return (
        Official("dim", 32, f"{repo} diffuser/models/temporal.py (TemporalUnet dim=32)"),
        *fidelity_rows(
            None,
            f"{repo} config/*.py ('diffusion': predict_epsilon, learning_rate)",
            {"predict_epsilon": False, "lr": 2e-4},
        ),
        Official(
            "batch_size", 64, f"{repo} config/*.py: batch_size 32 x gradient_accumulate_every 2"
        ),
        *fidelity_rows(
            None,
            f"{training}: ema_decay, step_start_ema, update_ema_every",
            {"ema_decay": 0.995, "ema_start": 2000, "ema_every": 10},
        ),
        Official("ddim_steps", None, f"{repo} diffuser/models/diffusion.py (all T DDPM steps)"),
        Official(
            "noise schedule",
            "cosine (Nichol & Dhariwal), betas clipped at 0.999",
            f"{repo} diffuser/models/helpers.py (cosine_beta_schedule)",
        ),
        Official(
            "sampling chain",
            "DDPM ancestral steps with the posterior variance from N(0, I); constrained entries "
            "re-inpainted after every step",
            f"{repo} diffuser/models/diffusion.py (p_sample_loop)",
        ),
    )


def value_fidelity(repo: str, task: str) -> tuple[Official, ...]:
    """The value model's rows on a guided ``task`` (``repo`` as :func:`diffuser_fidelity`)."""
    return (
        Official("value_lr", 2e-4, f"{repo} config/locomotion.py ('values')", task=task),
        Official("n_guide_steps", 2, f"{repo} config/locomotion.py ('plan')", task=task),
        Official(
            "value guidance",
            "x += scale * posterior variance * dV/dx, n_guide_steps times per step, re-inpainted; "
            "none below t_stopgrad",
            f"{repo} diffuser/sampling/functions.py (n_step_guided_p_sample)",
            task=task,
        ),
        Official(
            "value model training",
            "a separate run after the diffuser's: 200k steps of batches 32 x 2",
            f"{repo} config/locomotion.py ('values'), scripts/train_values.py",
            "the harness runs one training loop: every update trains each model once",
            ours="trained alongside the diffuser in every update, for the whole run",
            task=task,
        ),
        Official(
            "candidate ranking",
            "by the value seen in the last guided step, before its denoising update",
            f"{repo} diffuser/models/diffusion.py (sort_by_values)",
            "ranks the plans that are executed, not their state one step earlier",
            ours="by the value of the final plans at step 0",
            task=task,
        ),
        Official(
            "training-window padding",
            "zeros past an episode's end (normalized with the data), kept in the loss",
            f"{repo} diffuser/datasets/buffer.py, sequence.py (use_padding)",
            "the harness's sampler repeats an episode's last step (mask 0 there)",
            ours="the episode's last step repeated, kept in the loss",
            task=task,
        ),
    )
