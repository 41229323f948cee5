"""HDMI: Hierarchical Diffusion for Offline Decision Making
(Li, Wang, Jin & Zha, ICML 2023; no public code).

Method: subgoals are extracted from the dataset's trajectories by a planning-based method; a
return-conditioned goal diffuser (a transformer, classifier-free guidance) proposes a sequence of
subgoals from the current state, and a goal-conditioned trajectory diffuser fills in the states
between consecutive subgoals; an inverse-dynamics model turns planned states into actions.

The paper fixes the cascade, the classifier-free guidance on returns, the planning-based subgoal
extraction and the transformer goal diffuser; everything below is our choice where it is silent
(or where we could not re-check the PDF here), stated so it can be changed:
- subgoal extraction, per training window of ``M K + 1`` steps: a shortest path from its first
  to its last state in a graph whose edges join consecutive steps and any two steps whose
  (maze: position; else full normalized state) distance is at most ``shortcut_radius``, i.e.
  loops and dithering of sub-optimal data are cut; the subgoals are the path's nodes every ``K``
  hops (the last node repeated once the path ends). With radius 0 (locomotion) this is the
  fixed-interval heuristic; the segment sampler's padding (repeated last state) collapses into
  one hop. The paper searches over the whole dataset's states; the harness gives the agent
  windows, so the search runs inside each window;
- the goal diffuser: M + 1 = 9 subgoal tokens (full planned states), the first one inpainted
  with the current state (and on mazes the last one's position with the goal), a pre-norm
  transformer encoder (4 layers, width 128, 4 heads) with the diffusion-step and return
  embeddings as two extra tokens; returns-to-go scaled as Decision Diffuser's (see
  :func:`algorithms.common.planning.returns_scale`), dropped with probability 0.25, guidance
  weight 1.2, target return 0.9, temperature 0.5 (Decision Diffuser's official values);
- the trajectory diffuser: a temporal U-Net (dim 32, mults (1, 2, 4)) over ``K + 1`` states,
  conditioned on its two
  subgoals by inpainting both ends (as Diffuser conditions on start and goal), trained on random
  real ``K + 1``-step chunks of the window; the segments of one plan are denoised in one batch;
- actions from Decision Diffuser's inverse-dynamics MLP between the current state and the next
  planned state; ``K`` = 4 with M = 8 on locomotion (horizon 32, Diffuser's) and 16 / 32 / 48 on
  umaze / medium / large mazes (horizons 128 / 256 / 384, Diffuser's maze horizons);
- T = 200 cosine steps for both diffusers, epsilon prediction, Adam 2e-4 on the sum of the three
  losses, batch 64, EMA 0.995 (start 2000, every 10), as Decision Diffuser's code;
- replanning: every step on locomotion, every ``K`` steps (each time a subgoal is due) on mazes;
  only the segments the agent executes before its next plan are filled in;
- as in the suite's Decision Diffuser: states z-scored with the dataset statistics, predicted x0
  clamped to +-5 z-scores, ``pointmaze-*`` goal dims not diffused, and on mazes a padded step
  (past an episode's end) is the point at rest where the episode ended.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import DatasetStats, DataSpec, TaskInfo
from algorithms.common.diffusion import GaussianDiffusion
from algorithms.common.nets import EMA
from algorithms.common.planning import (
    MAZE_POSITION,
    Constraints,
    InverseDynamics,
    Normalizer,
    OpenLoopPlans,
    StateLayout,
    clip_range,
    condition,
    dropped,
    guided,
    planner_family,
    returns_scale,
    to_tensor,
    with_inpainting,
)
from algorithms.common.schedules import make_betas
from algorithms.common.unet import ConditionEmbedding, TemporalUnet, time_mlp

# Subgoal interval K and shortcut radius per task family (our choices, module docstring).
FAMILY_DEFAULTS: dict[str, dict] = {
    "locomotion": {"subgoal_interval": 4, "shortcut_radius": 0.0, "replan_every": 1},
    "maze-umaze": {"subgoal_interval": 16, "shortcut_radius": 0.2},
    "maze-medium": {"subgoal_interval": 32, "shortcut_radius": 0.2},
    "maze-large": {"subgoal_interval": 48, "shortcut_radius": 0.2},
}


@dataclass
class Config:
    """Defaults as chosen in the module docstring; ``None`` takes the task family's value."""

    n_subgoals: int = 8
    subgoal_interval: int | None = None
    shortcut_radius: float | None = None
    n_diffusion_steps: int = 200
    # goal diffuser (transformer)
    goal_width: int = 128
    goal_layers: int = 4
    goal_heads: int = 4
    condition_dropout: float = 0.25
    guidance_scale: float = 1.2
    target_return: float = 0.9
    returns_scale: float | None = None
    discount: float = 0.99
    temperature: float = 0.5
    # trajectory diffuser (temporal U-Net) and inverse dynamics
    dim: int = 32
    dim_mults: tuple[int, ...] = (1, 2, 4)
    inv_hidden: int = 256
    lr: float = 2e-4
    batch_size: int = 64
    ema_decay: float = 0.995
    ema_start: int = 2000
    ema_every: int = 10
    clip_denoised: float | None = 5.0  # clamp predicted x0 to +-this (z-scores)
    ddim_steps: int | None = None  # None: all T DDPM steps, for both diffusers
    ddim_eta: float = 0.0
    replan_every: int | None = None  # None: 1 on locomotion, K on mazes; 0: once per episode


