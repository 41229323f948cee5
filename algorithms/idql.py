"""IDQL: Implicit Q-Learning as an Actor-Critic Method with Diffusion Policies
(Hansen-Estruch, Kostrikov, Janner, Kuba & Levine, 2023, arXiv:2304.10573).

Method: train IQL's critic unchanged (V: expectile of Q over dataset actions; Q: TD to V(s')) and,
independently, a DDPM behaviour policy on the dataset actions. To act, draw N candidate actions
from the diffusion policy and pick among them with the critic: the implicit actor of IQL is the
behaviour policy reweighted by the critic, so re-ranking behaviour samples recovers it.

Follows the official code (philippe-eecs/IDQL, ``ddpm_iql_learner.py`` and the launcher
``train_ddpm_iql_offline.py``): T = 5 with the VP schedule, the LN-ResNet denoiser (3 residual
blocks of width 256 with 4x expansion, LayerNorm, dropout 0.1, Mish), epsilon loss, Adam 3e-4
with a cosine decay to 0 over ``max_steps`` for the actor (3e6 in the launcher), an EMA of the
actor (rate 0.001) used for sampling, ancestral sampling with noise ``sqrt(beta_t)`` and each
step's sample clipped to the action box, N = 64 candidates (the launcher's; it also evaluates
16 and 256), and the offline evaluation's rule (``eval_actions``): the candidate with the
largest target-critic min Q. ``selection="expectile"``
instead samples a candidate with the paper's implicit-policy weights ``|tau - 1(Q < V)|``
(``sample_implicit_policy``). Expectile 0.7 (locomotion) / 0.9 (antmaze) and the reward
normalization of the official ``train_diffusion_offline.py`` are kept as data.
Differences and why:
- one actor step on the same batch of 256 per critic step: the official loop draws 512
  transitions, trains the critic on the first 256 and the actor on all 512, then takes a second
  actor step on an empty slice (zero gradient, momentum only); the harness gives one batch;
- the time embedding is the suite's fixed sinusoidal one (then a 2-layer Mish MLP to 128, as
  the official), not learnable Fourier features; the loss is the per-element mean instead of
  the sum over action dimensions (a constant factor that Adam cancels);
- observations are normalized with the dataset statistics (the official code does not), and
  actions are mapped affinely onto [-1, 1] for the diffusion when the box differs;
- the critic is the suite's :class:`IQLCritic` (as in our IQL): its TD target reads V(s')
  before this step's V update (one step stale, as CORL), and PyTorch's default init is used;
- ``ddpm_temperature`` also scales the initial noise (the suite's sampler convention; the
  official scales only the per-step noise; the same at the default 1);
- Mish is computed with one exp (:class:`Mish`), same values, 2.5x faster on CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import DatasetStats, DataSpec, TaskInfo
from algorithms.common.critics import IQLCritic
from algorithms.common.diffusion import GaussianDiffusion
from algorithms.common.nets import EMA, SinusoidalEmbedding, mlp
from algorithms.common.offline import (
    cosine_decay,
    default_reward_norm,
    reward_transform,
    task_family,
)
from algorithms.common.schedules import make_betas

# Expectile per task family, from the official launcher (``critic_hyperparam``).
PAPER_EXPECTILE: dict[str, float] = {"locomotion": 0.7, "antmaze": 0.9}
DEFAULT_FAMILY = "locomotion"
SELECTIONS = ("argmax", "expectile")


@dataclass
class Config:
    """Paper defaults; ``None`` / ``auto`` take the paper's value for the task family.

    ``reward_norm``: ``auto`` follows the official code (locomotion: rewards times
    ``1000 / (return_max - return_min)``; antmaze: ``reward - 1``; others unchanged), or force
    ``returns`` / ``minus_one`` / ``none``. ``selection``: ``argmax`` (official evaluation) or
    ``expectile`` (the paper's implicit-policy importance weights).
    """

    # IQL critic
    expectile: float | None = None
    discount: float = 0.99
    tau: float = 0.005
    critic_lr: float = 3e-4
    critic_hidden: int = 256
    critic_depth: int = 2
    reward_norm: str = "auto"
    # diffusion actor
    T: int = 5
    beta_schedule: str = "vp"
    actor_hidden: int = 256
    actor_blocks: int = 3
    actor_dropout: float = 0.1
    time_dim: int = 64
    actor_lr: float = 3e-4
    actor_ema: float = 0.999
    max_steps: int = 3_000_000  # cosine schedule length; the harness sets it from train.steps
    batch_size: int = 256
    # acting
    n_candidates: int = 64
    selection: str = "argmax"
    ddpm_temperature: float = 1.0
    clip_sampler: bool = True
    act_chunk: int = 1024  # CPU: candidates per denoising pass (cache-sized); GPUs take all


def resolve_config(cfg: Config, info: TaskInfo) -> Config:
    """``cfg`` with the paper's per-task values where a field is ``None`` / ``auto``; validated."""
    if cfg.selection not in SELECTIONS:
        raise ValueError(f"unknown selection {cfg.selection!r}; valid: {', '.join(SELECTIONS)}")
    family = "antmaze" if task_family(info) == "antmaze" else DEFAULT_FAMILY
    return dataclasses.replace(
        cfg,
        expectile=PAPER_EXPECTILE[family] if cfg.expectile is None else cfg.expectile,
        reward_norm=default_reward_norm(info) if cfg.reward_norm == "auto" else cfg.reward_norm,
    )


# ---------------------------------------------------------------------------------- networks


class _MishFunction(torch.autograd.Function):
    """``x * tanh(softplus(x))`` from a single exp: ``tanh(softplus(x)) = n / (n + 2)`` with
    ``n = e^x (e^x + 2)``; about 2.5x faster than ``torch.nn.functional.mish`` on CPU, forward
    and backward (``d/dx = w + x (1 - w^2) sigmoid(x)``, ``w = tanh(softplus(x))``)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        e = x.clamp(max=20.0).exp()  # beyond 20, w == 1 in float32
        n = (e + 2.0).mul_(e)
        w = n.div_(n + 2.0)
        ctx.save_for_backward(x, w, e)
        return x * w

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        x, w, e = ctx.saved_tensors
        return grad * (w + x * (1.0 - w * w) * (e / (1.0 + e)))


class Mish(nn.Module):
    """Mish activation (the official code's ``mish``) with a faster CPU kernel."""

    def forward(self, x: Tensor) -> Tensor:
        return _MishFunction.apply(x)


class ResidualBlock(nn.Module):
    """``x + W2 mish(W1 LN(dropout(x)))`` with a 4x wider hidden layer (IDQL's MLPResNetBlock)."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.LayerNorm(dim),
            nn.Linear(dim, 4 * dim),
            Mish(),
            nn.Linear(4 * dim, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class LNResNetDenoiser(nn.Module):
    """IDQL's LN_Resnet noise predictor ``eps(a_t, t, s)`` in the suite's model-call convention.

    Input ``concat(a_t, s, MLP(sinusoid(t)))`` -> linear -> residual blocks -> mish -> linear.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: int, blocks: int, dropout: float, time_dim: int
    ):
        super().__init__()
        time_hidden = 2 * time_dim
        self.time = nn.Sequential(
            SinusoidalEmbedding(time_dim),
            mlp(time_dim, time_hidden, time_hidden, depth=1, activation=Mish),
        )
        self.inp = nn.Linear(act_dim + obs_dim + time_hidden, hidden)
        self.blocks = nn.Sequential(*(ResidualBlock(hidden, dropout) for _ in range(blocks)))
        self.out = nn.Sequential(Mish(), nn.Linear(hidden, act_dim))

    def forward(self, a_t: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        h = self.inp(torch.cat([a_t, obs, self.time(t)], dim=-1))
        return self.out(self.blocks(h))


# ---------------------------------------------------------------------------------- selection


def select_candidates(q: Tensor, v: Tensor | None, selection: str, expectile: float) -> Tensor:
    """Index ``[E]`` of the chosen candidate per state from Q values ``[E, N]`` (and V ``[E]``).

    ``argmax``: the largest Q. ``expectile``: sample with weights ``|tau - 1(Q < V)|``, the
    expectile critic's implicit policy over behaviour samples.
    """
    if selection == "argmax":
        return q.argmax(dim=-1)
    weights = torch.where(q - v.unsqueeze(-1) > 0, expectile, 1.0 - expectile)
    return torch.multinomial(weights, 1).squeeze(-1)


# ---------------------------------------------------------------------------------- agent


class Agent:
    """IDQL agent following :mod:`algorithms.common.contract`."""

    def __init__(
        self, cfg: Config, info: TaskInfo, stats: DatasetStats, device: torch.device | str
    ):
        self.cfg = cfg = resolve_config(cfg, info)
        self.info, self.device = info, torch.device(device)
        self.data_spec = DataSpec(
            kind="transitions", batch_size=cfg.batch_size, discount=cfg.discount
        )
        self.obs_mean = torch.as_tensor(stats.obs_mean, dtype=torch.float32, device=self.device)
        self.obs_std = torch.as_tensor(stats.obs_std, dtype=torch.float32, device=self.device)
        self.reward_scale, self.reward_shift = reward_transform(cfg.reward_norm, stats)
        self.act_mid = (info.action_high + info.action_low) / 2
        self.act_half = (info.action_high - info.action_low) / 2

        self.critic = IQLCritic(
            info.obs_dim,
            info.act_dim,
            cfg.critic_hidden,
            cfg.critic_depth,
            expectile=cfg.expectile,
            discount=cfg.discount,
            tau=cfg.tau,
            lr=cfg.critic_lr,
        ).to(self.device)
        self.actor = LNResNetDenoiser(
            info.obs_dim,
            info.act_dim,
            cfg.actor_hidden,
            cfg.actor_blocks,
            cfg.actor_dropout,
            cfg.time_dim,
        ).to(self.device)
        self.ema = EMA(self.actor, decay=cfg.actor_ema)
        self.ema.model.eval()
        self.actor_optimizer = torch.optim.Adam(
            self.actor.parameters(), lr=cfg.actor_lr, fused=True
        )
        self.actor_schedule = torch.optim.lr_scheduler.LambdaLR(
            self.actor_optimizer, cosine_decay(cfg.max_steps)
        )
        self.diffusion = GaussianDiffusion(make_betas(cfg.beta_schedule, cfg.T), variance="beta")
        self.diffusion.to(self.device)
        self.step = 0

    def normalize(self, obs: Tensor) -> Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One step of the IQL critic and one of the diffusion actor (and its EMA) on a batch."""
        obs = self.normalize(batch["observations"])
        next_obs = self.normalize(batch["next_observations"])
        reward = self.reward_scale * batch["rewards"] + self.reward_shift
        info = self.critic.update(obs, batch["actions"], reward, next_obs, batch["terminals"])

        unit_actions = (batch["actions"] - self.act_mid) / self.act_half
        actor_loss = self.diffusion.loss(self.actor, unit_actions, obs)
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        self.actor_schedule.step()
        self.ema.update(self.actor)
        self.step += 1
        return {**info, "actor_loss": actor_loss.detach()}

    def _clip_to_box(self, x_prev: Tensor, x_t: Tensor, t: int) -> Tensor:
        """Projection hook: the official sampler clips every step's sample to [-1, 1]."""
        return x_prev.clamp(-1.0, 1.0)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[n_envs, act_dim]``: N candidates per env denoised together, re-ranked.

        On CPU the envs go through in groups of ``act_chunk // n_candidates`` so that the
        activations stay in cache (about 2x faster at 256 candidates); GPUs take all at once.
        """
        obs_t = self.normalize(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        group = len(obs_t)
        if self.device.type == "cpu":
            group = max(1, self.cfg.act_chunk // self.cfg.n_candidates)
        actions = torch.cat([self._act_group(o) for o in obs_t.split(group)])
        return actions.cpu().numpy()

    def _act_group(self, obs: Tensor) -> Tensor:
        n_envs, n = obs.shape[0], self.cfg.n_candidates
        cond = obs.unsqueeze(1).expand(n_envs, n, obs.shape[-1])
        unit = self.diffusion.sample(
            self.ema.model,
            (n_envs, n, self.info.act_dim),
            cond,
            temperature=self.cfg.ddpm_temperature,
            projection=self._clip_to_box if self.cfg.clip_sampler else None,
        )
        candidates = self.act_mid + self.act_half * unit
        q = self.critic.q(cond, candidates)
        v = self.critic.v(obs) if self.cfg.selection == "expectile" else None
        idx = select_candidates(q, v, self.cfg.selection, self.cfg.expectile)
        action = candidates[torch.arange(n_envs, device=self.device), idx]
        return action.clamp(self.info.action_low, self.info.action_high)

    def reset(self, done: np.ndarray | None = None) -> None:
        """IDQL keeps no per-environment state."""

    def state_dict(self) -> dict:
        return {
            "critic": self.critic.state_dict(),
            "actor": self.actor.state_dict(),
            "ema": self.ema.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "actor_schedule": self.actor_schedule.state_dict(),
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        self.critic.load_state_dict(state["critic"])
        self.actor.load_state_dict(state["actor"])
        self.ema.load_state_dict(state["ema"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.actor_schedule.load_state_dict(state["actor_schedule"])
        self.step = state["step"]
