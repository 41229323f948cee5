"""Diffusion policies over action chunks, pre-trained by behaviour cloning: the policy of DPPO
and of its diffusion fine-tuning baselines (DRWR, DAWR), after irom-lab/dppo at commit 7b10df6
(``model/diffusion/diffusion.py``, ``mlp_diffusion.py``, ``diffusion_vpg.py``,
``agent/pretrain/train_diffusion_agent.py``, ``cfg/gym/pretrain/hopper-medium-v2/
pre_diffusion_mlp.yaml``).

* :class:`ChunkDiffusionConfig`: the pre-training and sampling fields every such Config shares
  (the official hopper values), and :func:`resolve_chunk_diffusion`, which converts the official
  epoch-based EMA and warmup settings into steps;
* :class:`DiffusionMLP`: the official denoiser; :class:`DenoisingMDP`: DDPM's reverse steps as
  Gaussian policies (means and stds of every step);
* :class:`ChunkDiffusionPolicy`: the agent's common part: min-max scaling, behaviour-cloning
  ``update`` with AdamW, the warmup-cosine schedule and the EMA, ``sample`` with the official
  exploration (std floored at ``min_sampling_std``) and evaluation (``deterministic=True``)
  rules, open-loop chunk execution in ``act``. Fine-tuning starts from the EMA weights.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import Checkpointable, DatasetStats, DataSpec, TaskInfo
from algorithms.common.defaults import PaperDefaults, Settings, check_choice
from algorithms.common.diffusion import GaussianDiffusion
from algorithms.common.nets import EMA, Mish, SinusoidalEmbedding
from algorithms.common.policies import ActionBox
from algorithms.common.ppo import MinMax, residual_mlp, warmup_cosine
from algorithms.common.schedules import SCHEDULES, make_betas, schedule_terms

OFFICIAL = "irom-lab/dppo@7b10df6"
PRETRAIN_CFG = f"{OFFICIAL} cfg/gym/pretrain/hopper-medium-v2/pre_diffusion_mlp.yaml"

# budget=paper of every policy pre-trained here (DPPO, DRWR and DAWR share the base policy):
# 3000 pre-training epochs of batches of 128 over hopper-medium-v2 (999,906 transitions: 7,812
# batches an epoch); the official evaluates the pre-trained policy only as fine-tuning's
# iteration 0, so the interval is its checkpoint interval (100 epochs).
PRETRAIN_BUDGET = PaperDefaults(
    families={
        "default": Settings(
            f"{PRETRAIN_CFG} (n_epochs=3000, batch_size=128, save_model_freq=100); "
            "40 evaluation episodes: the fine-tuning config's n_envs",
            {"train_steps": 23_436_000, "eval_every": 781_200, "eval_episodes": 40},
        )
    }
)


@dataclass
class ChunkDiffusionConfig:
    """Pre-training and sampling (the official hopper values)."""

    n_diffusion_steps: int = 20  # diffusion steps T of the noise schedule
    beta_schedule: str = "cosine"  # noise schedule: vp, cosine or linear
    horizon: int = 4  # actions per sampled chunk (horizon_steps)
    act_steps: int = 4  # actions of a chunk executed before the next decision
    hidden: int = 512  # width of the denoiser's residual MLP
    time_dim: int = 16  # width of the sinusoidal diffusion-step embedding
    batch_size: int = 128  # chunks per pre-training update
    lr: float = 1e-3  # AdamW learning rate of the denoiser in pre-training (peak)
    min_lr: float = 1e-4  # the cosine decay's floor, reached at the run's last step
    weight_decay: float = 1e-6  # AdamW weight decay in pre-training
    lr_warmup_steps: int | None = None  # linear warmup from min_lr; None: one epoch
    ema_decay: float = 0.995  # decay of the denoiser's EMA copy
    ema_start: int | None = None  # steps before the EMA averages (copies until); None: 10 epochs
    ema_every: int | None = None  # steps between EMA updates; None: 5 epochs
    denoised_clip: float = 1.0  # the predicted x0 is clipped to [-this, this]
    noise_clip: float = 3.0  # each step's standard normal noise is clipped to [-this, this]
    min_sampling_std: float = 0.1  # floor of the std of every denoising step when exploring


C = TypeVar("C", bound=ChunkDiffusionConfig)


def resolve_chunk_diffusion(cfg: C, stats: DatasetStats) -> C:
    """``cfg`` with the epoch-based defaults in steps (``n_transitions / batch_size`` steps an
    epoch); the schedule and the chunk validated."""
    check_choice("beta_schedule", cfg.beta_schedule, tuple(SCHEDULES))
    check_at_most("act_steps", cfg.act_steps, "algo.horizon", cfg.horizon)
    epoch = max(1, math.ceil(stats.n_transitions / cfg.batch_size))
    filled = {
        "lr_warmup_steps": epoch,  # warmup_steps=1 (epochs)
        "ema_start": 10 * epoch,  # epoch_start_ema=10
        "ema_every": 5 * epoch,  # update_ema_freq=5 (epochs)
    }
    values = {k: v if getattr(cfg, k) is None else getattr(cfg, k) for k, v in filled.items()}
    return dataclasses.replace(cfg, **values)


def check_at_most(name: str, value: int, bound_name: str, bound: int) -> None:
    """Raise ``ValueError`` naming ``algo.<name>`` unless ``1 <= value <= bound``."""
    if not 1 <= value <= bound:
        raise ValueError(f"algo.{name}={value} is not valid; valid: 1..{bound_name}={bound}")


class DiffusionMLP(nn.Module):
    """Noise predictor over a chunk ``[B, horizon, act_dim]`` given the observation ``[B, obs_dim]``."""

    def __init__(self, obs_dim: int, act_dim: int, horizon: int, hidden: int, time_dim: int):
        super().__init__()
        self.time = nn.Sequential(
            SinusoidalEmbedding(time_dim),
            nn.Linear(time_dim, 2 * time_dim),
            Mish(),
            nn.Linear(2 * time_dim, time_dim),
        )
        self.net = residual_mlp(
            horizon * act_dim + time_dim + obs_dim, horizon * act_dim, hidden, nn.ReLU
        )

    def forward(self, x: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        h = torch.cat([x.flatten(1), self.time(t), obs], dim=-1)
        return self.net(h).view_as(x)


class DenoisingMDP(nn.Module):
    """DDPM's reverse steps as Gaussian policies: per-step means, stds and log-probabilities.

    Step ``t`` (``T-1`` down to 0) maps ``x`` to ``N(mean_t(x), std_t)`` with the posterior mean
    of the clipped x0 prediction and the unclipped posterior std (0 at ``t = 0``), each floored
    as the caller says.
    """

    def __init__(self, betas: Tensor, denoised_clip: float):
        super().__init__()
        terms = schedule_terms(betas)
        ac = terms.alphas_cumprod
        for name, value in (
            ("sqrt_recip_ac", (1 / ac).sqrt()),
            ("sqrt_recipm1_ac", (1 / ac - 1).sqrt()),
            ("coef1", terms.posterior_mean_coef1),
            ("coef2", terms.posterior_mean_coef2),
            ("std", terms.posterior_variance.clamp(min=1e-20).sqrt()),
        ):
            self.register_buffer(name, value.float(), persistent=False)
        self.T, self.denoised_clip = len(betas), denoised_clip

    def mean(self, eps: Tensor, x: Tensor, t: Tensor) -> Tensor:
        """Posterior mean of step ``t`` (int64 ``[B]``) from the predicted noise."""
        shape = (-1,) + (1,) * (x.dim() - 1)
        x0 = self.sqrt_recip_ac[t].view(shape) * x - self.sqrt_recipm1_ac[t].view(shape) * eps
        x0 = x0.clamp(-self.denoised_clip, self.denoised_clip)
        return self.coef1[t].view(shape) * x0 + self.coef2[t].view(shape) * x


def denoising_log_prob(mean: Tensor, std: Tensor, x_next: Tensor) -> Tensor:
    """Elementwise Gaussian log-density of ``x_next`` under ``N(mean, std)``."""
    return torch.distributions.Normal(mean, std).log_prob(x_next)


class ChunkDiffusionPolicy(Checkpointable):
    """The common part of the chunk-diffusion agents (see the module docstring). Subclasses
    resolve their Config, call ``super().__init__``, and may override :meth:`network`."""

    state_attrs: tuple[str, ...] = ("actor", "ema", "optimizer", "schedule", "step", "online")

    def __init__(
        self,
        cfg: ChunkDiffusionConfig,
        info: TaskInfo,
        stats: DatasetStats,
        device: torch.device | str,
        train_steps: int,
    ):
        self.cfg, self.info, self.device = cfg, info, torch.device(device)
        self.data_spec = DataSpec(
            kind="segments", batch_size=cfg.batch_size, horizon=cfg.horizon, padding=False
        )
        self.obs_scale = MinMax(stats.obs_quantiles[0], stats.obs_quantiles[-1], self.device)
        self.act_scale = MinMax(stats.act_quantiles[0], stats.act_quantiles[-1], self.device)
        self.box = ActionBox.of(info)
        betas = make_betas(cfg.beta_schedule, cfg.n_diffusion_steps)
        self.diffusion = GaussianDiffusion(betas, event_dims=2).to(self.device)
        self.mdp = DenoisingMDP(betas, cfg.denoised_clip).to(self.device)
        self.actor = DiffusionMLP(
            info.obs_dim, info.act_dim, cfg.horizon, cfg.hidden, cfg.time_dim
        ).to(self.device)
        self.ema = EMA(self.actor, decay=cfg.ema_decay, start=cfg.ema_start, every=cfg.ema_every)
        self.optimizer = torch.optim.AdamW(
            self.actor.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(cfg.lr, cfg.min_lr, cfg.lr_warmup_steps, train_steps)
        )
        self.step = 0
        self.online = False  # whether fine-tuning began
        self._plan = torch.zeros(0, cfg.act_steps, info.act_dim, device=self.device)
        self._cursor = np.zeros(0, dtype=np.int64)

    # -- pre-training ---------------------------------------------------------------------
    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One behaviour-cloning step of the denoiser on chunks, then its schedule and EMA."""
        obs = self.obs_scale(batch["observations"][:, 0])
        chunks = self.act_scale(batch["actions"])
        loss = self.diffusion.loss(self.actor, chunks, obs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        self.ema.update(self.actor)
        self.step += 1
        return {"bc_loss": loss.detach()}

    # -- sampling -------------------------------------------------------------------------
    def network(self, t: int) -> nn.Module:
        """The denoiser of step ``t``: the EMA copy in pre-training, the fine-tuned network
        (started from the EMA weights by :meth:`start_from_ema`) once fine-tuning began."""
        return self.actor if self.online else self.ema.model

    def start_from_ema(self) -> None:
        """Begin fine-tuning: the trained network takes the EMA weights (the official loads the
        pre-trained checkpoint's ``ema``)."""
        self.actor.load_state_dict(self.ema.model.state_dict())
        self.online = True

    @torch.no_grad()
    def sample(self, obs: Tensor, explore: bool, chain_steps: int = 0) -> tuple[Tensor, Tensor]:
        """Chunks ``[E, horizon, act_dim]`` in [-1, 1]-scale, and the chain ``[E, K + 1, ...]``
        of the last ``K = chain_steps`` denoising steps (their input, then each step's output;
        empty when ``K = 0``). ``explore``: every step's std floored at ``min_sampling_std``;
        else the official ``deterministic=True`` rule (floored at 1e-3, none at the last step)."""
        cfg = self.cfg
        x = torch.randn(len(obs), cfg.horizon, self.info.act_dim, device=self.device)
        chain = [x] if chain_steps == cfg.n_diffusion_steps else []
        for t in reversed(range(cfg.n_diffusion_steps)):
            steps = torch.full((len(obs),), t, dtype=torch.long, device=self.device)
            mean = self.mdp.mean(self.network(t)(x, steps, obs), x, steps)
            std = self.mdp.std[t]
            if explore:
                std = std.clamp(min=cfg.min_sampling_std)
            else:
                std = std.clamp(min=1e-3) if t > 0 else torch.zeros_like(std)
            x = mean + std * torch.randn_like(x).clamp(-cfg.noise_clip, cfg.noise_clip)
            if chain_steps and t <= chain_steps:
                chain.append(x)
        return x, torch.stack(chain, dim=1) if chain else x.new_zeros(len(x), 0, *x.shape[1:])

    def to_env(self, unit: Tensor) -> Tensor:
        """[-1, 1]-scale chunks -> actions in the box."""
        return self.box.clamp(self.act_scale.inverse(unit))

    # -- acting (evaluation) --------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """The next action of each env's open-loop chunk; a new chunk where one is used up."""
        n = len(obs)
        if len(self._cursor) != n:
            self._plan = torch.zeros(n, self.cfg.act_steps, self.info.act_dim, device=self.device)
            self._cursor = np.full(n, self.cfg.act_steps)
        need = self._cursor >= self.cfg.act_steps
        if need.any():
            idx = torch.as_tensor(np.flatnonzero(need), device=self.device)
            cond = self.obs_scale(
                torch.as_tensor(obs[need], dtype=torch.float32, device=self.device)
            )
            unit, _ = self.sample(cond, explore=False)
            self._plan[idx] = self.to_env(unit[:, : self.cfg.act_steps])
            self._cursor[need] = 0
        rows = torch.arange(n, device=self.device)
        action = self._plan[rows, torch.as_tensor(self._cursor, device=self.device)]
        self._cursor += 1
        return action.cpu().numpy()

    def reset(self, done: np.ndarray | None = None) -> None:
        """Drop the open chunks of the envs flagged in ``done`` (all when ``None``)."""
        if done is None:
            self._cursor[:] = self.cfg.act_steps
        else:
            self._cursor[np.asarray(done, dtype=bool)] = self.cfg.act_steps