def resolve_config(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """Fill ``None`` fields from the task family and the dataset's returns scale."""
    defaults = FAMILY_DEFAULTS[planner_family(info)]
    out = dataclasses.replace(
        cfg,
        subgoal_interval=cfg.subgoal_interval or defaults["subgoal_interval"],
        shortcut_radius=(
            defaults["shortcut_radius"] if cfg.shortcut_radius is None else cfg.shortcut_radius
        ),
        dim_mults=tuple(cfg.dim_mults),
    )
    if out.replan_every is None:
        out = dataclasses.replace(
            out, replan_every=defaults.get("replan_every", out.subgoal_interval)
        )
    if out.returns_scale is None:
        out = dataclasses.replace(out, returns_scale=returns_scale(stats, cfg.discount))
    return out


# ---------------------------------------------------------------------------------- subgoals


def shortcut_subgoals(points: Tensor, n_subgoals: int, interval: int, radius: float) -> Tensor:
    """Indices ``[B, n_subgoals + 1]`` of subgoals along each window's shortest path.

    ``points [B, L, d]``: what distances are measured on. Edges join ``i -> i + 1`` and
    ``i -> j`` (``j > i``) when ``|p_i - p_j| <= radius``; the shortest path (fewest hops) from
    step 0 to step L-1 is found by dynamic programming (edges only go forward), and subgoal
    ``m`` is the node ``m * interval`` hops along it (the last node past the path's end).
    """
    batch, length = points.shape[:2]
    near = torch.cdist(points, points, compute_mode="donot_use_mm_for_euclid_dist") <= radius
    steps = torch.arange(length, device=points.device)
    near |= steps[None, :, None] + 1 == steps[None, None, :]  # consecutive steps
    inf = torch.iinfo(torch.long).max // 2
    hops = torch.full((batch, length), inf, dtype=torch.long, device=points.device)
    hops[:, 0] = 0
    pred = torch.zeros((batch, length), dtype=torch.long, device=points.device)
    for j in range(1, length):
        cand = torch.where(near[:, :j, j], hops[:, :j] + 1, inf)
        hops[:, j], pred[:, j] = cand.min(dim=1)
    total = hops[:, -1]
    nodes = torch.zeros((batch, length + 1), dtype=torch.long, device=points.device)
    node = torch.full((batch,), length - 1, dtype=torch.long, device=points.device)
    rows = torch.arange(batch, device=points.device)
    for back in range(length):  # walk back from the end; hops before the start go to a spare column
        hop = total - back
        nodes[rows, torch.where(hop >= 0, hop, length)] = node
        node = pred[rows, node]
    wanted = torch.arange(n_subgoals + 1, device=points.device) * interval
    return nodes.gather(1, torch.minimum(wanted[None, :], total[:, None]))


# ---------------------------------------------------------------------------------- networks


class GoalTransformer(nn.Module):
    """Denoiser of subgoal sequences ``[*batch, N, S]`` with step and return tokens prepended."""

    def __init__(self, state_dim: int, n_tokens: int, width: int, layers: int, heads: int):
        super().__init__()
        self.inp = nn.Linear(state_dim, width)
        self.pos = nn.Parameter(torch.zeros(1, n_tokens + 2, width))
        self.time = time_mlp(width)
        self.condition = ConditionEmbedding(1, width)
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            4 * width,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, state_dim))
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, x: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
        batch_shape, n = x.shape[:-2], x.shape[-2]
        x, t = x.reshape(-1, *x.shape[-2:]), t.reshape(-1)
        cond = {k: v.reshape(len(x), -1) for k, v in cond.items()}
        tokens = torch.cat(
            [self.time(t)[:, None], self.condition(cond)[:, None], self.inp(x)], dim=1
        )
        h = self.encoder(tokens + self.pos)
        return self.out(h[:, 2:]).reshape(*batch_shape, n, -1)


