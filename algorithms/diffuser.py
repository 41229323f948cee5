"""Diffuser: Planning with Diffusion for Flexible Behavior Synthesis
(Janner, Du, Tenenbaum & Levine, ICML 2022, arXiv:2205.09991).

Method: a DDPM over state-action segments of horizon H (a temporal U-Net denoiser) is the model
and the planner at once: planning is sampling with the current state imposed by inpainting at
every denoising step. Reward is maximized by moving each step's sample up the gradient of a value
model of noisy segments and executing the first action of the best of many plans; goals
(Maze2D) are reached by inpainting start and goal and following the plan with a PD controller.

Defaults follow the official code (jannerm/diffuser; ``config/locomotion.py``,
``config/maze2d.py``, ``scripts/plan_guided.py``, ``scripts/plan_maze2d.py``), kept per task
family in :data:`PAPER_DEFAULTS` / :data:`TASK_OVERRIDES`:
- locomotion: H = 32, T = 20, U-Net dim 32 with mults (1, 2, 4, 8), x0-prediction, cosine
  schedule, ``action_weight`` 10 on the first action, 64 plans, guide scale 0.1, t_stopgrad 2,
  2 guide steps scaled by the posterior variance, a new plan every step; overrides for
  hopper-medium-expert (scale 1e-4, t_stopgrad 4) and halfcheetah (H = 4, mults (1, 4, 8),
  scale 1e-3, t_stopgrad 4);
- maze: H = 128 / 256 / 384 and T = 64 / 256 / 256 for umaze / medium / large, mults (1, 4, 8),
  ``action_weight`` 1, no value guidance, one plan per episode followed by the controller
  ``a = (wp_pos - pos) + (wp_vel - vel)`` towards the next waypoint (zero velocity past the end);
- Adam 2e-4, batches of 32 with 2-step gradient accumulation (here one batch of 64), EMA decay
  0.995 updated every 10 steps from step 2000; the value model is the U-Net's down path trained
  on the same noisy segments towards the discounted return-to-go of their first step, with the
  discount 0.997 of the released value checkpoints (``values/defaults_H32_T20_d0.997``).
Differences and why:
- states and actions are z-scored with the dataset statistics (the harness gives mean / std) for
  every task; the official maze setting uses a [-1, 1] limits normalizer with ``clip_denoised``;
  no clipping by default here (an x0-predicting model's output needs none; ``clip_denoised``
  clamps z-scores);
- training windows come from the harness's sampler: any start, padded past an episode's end by
  repeating its last step, padding kept in the loss (the official pads locomotion with zeros and
  also trains on it; its maze setting uses unpadded windows of segments cut where the agent
  leaves the target). On mazes a padded step is the point at rest where its episode ended (zero
  velocity and action), so segments that reach their goal stop there. The window's last position
  is inpainted in training and the goal position at H-1 at planning (the official inpaints the
  whole last state, and the goal with zero velocity);
- the value model trains alongside the diffuser in every ``update`` (official: two runs, 1M and
  200k steps); no termination penalty (official -100 on terminal rewards) because the segment
  sampler's returns-to-go carry none;
- plans are ranked by the value of the final sample at step 0 (official: the value seen during
  the last guided step); ``ddim_steps`` samples with DDIM instead of all T steps;
- ``pointmaze-*`` goals come from the observation's goal dims; maze2d's fixed target from D4RL's
  constants (the official reads ``env._target``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from algorithms.common.contract import DatasetStats, DataSpec, TaskInfo
from algorithms.common.diffusion import ClassifierGuidance, GaussianDiffusion
from algorithms.common.nets import EMA
from algorithms.common.planning import (
    MAZE_POSITION,
    BarrierMonitor,
    Constraints,
    Normalizer,
    OpenLoopPlans,
    SegmentValue,
    StateLayout,
    best_of,
    clip_range,
    follow_plan,
    planner_family,
    to_tensor,
    with_inpainting,
)
from algorithms.common.schedules import make_betas
from algorithms.common.unet import TemporalUnet, TemporalValue

# Per task family, from config/locomotion.py and config/maze2d.py (maze medium = the base).
PAPER_DEFAULTS: dict[str, dict] = {
    "locomotion": {
        "horizon": 32,
        "n_diffusion_steps": 20,
        "dim_mults": (1, 2, 4, 8),
        "action_weight": 10.0,
        "guided": True,
        "n_plans": 64,
        "guide_scale": 0.1,
        "t_stopgrad": 2,
        "replan_every": 1,
        "controller": "actions",
    },
    "maze-umaze": {"horizon": 128, "n_diffusion_steps": 64},
    "maze-medium": {"horizon": 256, "n_diffusion_steps": 256},
    "maze-large": {"horizon": 384, "n_diffusion_steps": 256},
}
MAZE_COMMON = {
    "dim_mults": (1, 4, 8),
    "action_weight": 1.0,
    "guided": False,
    "n_plans": 1,
    "guide_scale": 0.0,
    "t_stopgrad": 0,
    "replan_every": 0,
    "controller": "pd",
}
# Per-dataset overrides of the locomotion values (config/locomotion.py).
TASK_OVERRIDES: dict[str, dict] = {
    "hopper-medium-expert-v2": {"guide_scale": 0.0001, "t_stopgrad": 4},
    **{
        f"halfcheetah-{level}-v2": {
            "horizon": 4,
            "dim_mults": (1, 4, 8),
            "guide_scale": 0.001,
            "t_stopgrad": 4,
        }
        for level in ("medium", "medium-replay", "medium-expert")
    },
}
CONTROLLERS = ("auto", "pd", "actions")


@dataclass
class Config:
    """Official defaults; ``None`` / ``auto`` take the value for the task (module docstring)."""

    horizon: int | None = None
    n_diffusion_steps: int | None = None
    dim: int = 32
    dim_mults: tuple[int, ...] | None = None
    predict_epsilon: bool = False
    action_weight: float | None = None
    lr: float = 2e-4
    batch_size: int = 64  # 32 x 2 accumulation steps
    ema_decay: float = 0.995
    ema_start: int = 2000
    ema_every: int = 10
    # value guidance
    guided: bool | None = None
    value_discount: float = 0.997
    value_lr: float = 2e-4
    n_plans: int | None = None
    guide_scale: float | None = None
    t_stopgrad: int | None = None
    n_guide_steps: int = 2
    # acting
    clip_denoised: float | None = None  # clamp predicted x0 to +-this (z-scores)
    ddim_steps: int | None = None  # None: all T DDPM steps
    ddim_eta: float = 0.0
    replan_every: int | None = None  # 0: plan once per episode
    controller: str = "auto"  # pd: follow planned states (mazes); actions: planned actions


def resolve_config(cfg: Config, info: TaskInfo) -> Config:
    """``cfg`` with the official per-task values where a field is ``None`` / ``auto``."""
    if cfg.controller not in CONTROLLERS:
        raise ValueError(f"unknown controller {cfg.controller!r}; valid: {', '.join(CONTROLLERS)}")
    family = planner_family(info)
    defaults = dict(PAPER_DEFAULTS[family])
    if family.startswith("maze"):
        defaults = {**MAZE_COMMON, **defaults}
    defaults.update(TASK_OVERRIDES.get(info.data_id, {}))
    fields = {f.name for f in dataclasses.fields(cfg)}
    filled = {
        k: v for k, v in defaults.items() if k in fields and getattr(cfg, k) in (None, "auto")
    }
    out = dataclasses.replace(cfg, **filled)
    out = dataclasses.replace(out, dim_mults=tuple(out.dim_mults))
    if out.controller == "pd" and info.kind != "maze":
        raise ValueError("controller=pd follows planned point-maze states; use it on maze tasks")
    return out


# ---------------------------------------------------------------------------------- agent


class Agent:
    """Diffuser following :mod:`algorithms.common.contract`."""

    def __init__(
        self, cfg: Config, info: TaskInfo, stats: DatasetStats, device: torch.device | str
    ):
        self.cfg = cfg = resolve_config(cfg, info)
        self.info, self.device = info, torch.device(device)
        self.layout = StateLayout.from_info(info)
        self.norm = Normalizer(stats, self.layout, self.device)
        self.data_spec = DataSpec(
            kind="segments",
            batch_size=cfg.batch_size,
            horizon=cfg.horizon,
            discount=cfg.value_discount,
        )
        self.act_dim = info.act_dim
        self.transition_dim = info.act_dim + self.layout.state_dim
        self.model = TemporalUnet(self.transition_dim, cfg.dim, cfg.dim_mults).to(self.device)
        self.ema = EMA(self.model, decay=cfg.ema_decay, start=cfg.ema_start, every=cfg.ema_every)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.diffusion = GaussianDiffusion(
            make_betas("cosine", cfg.n_diffusion_steps),
            predict_epsilon=cfg.predict_epsilon,
            clip_denoised=clip_range(cfg.clip_denoised),
            event_dims=2,
        ).to(self.device)
        self.loss_weights = torch.ones(cfg.horizon, self.transition_dim, device=self.device)
        self.loss_weights[0, : self.act_dim] = cfg.action_weight
        self.value = None
        if cfg.guided:
            net = TemporalValue(cfg.horizon, self.transition_dim, cfg.dim, cfg.dim_mults)
            self.value = SegmentValue(
                net.to(self.device), cfg.value_lr, cfg.ema_decay, cfg.ema_start, cfg.ema_every
            )
        self.plans = OpenLoopPlans(cfg.replan_every)
        self.monitor = BarrierMonitor(info.barriers, self.layout, info.obs_dim)
        self.step = 0

    # -- data layout -------------------------------------------------------------------------

    def trajectories(self, batch: dict[str, Tensor]) -> Tensor:
        """Normalized ``[actions, states]`` segments ``[B, H, act_dim + state_dim]``."""
        mask = batch["mask"]
        states = self.norm.states(self.layout.segment_states(batch["observations"], mask))
        actions = batch["actions"] * mask.unsqueeze(-1) if self.layout.is_maze else batch["actions"]
        return torch.cat([self.norm.actions(actions), states], dim=-1)

    def constraints(self, shape: tuple, start: Tensor, goal: Tensor | None) -> Constraints:
        """Start state at step 0; for mazes the goal position at step H-1 (normalized)."""
        cons = Constraints(shape, self.device)
        cons.fix(0, slice(self.act_dim, None), start)
        if goal is not None:
            cons.fix(-1, [self.act_dim + i for i in MAZE_POSITION], goal)
        return cons

    # -- training ----------------------------------------------------------------------------

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One step of the diffusion model (and its EMA) and, when guided, of the value model."""
        x0 = self.trajectories(batch)
        states = x0[..., self.act_dim :]
        goal = states[:, -1, list(MAZE_POSITION)] if self.layout.is_maze else None
        cons = self.constraints(x0.shape, states[:, 0], goal)
        hook = cons.hook()
        loss = self.diffusion.loss(
            with_inpainting(self.model, hook), x0, None, self.loss_weights * cons.free()
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.ema.update(self.model)
        self.step += 1
        info = {"diffusion_loss": loss.detach()}
        if self.value is not None:
            target = batch["returns_to_go"][:, 0]
            info["value_loss"] = self.value.update(self.diffusion, x0, target, hook)
        return info

    # -- acting ------------------------------------------------------------------------------

    def plan(self, obs: Tensor) -> Tensor:
        """Best of ``n_plans`` normalized segments ``[n, H, C]`` for observations ``[n, obs]``."""
        cfg, n = self.cfg, len(obs)
        start = self.norm.states(self.layout.states(obs)).unsqueeze(1)
        goal = None
        if self.layout.is_maze:
            goal = self.norm.state_dims(self.layout.goal(obs), MAZE_POSITION).unsqueeze(1)
        shape = (n, cfg.n_plans, cfg.horizon, self.transition_dim)
        cons = self.constraints(shape, start, goal)
        x = self.diffusion.sample(
            self.ema.model,
            shape,
            ddim_steps=cfg.ddim_steps,
            eta=cfg.ddim_eta,
            guidance=self.guidance(),
            projection=self.projection(),
            inpaint=cons.hook(),
        )
        return self.rank(x)

    # Hooks of the sampler and the ranking, which the safe variants (SafeDiffuser, TREBI) replace.

    def guidance(self) -> ClassifierGuidance | None:
        """Value-gradient guidance when guided (Diffuser's ``n_step_guided_p_sample``)."""
        if self.value is None or self.cfg.guide_scale <= 0:
            return None
        return self.value.guide(self.cfg.guide_scale, self.cfg.n_guide_steps, self.cfg.t_stopgrad)

    def projection(self) -> Callable[[Tensor, Tensor, int], Tensor] | None:
        """Plain Diffuser edits no denoising step."""
        return None

    def rank(self, x: Tensor) -> Tensor:
        """The plan each environment follows among its candidates ``[n, P, H, C]``."""
        if self.value is None or self.cfg.n_plans == 1:
            return x[:, 0]
        return best_of(x, self.plan_values(x))

    def plan_values(self, x: Tensor) -> Tensor:
        """EMA value of finished plans ``[n, P, H, C] -> [n, P]`` (diffusion step 0)."""
        return self.value(x, torch.zeros(x.shape[:2], dtype=torch.long, device=self.device))

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[n_envs, act_dim]``: one batched denoising pass for all envs due to plan."""
        obs_t = to_tensor(obs, self.device)
        due = self.plans.due(len(obs_t))
        if due.any():
            plan = self.plan(obs_t[torch.as_tensor(due, device=self.device)])
            # Step 0 is the observed state, inpainted: the planner's states start at step 1.
            self.monitor.observe(self.norm.unstates(plan[:, 1:, self.act_dim :]))
            self.plans.store(due, plan)
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
        """Drop the open-loop plans of the environments flagged in ``done`` (all when None)."""
        self.plans.reset(done)
        if done is None:
            self.monitor.clear()

    def planned_barrier_min(self) -> float | None:
        """Smallest barrier value over the planned states (after the observed start) of the
        executed plans since the last full reset."""
        return self.monitor.minimum

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "value": None if self.value is None else self.value.state_dict(),
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.value is not None:
            self.value.load_state_dict(state["value"])
        self.step = state["step"]
