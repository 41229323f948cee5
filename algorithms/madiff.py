"""MADiff: Offline Multi-agent Learning with Diffusion Models (Zhu, Liu, Mao, Zhang, Zhang, Zhao,
Zhang & Yu, NeurIPS 2024, arXiv:2305.17330).

Method: one diffusion model plans the joint future observations of all agents (actions come from
an inverse-dynamics MLP on consecutive planned observations), conditioned on the observed history
by inpainting and on per-agent returns by classifier-free guidance; each agent's plan runs through
a shared temporal U-Net, and the agents are coupled by self-attention across agents on the
bottleneck and on every skip connection. MADiff-C (``execution=centralized``) conditions on every
agent's observation; MADiff-D (``execution=decentralized``) plans once per agent from that agent's
observation alone, imagining its teammates, and acts on its own planned step.

Official code followed: zbzhu99/madiff, ``diffuser/models/ma_temporal.py``
(``SharedConvAttentionDeconv``), ``diffuser/models/temporal.py`` (``TemporalSelfAttention``),
``diffuser/models/diffusion.py`` (``GaussianDiffusion``: loss, inverse dynamics, classifier-free
guidance), ``diffuser/datasets/sequence.py`` (``SequenceDataset``: conditions, loss masks, returns),
``diffuser/utils/mask_generator.py``, ``diffuser/utils/evaluator.py`` (``_generate_samples``:
centralized and decentralized plans), and the MPE configs ``exp_specs/mpe/spread/
mad_mpe_spread_{attn,ctde}_{exp,md,mdreplay,random}.yaml`` (:data:`PAPER`; tag's and world's
differ only in ``returns_scale``, 500-700 by level; MaMuJoCo's ``exp_specs/mamujoco/2halfcheetah/``
set horizon 10, 18 steps of inpainted history and shared inverse dynamics). As there: horizon 24,
no history (``history_horizon`` 0: only the current observation is inpainted), 200 diffusion
steps of the ``squaredcos_cap_v2`` (cosine) schedule, epsilon prediction, the predicted x0 clamped
to [-1, 1] on the CDF-normalized scale (statistics pooled over agents, ``agent_share_parameters``),
U-Net dim 128 with mults (1, 4, 8), attention of 4 heads with ``C/16`` query/key and ``C/4`` value
channels per head plus step-embedding terms, softmax over agents and a residual gate ``gamma``
starting at 0; per-agent return-to-go (discount 0.99) over ``returns_scale`` dropped with
probability 0.25 per (sample, agent), guidance weight 1.2, target return 0.9; inverse dynamics
2 x 256 ReLU, shared across agents for MADiff-C (``share_inv: True``) and one per agent for
MADiff-D (the ctde configs' ``share_inv: False``); loss ``(diffusion + inverse) / 2`` on every
planned step including the repeated last step past an episode's end (``pred_future_padding``),
each sample's diffusion loss divided by its share of unconditioned entries; Adam 2e-4, batch
32 x 2 accumulation (one batch of 64 here), EMA 0.995 from step 2000 every 10 steps of both
networks (the EMA copy plans and acts); a new plan every step. In MADiff-D each training sample shows one agent (uniformly drawn); the others'
current observations are diffused with the rest (``agent_condition_type="single"``).

Departures, and why:

* the sampler's noise: the official starts from ``0.5 * N(0, I)`` and then adds diffusers'
  DDPM posterior noise unscaled; the suite's sampler has one ``temperature`` for both (0.5, as
  Decision Diffuser's official sampler), so the per-step noise is halved here too;
* the return embedding reads ``concat(value * keep, keep)`` (the shared
  :class:`~algorithms.common.unet.ConditionEmbedding`); the official zeroes the embedding of a
  dropped return: both make a dropped condition one fixed input;
* the CDFs interpolate the dataset's 1001 quantiles (``DatasetStats``), not every distinct value;
* training windows may start on an episode's last step (the official's never do) and, with
  ``history`` > 0, start only inside an episode (the official pads the start with the first
  observation); the agent's history at an episode's start repeats the first observation, as
  the official's (``use_zero_padding: False``);
* the U-Net zero-pads the horizon to a multiple of 4 (no-op at 24) and uses ``gcd(8, C)``
  GroupNorm groups (the shared :class:`~algorithms.common.unet.TemporalUnet`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import Checkpointable, DatasetStats, DataSpec, TaskInfo
from algorithms.common.defaults import Official, PaperDefaults, Settings, check_choice, fill
from algorithms.common.diffusion import GaussianDiffusion, inpainting
from algorithms.common.nets import EMA
from algorithms.common.planning import (
    CdfNormalizer,
    InverseDynamics,
    StateHistory,
    StateLayout,
    condition,
    dropped,
    guided,
    to_tensor,
)
from algorithms.common.schedules import make_betas
from algorithms.common.unet import TemporalUnet

EXECUTIONS = ("centralized", "decentralized")
_SPECS = "zbzhu99/madiff exp_specs/mpe/spread/mad_mpe_spread_attn_{level}.yaml"
_MAMUJOCO_SPECS = (
    "zbzhu99/madiff exp_specs/mamujoco/2halfcheetah/"
    "mad_mamujoco_2halfcheetah_attn_{level}_history.yaml"
)
_TAG_WORLD_RETURNS_SCALES = (
    ("tag", "expert", "exp", 700.0),
    ("tag", "medium", "md", 600.0),
    ("tag", "medium-replay", "mdreplay", 600.0),
    ("tag", "random", "random", 500.0),
    ("world", "expert", "exp", 700.0),
    ("world", "medium", "md", 600.0),
    ("world", "medium-replay", "mdreplay", 600.0),
    ("world", "random", "random", 600.0),
)
PAPER = PaperDefaults(
    families={
        "multi-agent": Settings(
            _SPECS.format(level="md"),
            {"horizon": 24, "history": 0, "n_diffusion_steps": 200, "returns_scale": 500.0},
        )
    },
    datasets={
        "mpe-spread-expert": Settings(_SPECS.format(level="exp"), {"returns_scale": 700.0}),
        # tag and world: their configs differ from spread's only in returns_scale
        **{
            f"mpe-{scenario}-{level}": Settings(
                f"zbzhu99/madiff exp_specs/mpe/{scenario}/mad_mpe_{scenario}_attn_{name}.yaml",
                {"returns_scale": scale},
            )
            for scenario, level, name, scale in _TAG_WORLD_RETURNS_SCALES
        },
        # MaMuJoCo: the attn and ctde configs both share the inverse dynamics (share_inv: True)
        **{
            f"mamujoco-halfcheetah-2x3-{level}": Settings(
                _MAMUJOCO_SPECS.format(level=level),
                {"horizon": 10, "history": 18, "returns_scale": scale, "share_inverse": True},
            )
            for level, scale in (("good", 1000.0), ("medium", 300.0), ("poor", 100.0))
        },
    },
)


@dataclass
class Config:
    """MADiff's hyperparameters; ``None`` fields take :data:`PAPER`'s value."""

    execution: str = "centralized"  # centralized (MADiff-C) or decentralized (MADiff-D)
    horizon: int | None = None  # planned future steps H (the current step included)
    history: int | None = None  # past observations inpainted before the current one
    n_diffusion_steps: int | None = None  # diffusion steps T of the cosine schedule
    returns_scale: float | None = None  # divisor of the per-agent returns-to-go
    share_inverse: bool | None = None  # one inverse dynamics for all agents (None: C yes, D no)
    dim: int = 128  # base channel width of the temporal U-Net
    dim_mults: tuple[int, ...] = (1, 4, 8)  # U-Net channel multipliers per resolution
    heads: int = 4  # heads of the cross-agent attention
    inv_hidden: int = 256  # hidden width of the 2-layer inverse-dynamics MLP
    condition_dropout: float = 0.25  # probability of dropping an agent's return in training
    guidance_scale: float = 1.2  # classifier-free guidance weight w
    target_return: float = 0.9  # normalized return planned for at acting time (test_ret)
    discount: float = 0.99  # discount of the returns-to-go
    temperature: float = 0.5  # scale of the sampler's initial and per-step noise
    lr: float = 2e-4  # Adam learning rate of the denoiser and inverse dynamics together
    batch_size: int = 64  # segments per update (the official 32 x 2 accumulation steps)
    ema_decay: float = 0.995  # decay of the denoiser's EMA copy, which plans
    ema_start: int = 2000  # updates before the EMA starts averaging
    ema_every: int = 10  # updates between EMA updates
    ddim_steps: int | None = None  # sampler steps at acting time; None: all T DDPM steps


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with :data:`PAPER`'s values and the execution's inverse-dynamics sharing."""
    check_choice("execution", cfg.execution, EXECUTIONS)
    out = dataclasses.replace(fill(cfg, PAPER, info), dim_mults=tuple(cfg.dim_mults))
    if out.share_inverse is None:
        out = dataclasses.replace(out, share_inverse=out.execution == "centralized")
    if info.n_agents < 2:
        raise ValueError(f"MADiff needs a multi-agent task; {info.task_id} has one agent")
    if out.horizon < 2 or out.history < 0:
        raise ValueError(
            f"algo.horizon={out.horizon}, algo.history={out.history}: valid: horizon >= 2, "
            "history >= 0"
        )
    if out.dim % 16:
        raise ValueError(f"algo.dim={out.dim}: valid: a multiple of 16 (attention widths C/16)")
    return out


