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
  one hop. Not the paper's extraction, which searches over the whole dataset's states: its
  procedure could not be followed faithfully (HDMI has no public code, and the copy of the paper
  reachable here gives its abstract only, so the graph, distance and search are unknown to us),
  and the agent sees sampled windows, not the dataset; so ours stays the default, and on
  locomotion (radius 0) it is fixed-interval subgoals;
- the goal diffuser: M + 1 = 9 subgoal tokens (full planned states), the first one inpainted
  with the current state (and on mazes the last one's position with the goal), a pre-norm
  transformer encoder (4 layers, width 128, 4 heads) with the diffusion-step and return
  embeddings as two extra tokens; returns-to-go scaled by the rule behind Decision Diffuser's
  hand-set scale (:func:`algorithms.common.planning.returns_scale`, on every task), without a
  termination penalty, dropped with probability 0.25, guidance weight 1.2, target return 0.9,
  temperature 0.5 (Decision Diffuser's official values);
- the trajectory diffuser: a temporal U-Net (dim 32, mults (1, 2, 4)) over ``K + 1`` states,
  conditioned on its two subgoals by inpainting both ends (as Diffuser conditions on start and
  goal), trained on random real ``K + 1``-step chunks of the window; the segments of one plan
  are denoised in one batch;
- actions from Decision Diffuser's inverse-dynamics MLP between the current state and the next
  planned state; ``K`` = 4 with M = 8 on locomotion (horizon 32, Diffuser's; also on the toy and
  safe-control tasks) and 16 / 32 / 48 on umaze / medium / large mazes (horizons 128 / 256 / 384,
  Diffuser's maze horizons), per task family in :data:`PAPER`;
- T = 200 cosine steps for both diffusers, epsilon prediction, Adam 2e-4 on the sum of the three
  losses, batch 64, EMA 0.995 (start 2000, every 10), as Decision Diffuser's code;
- replanning: every step on locomotion, every ``K`` steps (each time a subgoal is due) on mazes;
  only the segments the agent executes before its next plan are filled in;
- states z-scored with the dataset statistics, predicted x0 clamped to +-5 z-scores (Decision
  Diffuser's official CDF normalizer is its option ``normalizer``, not taken over here),
  ``pointmaze-*`` goal dims not diffused, and on mazes a padded step (past an episode's end) is
  the point at rest where the episode ended.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import Checkpointable, DatasetStats, DataSpec, TaskInfo
from algorithms.common.defaults import Official, PaperDefaults, Settings, fill
from algorithms.common.diffusion import ClassifierFreeGuidance, GaussianDiffusion
from algorithms.common.nets import EMA
from algorithms.common.planning import (
    MAZE_POSITION,
    Constraints,
    InverseDynamics,
    OpenLoopPlans,
    StateLayout,
    act_by_inverse_dynamics,
    clip_range,
    condition,
    dropped,
    guided,
    make_normalizer,
    returns_scale,
    with_inpainting,
)
from algorithms.common.schedules import make_betas
from algorithms.common.unet import ConditionEmbedding, TemporalUnet, time_mlp

# The paper gives no per-task values we could check; these are our choices (module docstring).
# Outside point mazes (locomotion, and the toy and safe-control tasks): Diffuser's locomotion
# horizon 32 as 8 subgoals x 4, no shortcuts, a new plan every step.
NOT_MAZE = Settings(
    "ours: Diffuser's locomotion horizon 32 = 8 x 4, no shortcuts, a plan every step",
    {"subgoal_interval": 4, "shortcut_radius": 0.0, "replan_every": 1},
)
PAPER = PaperDefaults(
    families={
        "locomotion": NOT_MAZE,
        "toy": NOT_MAZE,
        "safe": NOT_MAZE,
        "maze": Settings(
            "ours: shortcuts between positions 0.2 apart, a plan each time a subgoal is due",
            {"shortcut_radius": 0.2},
        ),
        "maze-umaze": Settings(
            "ours: Diffuser's maze2d-umaze horizon 128 = 8 x 16", {"subgoal_interval": 16}
        ),
        "maze-medium": Settings(
            "ours: Diffuser's maze2d-medium horizon 256 = 8 x 32", {"subgoal_interval": 32}
        ),
        "maze-large": Settings(
            "ours: Diffuser's maze2d-large horizon 384 = 8 x 48", {"subgoal_interval": 48}
        ),
    }
)


@dataclass
class Config:
    """HDMI's hyperparameters (our choices, module docstring); ``None`` fields take
    :data:`PAPER`'s value for the task family."""

    n_subgoals: int = 8  # subgoals M after the current state (the goal diffuser plans M + 1)
    subgoal_interval: int | None = None  # steps K between consecutive subgoals
    shortcut_radius: float | None = None  # distance that joins two steps in subgoal extraction
    n_diffusion_steps: int = 200  # diffusion steps T of both diffusers' cosine schedule
    goal_width: int = 128  # goal transformer: token width
    goal_layers: int = 4  # goal transformer: encoder layers
    goal_heads: int = 4  # goal transformer: attention heads
    condition_dropout: float = 0.25  # probability of dropping the return condition in training
    guidance_scale: float = 1.2  # classifier-free guidance weight w of the goal diffuser
    target_return: float = 0.9  # normalized return planned for at acting time
    returns_scale: float | None = None  # returns-to-go divisor; None: from the dataset (docstring)
    discount: float = 0.99  # discount of the returns-to-go conditioned on
    temperature: float = 0.5  # scale of the sampler's initial and per-step noise
    dim: int = 32  # trajectory U-Net: base channel width
    dim_mults: tuple[int, ...] = (1, 2, 4)  # trajectory U-Net: channel multipliers
    inv_hidden: int = 256  # hidden width of the 2-layer inverse-dynamics MLP
    lr: float = 2e-4  # Adam learning rate of all three models together
    batch_size: int = 64  # windows of M K + 1 steps per update
    ema_decay: float = 0.995  # decay of both diffusers' EMA copies, which plan
    ema_start: int = 2000  # updates before the EMAs start averaging
    ema_every: int = 10  # updates between EMA updates
    clip_denoised: float | None = 5.0  # clamp predicted x0 to +-this (z-scores); None: no clamp
    ddim_steps: int | None = None  # sampler steps of both diffusers; None: all T DDPM steps
    ddim_eta: float = 0.0  # DDIM noise (0: deterministic) when ddim_steps is set
    replan_every: int | None = None  # env steps between plans (0: once per episode); unset: K


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with :data:`PAPER`'s values for the task family, a plan every ``K`` steps where
    they leave ``replan_every`` unset, and the dataset's returns scale filled in."""
    out = dataclasses.replace(fill(cfg, PAPER, info), dim_mults=tuple(cfg.dim_mults))
    if out.subgoal_interval is None or out.shortcut_radius is None:
        raise ValueError(
            f"task {info.task_id!r} has no default algo.subgoal_interval / algo.shortcut_radius;"
            " set both"
        )
    for name in ("n_subgoals", "subgoal_interval"):
        if getattr(out, name) < 1:
            raise ValueError(f"algo.{name}={getattr(out, name)} is not valid; valid: 1 or more")
    if out.replan_every is None:
        out = dataclasses.replace(out, replan_every=out.subgoal_interval)
    if out.returns_scale is None:
        out = dataclasses.replace(out, returns_scale=returns_scale(stats, out.discount))
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


# ---------------------------------------------------------------------------------- losses


def goal_loss(
    model: GoalTransformer,
    diffusion: GaussianDiffusion,
    subgoals: Tensor,
    returns: Tensor,
    cons: Constraints,
    dropout: float,
) -> Tensor:
    """Goal diffuser: noise-prediction loss on normalized subgoal sequences ``[B, M + 1, S]``,
    conditioned on the window's normalized return ``[B, 1]`` (dropped with probability
    ``dropout`` for classifier-free guidance); the first subgoal (and on mazes the last one's
    position) is inpainted in the noisy input and carries no loss."""
    return diffusion.loss(
        with_inpainting(model, cons.hook()), subgoals, dropped(returns, dropout), cons.free()
    )


def trajectory_loss(
    model: TemporalUnet, diffusion: GaussianDiffusion, chunks: Tensor, cons: Constraints
) -> Tensor:
    """Trajectory diffuser: unconditional noise-prediction loss on ``K + 1``-step chunks
    ``[B, K + 1, S]`` whose two ends (the subgoals they join) are inpainted."""
    return diffusion.loss(with_inpainting(model, cons.hook()), chunks, None, cons.free())


def random_chunks(states: Tensor, k: int) -> Tensor:
    """One random ``k + 1``-step chunk of each window ``[B, L, S] -> [B, k + 1, S]``."""
    start = torch.randint(0, states.shape[1] - k, (len(states), 1), device=states.device)
    idx = start + torch.arange(k + 1, device=states.device)
    return states.gather(1, idx[..., None].expand(-1, -1, states.shape[-1]))


# ---------------------------------------------------------------------------------- agent


class Agent(Checkpointable):
    """HDMI following :mod:`algorithms.common.contract` (no LR schedule: ``train_steps`` unused)."""

    state_attrs = (
        "goal_model",
        "traj_model",
        "inverse",
        "goal_ema",
        "traj_ema",
        "optimizer",
        "step",
    )

    def __init__(
        self,
        cfg: Config,
        info: TaskInfo,
        stats: DatasetStats,
        device: torch.device | str,
        train_steps: int,
    ):
        self.cfg = cfg = resolve(cfg, info, stats)
        self.info, self.device = info, torch.device(device)
        self.layout = StateLayout.from_info(info)
        self.norm = make_normalizer("gaussian", stats, self.layout, self.device)
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
        """The current state as the first subgoal; for mazes the goal position last."""
        cons = Constraints(shape, self.device).fix(0, slice(None), start)
        if goal is not None:
            cons.fix(-1, MAZE_POSITION, goal)
        return cons

    def segment_constraints(self, shape: tuple, first: Tensor, last: Tensor) -> Constraints:
        """Both ends of each segment: the two subgoals it joins."""
        cons = Constraints(shape, self.device).fix(0, slice(None), first)
        return cons.fix(-1, slice(None), last)

    def distance_points(self, states: Tensor, raw: Tensor) -> Tensor:
        """Maze: raw positions; otherwise normalized states."""
        return raw[..., list(MAZE_POSITION)] if self.layout.is_maze else states

    # -- training ----------------------------------------------------------------------------

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One step on the sum of the goal, trajectory and inverse-dynamics losses, and the EMAs."""
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
        g_loss = goal_loss(
            self.goal_model, self.diffusion, subgoals, returns, g_cons, cfg.condition_dropout
        )
        chunks = random_chunks(states, k)
        s_cons = self.segment_constraints(chunks.shape, chunks[:, 0], chunks[:, -1])
        t_loss = trajectory_loss(self.traj_model, self.diffusion, chunks, s_cons)
        inverse_loss = self.inverse.loss(states, self.norm.actions(batch["actions"]), batch["mask"])
        self.optimizer.zero_grad(set_to_none=True)
        (g_loss + t_loss + inverse_loss).backward()
        self.optimizer.step()
        self.goal_ema.update(self.goal_model)
        self.traj_ema.update(self.traj_model)
        self.step += 1
        return {
            "goal_loss": g_loss.detach(),
            "trajectory_loss": t_loss.detach(),
            "inverse_loss": inverse_loss.detach(),
        }

    # -- acting ------------------------------------------------------------------------------

    def sample(
        self,
        model: nn.Module,
        shape: tuple,
        cond: dict[str, Tensor] | None,
        cfg_guide: ClassifierFreeGuidance | None,
        cons: Constraints,
    ) -> Tensor:
        """Normalized samples ``shape`` from ``model`` with the Config's sampler settings."""
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

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[n_envs, act_dim]``: both levels planned for all due envs in one batch each."""
        return act_by_inverse_dynamics(
            obs,
            # HDMI has no warm start (its plans are subgoal chains, re-proposed from noise), so
            # with the default warm_start=0 the acting step always passes None here.
            lambda start, goal, target, _warm: self.plan(start, goal, target),
            layout=self.layout,
            norm=self.norm,
            plans=self.plans,
            inverse=self.inverse,
            info=self.info,
            target_return=self.cfg.target_return,
        )

    def reset(self, done: np.ndarray | None = None) -> None:
        """Drop the plans of the environments flagged in ``done`` (all when None)."""
        self.plans.reset(done)


# ---------------------------------------------------------------------------------- fidelity

PAPER_SOURCE = "Li, Wang, Jin & Zha, ICML 2023 (PMLR 202:20035-20064); no public code"
UNREAD = "not in a source we could read (no public code; the paper's appendix not at hand)"
DD_CODE = "anuragajay/decision-diffuser code/config/locomotion_config.py"
FIDELITY_TASKS = ("hopper-medium-v2", "maze2d-umaze-v1")


def _ours(setting: str, why: str) -> Official:
    """A Config field whose published value we could not read: ours and why."""
    return Official(setting, UNREAD, PAPER_SOURCE, f"ours: {why}")


FIDELITY = (
    Official(
        "subgoal extraction",
        "planning-based, over the dataset's states (against sub-optimal data pollution)",
        PAPER_SOURCE,
        "the procedure could not be followed faithfully: no public code, and the copy of the "
        "paper reachable here gives its abstract only; the agent also sees sampled windows, not "
        "the dataset",
        ours="fewest-hop path through each training window, shortcuts between steps within "
        "shortcut_radius (0 on locomotion: fixed intervals)",
    ),
    Official(
        "model hierarchy",
        "a return-conditioned goal diffuser (transformer, classifier-free guidance) proposes "
        "subgoals; a goal-conditioned trajectory diffuser fills the states between them; "
        "inverse dynamics acts",
        PAPER_SOURCE,
    ),
    _ours("n_subgoals", "8 subgoals after the current state"),
    _ours(
        "subgoal_interval",
        "Diffuser's horizons split in 8: 32 = 8 x 4 (locomotion), 128 = 8 x 16 (umaze)",
    ),
    _ours("shortcut_radius", "0 on locomotion (fixed intervals), 0.2 between maze positions"),
    _ours("n_diffusion_steps", f"Decision Diffuser's official 200 ({DD_CODE})"),
    _ours("guidance_scale", f"Decision Diffuser's official 1.2 ({DD_CODE})"),
    _ours("target_return", f"Decision Diffuser's official 0.9 ({DD_CODE} test_ret)"),
    _ours("condition_dropout", f"Decision Diffuser's official 0.25 ({DD_CODE})"),
    _ours("temperature", "Decision Diffuser's official 0.5 (its p_sample_loop)"),
    _ours("goal_layers", "a 4-layer pre-norm transformer encoder"),
    _ours("goal_width", "tokens of width 128"),
    _ours("dim", "Diffuser's U-Net width 32 for the trajectory diffuser"),
    _ours("dim_mults", "(1, 2, 4) for K + 1-step segments"),
    _ours("inv_hidden", f"Decision Diffuser's official 256 ({DD_CODE} hidden_dim)"),
    _ours("lr", f"Decision Diffuser's official 2e-4 ({DD_CODE})"),
    _ours("batch_size", f"Decision Diffuser's official 32 x 2 ({DD_CODE})"),
    _ours("replan_every", "a plan every step on locomotion, each time a subgoal is due on mazes"),
    Official(
        "state normalization",
        UNREAD,
        PAPER_SOURCE,
        "ours: z-scores with the dataset statistics, predicted x0 clamped to +-5",
        ours="z-scores, x0 clamped to +-5",
    ),
)