# ---------------------------------------------------------------------------------- agent


class Agent:
    """HDMI following :mod:`algorithms.common.contract`."""

    def __init__(
        self, cfg: Config, info: TaskInfo, stats: DatasetStats, device: torch.device | str
    ):
        self.cfg = cfg = resolve_config(cfg, info, stats)
        self.info, self.device = info, torch.device(device)
        self.layout = StateLayout.from_info(info)
        self.norm = Normalizer(stats, self.layout, self.device)
        self.horizon = cfg.n_subgoals * cfg.subgoal_interval
        self.data_spec = DataSpec(
            kind="segments",
            batch_size=cfg.batch_size,
            horizon=self.horizon + 1,
            discount=cfg.discount,
        )
        s_dim = self.layout.state_dim
        self.goal_model = GoalTransformer(
            s_dim, cfg.n_subgoals + 1, cfg.goal_width, cfg.goal_layers, cfg.goal_heads
        ).to(self.device)
        self.traj_model = TemporalUnet(s_dim, cfg.dim, cfg.dim_mults).to(self.device)
        self.inverse = InverseDynamics(s_dim, info.act_dim, cfg.inv_hidden).to(self.device)
        modules = (self.goal_model, self.traj_model, self.inverse)
        self.optimizer = torch.optim.Adam([p for m in modules for p in m.parameters()], lr=cfg.lr)
        ema_args = {"decay": cfg.ema_decay, "start": cfg.ema_start, "every": cfg.ema_every}
        self.goal_ema = EMA(self.goal_model, **ema_args)
        self.traj_ema = EMA(self.traj_model, **ema_args)
        self.diffusion = GaussianDiffusion(
            make_betas("cosine", cfg.n_diffusion_steps),
            predict_epsilon=True,
            clip_denoised=clip_range(cfg.clip_denoised),
            event_dims=2,
        ).to(self.device)
        self.plans = OpenLoopPlans(cfg.replan_every)
        self.step = 0

    # -- conditioning ------------------------------------------------------------------------

    def goal_constraints(self, shape: tuple, start: Tensor, goal: Tensor | None) -> Constraints:
        cons = Constraints(shape, self.device).fix(0, slice(None), start)
        if goal is not None:
            cons.fix(-1, MAZE_POSITION, goal)
        return cons

    def segment_constraints(self, shape: tuple, first: Tensor, last: Tensor) -> Constraints:
        cons = Constraints(shape, self.device).fix(0, slice(None), first)
        return cons.fix(-1, slice(None), last)

    def distance_points(self, states: Tensor, raw: Tensor) -> Tensor:
        """Maze: raw positions; otherwise normalized states."""
        return raw[..., list(MAZE_POSITION)] if self.layout.is_maze else states

    # -- training ----------------------------------------------------------------------------

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One step of the goal diffuser, the trajectory diffuser and the inverse dynamics."""
        cfg, k = self.cfg, self.cfg.subgoal_interval
        raw = self.layout.segment_states(batch["observations"], batch["mask"])
        states = self.norm.states(raw)
        idx = shortcut_subgoals(
            self.distance_points(states, raw), cfg.n_subgoals, k, cfg.shortcut_radius
        )
        subgoals = states.gather(1, idx[..., None].expand(-1, -1, states.shape[-1]))
        goal = subgoals[:, -1, list(MAZE_POSITION)] if self.layout.is_maze else None
        g_cons = self.goal_constraints(subgoals.shape, subgoals[:, 0], goal)
        returns = batch["returns_to_go"][:, :1] / cfg.returns_scale
        goal_loss = self.diffusion.loss(
            with_inpainting(self.goal_model, g_cons.hook()),
            subgoals,
            dropped(returns, cfg.condition_dropout),
            g_cons.free(),
        )
        chunk = self.random_chunks(states)
        s_cons = self.segment_constraints(chunk.shape, chunk[:, 0], chunk[:, -1])
        traj_loss = self.diffusion.loss(
            with_inpainting(self.traj_model, s_cons.hook()), chunk, None, s_cons.free()
        )
        inverse_loss = self.inverse.loss(states, self.norm.actions(batch["actions"]), batch["mask"])
        self.optimizer.zero_grad(set_to_none=True)
        (goal_loss + traj_loss + inverse_loss).backward()
        self.optimizer.step()
        self.goal_ema.update(self.goal_model)
        self.traj_ema.update(self.traj_model)
        self.step += 1
        return {
            "goal_loss": goal_loss.detach(),
            "trajectory_loss": traj_loss.detach(),
            "inverse_loss": inverse_loss.detach(),
        }

    def random_chunks(self, states: Tensor) -> Tensor:
        """One random ``K + 1``-step chunk of each window ``[B, L, S] -> [B, K + 1, S]``."""
        k = self.cfg.subgoal_interval
        start = torch.randint(0, states.shape[1] - k, (len(states), 1), device=states.device)
        idx = start + torch.arange(k + 1, device=states.device)
        return states.gather(1, idx[..., None].expand(-1, -1, states.shape[-1]))

    # -- acting ------------------------------------------------------------------------------

    def sample(self, model: nn.Module, shape: tuple, cond, cfg_guide, cons: Constraints) -> Tensor:
        return self.diffusion.sample(
            model,
            shape,
            cond,
            ddim_steps=self.cfg.ddim_steps,
            eta=self.cfg.ddim_eta,
            temperature=self.cfg.temperature,
            cfg=cfg_guide,
            inpaint=cons.hook(),
        )

    def propose_subgoals(self, start: Tensor, goal: Tensor | None, target: Tensor) -> Tensor:
        """Goal diffuser: normalized subgoals ``[n, M + 1, S]`` from states ``[n, S]``."""
        shape = (len(start), self.cfg.n_subgoals + 1, self.layout.state_dim)
        base, cfg_guide = guided([condition(target)], self.cfg.guidance_scale)
        cons = self.goal_constraints(shape, start, goal)
        return self.sample(self.goal_ema.model, shape, base, cfg_guide, cons)

    def fill(self, subgoals: Tensor, m: int) -> Tensor:
        """Trajectory diffuser: states ``[n, m K + 1, S]`` through the first ``m`` subgoal gaps."""
        n, k, s_dim = len(subgoals), self.cfg.subgoal_interval, subgoals.shape[-1]
        shape = (n, m, k + 1, s_dim)
        cons = self.segment_constraints(shape, subgoals[:, :m], subgoals[:, 1 : m + 1])
        segments = self.sample(self.traj_ema.model, shape, None, None, cons)
        stitched = segments[:, :, :-1].reshape(n, m * k, s_dim)
        return torch.cat([stitched, segments[:, -1, -1:]], dim=1)

    def plan(self, start: Tensor, goal: Tensor | None, target: Tensor) -> Tensor:
        """Normalized state plans ``[n, m K + 1, S]``: subgoals, then the segments executed."""
        return self.fill(self.propose_subgoals(start, goal, target), self.segments_needed())

    def segments_needed(self) -> int:
        """Segments executed before the next plan (all of them when planning once)."""
        cfg = self.cfg
        if cfg.replan_every <= 0:
            return cfg.n_subgoals
        return min(cfg.n_subgoals, math.ceil(cfg.replan_every / cfg.subgoal_interval))

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[n_envs, act_dim]``: both levels planned for all due envs in one batch each."""
        obs_t = to_tensor(obs, self.device)
        state = self.norm.states(self.layout.states(obs_t))
        due = self.plans.due(len(obs_t))
        if due.any():
            rows = torch.as_tensor(due, device=self.device)
            goal = None
            if self.layout.is_maze:
                goal = self.norm.state_dims(self.layout.goal(obs_t[rows]), MAZE_POSITION)
            target = torch.full((int(due.sum()), 1), self.cfg.target_return, device=self.device)
            self.plans.store(due, self.plan(state[rows], goal, target))
        plans, age = self.plans.plans, self.plans.age
        nxt = (age + 1).clamp(max=plans.shape[1] - 1)
        target_state = plans[torch.arange(len(plans), device=self.device), nxt]
        action = self.norm.unactions(self.inverse(state, target_state))
        self.plans.advance()
        return action.clamp(self.info.action_low, self.info.action_high).cpu().numpy()

    def reset(self, done: np.ndarray | None = None) -> None:
        """Drop the plans of the environments flagged in ``done`` (all when None)."""
        self.plans.reset(done)

    def state_dict(self) -> dict:
        return {
            "goal_model": self.goal_model.state_dict(),
            "traj_model": self.traj_model.state_dict(),
            "inverse": self.inverse.state_dict(),
            "goal_ema": self.goal_ema.state_dict(),
            "traj_ema": self.traj_ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        self.goal_model.load_state_dict(state["goal_model"])
        self.traj_model.load_state_dict(state["traj_model"])
        self.inverse.load_state_dict(state["inverse"])
        self.goal_ema.load_state_dict(state["goal_ema"])
        self.traj_ema.load_state_dict(state["traj_ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