# ---------------------------------------------------------------------------------- networks


class AgentAttention(nn.Module):
    """Self-attention across agents (``TemporalSelfAttention``): features ``[B, A, C, T]`` attend
    over the ``A`` agents, each agent's query / key / value a 1x1 convolution of its features plus
    a projection of its step embedding, compared over all ``(channel, time)`` entries; the output
    joins the input through the gate ``gamma`` (0 at initialization)."""

    def __init__(self, channels: int, embed_dim: int, heads: int = 4):
        super().__init__()
        self.heads = heads
        qk, v = max(channels // 16, 1), channels // 4
        self.query = nn.Conv1d(channels, qk * heads, 1)
        self.key = nn.Conv1d(channels, qk * heads, 1)
        self.value = nn.Conv1d(channels, v * heads, 1)
        self.query_time = nn.Sequential(nn.Mish(), nn.Linear(embed_dim, qk * heads))
        self.key_time = nn.Sequential(nn.Mish(), nn.Linear(embed_dim, qk * heads))
        self.value_time = nn.Sequential(nn.Mish(), nn.Linear(embed_dim, v * heads))
        self.gamma = nn.Parameter(torch.zeros(1))

    def _heads(self, x: Tensor, b: int, a: int) -> Tensor:
        """``[(B A), (h d), T] -> [h, B, A, d T]``."""
        return x.reshape(b, a, self.heads, -1).permute(2, 0, 1, 3)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        b, a, c, t = h.shape
        flat, e = h.reshape(b * a, c, t), emb.reshape(b * a, -1)
        q = self._heads(self.query(flat) + self.query_time(e).unsqueeze(-1), b, a)
        k = self._heads(self.key(flat) + self.key_time(e).unsqueeze(-1), b, a)
        v = self._heads(self.value(flat) + self.value_time(e).unsqueeze(-1), b, a)
        attn = torch.einsum("hbif,hbjf->hbij", q, k).div(math.sqrt(q.shape[-1])).softmax(-1)
        out = torch.einsum("hbij,hbjf->hbif", attn, v).permute(1, 2, 0, 3).reshape(b, a, c, t)
        return h + self.gamma * out


class MultiAgentDenoiser(nn.Module):
    """``model(x [B, A, H, D], t [B], cond) -> [B, A, H, D]``: the shared temporal U-Net run per
    agent, with :class:`AgentAttention` on its bottleneck and every skip connection it reads;
    ``cond`` holds per-agent returns ``{"value", "mask"}`` of shape ``[B, A, 1]``."""

    def __init__(self, obs_dim: int, dim: int, dim_mults: tuple[int, ...], heads: int):
        super().__init__()
        self.unet = TemporalUnet(obs_dim, dim, dim_mults, cond_dim=1)
        widths = [dim * m for m in dim_mults]
        mixed = [widths[-1], *reversed(widths[1:])]  # bottleneck, then the skips read
        self.attention = nn.ModuleList(AgentAttention(c, 2 * dim, heads) for c in mixed)

    def forward(self, x: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
        n_agents = x.shape[1]

        def mix(level: int, h: Tensor, emb: Tensor) -> Tensor:
            out = self.attention[level](
                h.unflatten(0, (-1, n_agents)), emb.unflatten(0, (-1, n_agents))
            )
            return out.flatten(0, 1)

        return self.unet(x, t[:, None].expand(-1, n_agents), cond, mix)


class PerAgentInverse(nn.Module):
    """Inverse dynamics ``a_t = f(o_t, o_{t+1})`` of each agent: one shared MLP or one per agent,
    on ``[..., A, D]`` pairs."""

    def __init__(self, n_agents: int, obs_dim: int, act_dim: int, hidden: int, shared: bool):
        super().__init__()
        self.shared = shared
        n = 1 if shared else n_agents
        self.nets = nn.ModuleList(InverseDynamics(obs_dim, act_dim, hidden) for _ in range(n))

    def forward(self, s: Tensor, s_next: Tensor) -> Tensor:
        if self.shared:
            return self.nets[0](s, s_next)
        outs = [net(s[..., i, :], s_next[..., i, :]) for i, net in enumerate(self.nets)]
        return torch.stack(outs, dim=-2)


# ---------------------------------------------------------------------------------- conditions


def visibility(batch: int, n_agents: int, execution: str, device: torch.device) -> Tensor:
    """Which agents' current observations a plan conditions on, ``[B, A]`` bool: all of them
    (centralized) or one uniformly drawn agent per sample (decentralized training)."""
    if execution == "centralized":
        return torch.ones(batch, n_agents, dtype=torch.bool, device=device)
    pick = torch.randint(n_agents, (batch,), device=device)
    return nn.functional.one_hot(pick, n_agents).bool()


def condition_mask(visible: Tensor, history: int, length: int, obs_dim: int) -> Tensor:
    """Inpainting mask ``[B, A, length, D]`` (``MultiAgentMaskGenerator``): a visible agent's
    ``history + 1`` first steps, an invisible agent's ``history`` past steps (set to zero)."""
    steps = torch.arange(length, device=visible.device)
    seen = (steps <= history)[None, None] & visible[..., None]
    past = (steps < history)[None, None] & ~visible[..., None]
    return (seen | past)[..., None].expand(-1, -1, -1, obs_dim)


def condition_values(obs: Tensor, visible: Tensor, history: int) -> Tensor:
    """The inpainted values: visible agents' observations, zeros for invisible agents."""
    return torch.where(visible[..., None, None], obs, torch.zeros_like(obs))


# ---------------------------------------------------------------------------------- losses


def diffusion_loss(
    model: MultiAgentDenoiser,
    diffusion: GaussianDiffusion,
    obs: Tensor,
    returns: Tensor,
    mask: Tensor,
    dropout: float,
) -> Tensor:
    """Noise-prediction loss on normalized joint plans ``[B, A, L, D]``: the conditioned entries
    (``mask``) are inpainted in the noisy input and carry no loss; each sample's loss is divided
    by its share of free entries (``(loss * masks).mean / masks.mean`` of the official)."""
    hook = inpainting(mask, obs)
    free = (~mask).float()
    weights = free / free.mean(dim=(1, 2, 3), keepdim=True)
    return diffusion.loss(
        lambda x_t, t, c: model(hook(x_t), t, c), obs, dropped(returns, dropout), weights
    )


def inverse_loss(inverse: PerAgentInverse, obs: Tensor, actions: Tensor) -> Tensor:
    """MSE of the inverse dynamics on every consecutive pair of the window (padding included,
    as the official's all-ones ``loss_masks`` under ``pred_future_padding``)."""
    s, s_next = obs[:, :, :-1].transpose(1, 2), obs[:, :, 1:].transpose(1, 2)  # [B, L-1, A, D]
    pred = inverse(s, s_next)
    return ((pred - actions[:, :-1]) ** 2).mean()


# ---------------------------------------------------------------------------------- agent


class Agent(Checkpointable):
    """MADiff following :mod:`algorithms.common.contract`, multi-agent: ``act`` maps
    ``[n_envs, n_agents, obs_dim]`` to ``[n_envs, n_agents, act_dim]`` (no LR schedule)."""

    state_attrs = ("model", "inverse", "ema", "optimizer", "step")

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
        self.norm = CdfNormalizer(stats, StateLayout.from_info(info), self.device)
        self.length = cfg.history + cfg.horizon
        self.data_spec = DataSpec(
            kind="segments", batch_size=cfg.batch_size, horizon=self.length, discount=cfg.discount
        )
        n, d = info.n_agents, info.obs_dim
        self.model = MultiAgentDenoiser(d, cfg.dim, cfg.dim_mults, cfg.heads).to(self.device)
        self.inverse = PerAgentInverse(n, d, info.act_dim, cfg.inv_hidden, cfg.share_inverse)
        self.inverse.to(self.device)
        params = [*self.model.parameters(), *self.inverse.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr)
        # The EMA copy holds both networks and does the acting (the official's ``ema_model``,
        # whose ``inv_model`` the evaluator calls).
        self.live = nn.ModuleDict({"denoiser": self.model, "inverse": self.inverse})
        self.ema = EMA(self.live, decay=cfg.ema_decay, start=cfg.ema_start, every=cfg.ema_every)
        self.diffusion = GaussianDiffusion(
            make_betas("cosine", cfg.n_diffusion_steps),
            predict_epsilon=True,
            clip_denoised=(-1.0, 1.0),
            event_dims=3,
        ).to(self.device)
        self.memory = StateHistory(cfg.history + 1)
        self.step = 0

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One step on ``(diffusion loss + inverse-dynamics loss) / 2`` and the EMA."""
        cfg = self.cfg
        obs = self.norm.states(batch["observations"]).transpose(1, 2)  # [B, A, L, D]
        b, n = obs.shape[:2]
        visible = visibility(b, n, cfg.execution, self.device)
        mask = condition_mask(visible, cfg.history, self.length, obs.shape[-1])
        values = condition_values(obs, visible, cfg.history)
        clean = torch.where(mask, values, obs)
        returns = batch["returns_to_go"][:, cfg.history].unsqueeze(-1) / cfg.returns_scale
        plan_loss = diffusion_loss(
            self.model, self.diffusion, clean, returns, mask, cfg.condition_dropout
        )
        inv_loss = inverse_loss(self.inverse, obs, self.norm.actions(batch["actions"]))
        self.optimizer.zero_grad(set_to_none=True)
        (0.5 * (plan_loss + inv_loss)).backward()
        self.optimizer.step()
        self.ema.update(self.live)
        self.step += 1
        return {"diffusion_loss": plan_loss.detach(), "inverse_loss": inv_loss.detach()}

    def plan(self, history: Tensor, visible: Tensor) -> Tensor:
        """Normalized joint plans ``[B, A, L, D]`` from histories ``[B, A, history + 1, D]``,
        conditioned on the observations of the ``visible [B, A]`` agents."""
        cfg = self.cfg
        b, n, _, d = history.shape
        shape = (b, n, self.length, d)
        mask = condition_mask(visible, cfg.history, self.length, d)
        values = torch.zeros(shape, device=self.device)
        values[:, :, : cfg.history + 1] = condition_values(history, visible, cfg.history)
        target = torch.full((b, n, 1), cfg.target_return, device=self.device)
        base, guide = guided([condition(target)], cfg.guidance_scale)
        return self.diffusion.sample(
            self.ema.model["denoiser"],
            shape,
            base,
            ddim_steps=cfg.ddim_steps,
            temperature=cfg.temperature,
            cfg=guide,
            inpaint=inpainting(mask, values),
        )

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[n_envs, n_agents, act_dim]``: one plan per env (centralized) or per
        (env, agent) from that agent's observations alone (decentralized), all in one batch;
        each agent acts by inverse dynamics towards its planned next observation."""
        cfg, k = self.cfg, self.cfg.history
        obs_t = self.norm.states(to_tensor(obs, self.device))  # [E, A, D]
        e, n, d = obs_t.shape
        history = self.memory.push(obs_t.flatten(1)).unflatten(2, (n, d)).transpose(1, 2)
        if cfg.execution == "centralized":
            plans = self.plan(history, torch.ones(e, n, dtype=torch.bool, device=self.device))
        else:
            eye = torch.eye(n, dtype=torch.bool, device=self.device)
            joint = self.plan(history.repeat_interleave(n, 0), eye.repeat(e, 1))  # [(E A), A, L, D]
            own = torch.arange(e * n, device=self.device) % n
            plans = joint[torch.arange(e * n, device=self.device), own].unflatten(0, (e, n))
        actions = self.ema.model["inverse"](plans[:, :, k], plans[:, :, k + 1])
        low, high = self.info.action_low, self.info.action_high
        return self.norm.unactions(actions).clamp(low, high).cpu().numpy()

    def reset(self, done: np.ndarray | None = None) -> None:
        """Clear the observation histories of the environments flagged in ``done``."""
        self.memory.reset(done)


# ---------------------------------------------------------------------------------- fidelity

REPO = "zbzhu99/madiff"
SPREAD = f"{REPO} exp_specs/mpe/spread/mad_mpe_spread_attn_md.yaml"
MODEL = f"{REPO} diffuser/models/diffusion.py"
FIDELITY_TASKS = ("mpe-spread-medium",)
FIDELITY = (
    Official("horizon", 24, SPREAD),
    Official("history", 0, f"{SPREAD} (history_horizon)"),
    Official("n_diffusion_steps", 200, SPREAD),
    Official("returns_scale", 500.0, SPREAD),
    Official("share_inverse", True, f"{SPREAD} (share_inv; the ctde configs: False)"),
    Official("dim", 128, SPREAD),
    Official("dim_mults", (1, 4, 8), SPREAD),
    Official("inv_hidden", 256, f"{SPREAD} (hidden_dim)"),
    Official("condition_dropout", 0.25, SPREAD),
    Official("guidance_scale", 1.2, f"{SPREAD} (condition_guidance_w)"),
    Official("target_return", 0.9, f"{SPREAD} (test_ret)"),
    Official("discount", 0.99, SPREAD),
    Official("lr", 2e-4, f"{SPREAD} (learning_rate)"),
    Official("batch_size", 64, f"{SPREAD}: batch_size 32 x gradient_accumulate_every 2"),
    Official("ema_decay", 0.995, SPREAD),
    Official("ema_start", 2000, f"{REPO} diffuser/utils/training.py (step_start_ema)"),
    Official("ema_every", 10, f"{REPO} diffuser/utils/training.py (update_ema_every)"),
    Official("ddim_steps", None, f"{SPREAD} (use_ddim_sample: False)"),
    Official("temperature", 0.5, f"{MODEL} (conditional_sample: x = 0.5 * randn)"),
    Official(
        "sampler step noise",
        "diffusers' DDPMScheduler posterior noise, unscaled (clip_sample=True)",
        f"{MODEL} (conditional_sample)",
        "the suite's sampler scales every step's noise by the one temperature",
        ours="posterior noise x 0.5 (the temperature)",
    ),
    Official(
        "return condition embedding",
        "an MLP of each agent's return, times a Bernoulli(0.75) keep flag per (sample, agent)",
        f"{REPO} diffuser/models/ma_temporal.py (SharedConvAttentionDeconv.forward)",
        "both make a dropped condition one fixed input (the shared ConditionEmbedding)",
        ours="an MLP of concat(return * keep, keep), keep ~ Bernoulli(0.75) per (sample, agent)",
    ),
    Official(
        "cross-agent attention",
        "on the bottleneck and every skip read by the up path; 4 heads, C/16 query/key and C/4 "
        "value channels, step-embedding terms, softmax over agents, residual gate from 0",
        f"{REPO} diffuser/models/temporal.py (TemporalSelfAttention)",
    ),
    Official(
        "loss masks",
        "every planned step (pred_future_padding), conditioned entries excluded, per-sample "
        "mean divided by the share of free entries; inverse dynamics on every pair",
        f"{REPO} diffuser/datasets/sequence.py, diffuser/models/diffusion.py (p_losses)",
    ),
)
PAPER_BUDGET = PaperDefaults(
    families={
        "multi-agent": Settings(
            f"{SPREAD} (n_train_steps 1001000, eval_freq 100000, num_eval 10)",
            {"train_steps": 1_000_000, "eval_every": 100_000, "eval_episodes": 10},
        )
    },
    datasets={
        f"mamujoco-halfcheetah-2x3-{level}": Settings(
            f"{_MAMUJOCO_SPECS.format(level=level)} (n_train_steps 500000, eval_freq 50000, "
            "num_eval 10)",
            {"train_steps": 500_000, "eval_every": 50_000, "eval_episodes": 10},
        )
        for level in ("good", "medium", "poor")
    },
)
