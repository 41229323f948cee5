"""IDQL: Implicit Q-Learning as an Actor-Critic Method with Diffusion Policies
(Hansen-Estruch, Kostrikov, Janner, Kuba & Levine, 2023, arXiv:2304.10573).

Method: train IQL's critic unchanged (V: expectile of Q over dataset actions; Q: TD to V(s')) and,
independently, a DDPM behaviour policy on the dataset actions. To act, draw N candidate actions
from the diffusion policy and pick among them with the critic: the implicit actor of IQL is the
behaviour policy reweighted by the critic, so re-ranking behaviour samples recovers it.

Follows the official code (philippe-eecs/IDQL, ``ddpm_iql_learner.py`` and the launcher
``train_ddpm_iql_offline.py``): T = 5 with the VP schedule, the LN-ResNet denoiser (3 residual
blocks of width 256 with 4x expansion, LayerNorm, dropout 0.1, Mish), epsilon loss, Adam 3e-4
with a cosine decay to 0 over the run's training steps for the actor (3e6 in the launcher), an
EMA of the actor (rate 0.001) used for sampling, ancestral sampling with noise ``sqrt(beta_t)`` and each
step's sample clipped to the action box, N = 64 candidates (the launcher's; it also evaluates
16 and 256), and the offline evaluation's rule (``eval_actions``): the candidate with the
largest target-critic min Q. ``selection="expectile"``
instead samples a candidate with the paper's implicit-policy weights ``|tau - 1(Q < V)|``
(``sample_implicit_policy``). Expectile 0.7 (locomotion) / 0.9 (antmaze) and the reward
normalization of the official ``train_diffusion_offline.py`` are :data:`PAPER`.
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
- Mish is computed with one exp (the suite's :class:`~algorithms.common.nets.Mish`), same
  values, 2.5x faster on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import Checkpointable, DatasetStats, DataSpec, TaskInfo
from algorithms.common.critics import IQLCritic
from algorithms.common.defaults import PaperDefaults, Settings, check_choice, fill
from algorithms.common.diffusion import GaussianDiffusion
from algorithms.common.nets import EMA, Mish, ObsNormalizer, SinusoidalEmbedding, gradient_step, mlp
from algorithms.common.offline import REWARD_NORMS, cosine_decay, reward_transform
from algorithms.common.policies import ActionBox
from algorithms.common.schedules import SCHEDULES, make_betas

SELECTIONS = ("argmax", "expectile")

PAPER = PaperDefaults(
    families={
        "default": Settings(
            "no IDQL setting (point mazes, toys): the launcher's locomotion expectile, rewards "
            "unchanged",
            {"expectile": 0.7, "reward_norm": "none"},
        ),
        "locomotion": Settings(
            "philippe-eecs/IDQL train_diffusion_offline.py (critic_hyperparam, rewards)",
            {"expectile": 0.7, "reward_norm": "returns"},
        ),
        "antmaze": Settings(
            "philippe-eecs/IDQL train_diffusion_offline.py (critic_hyperparam, rewards)",
            {"expectile": 0.9, "reward_norm": "minus_one"},
        ),
    }
)


@dataclass
class Config:
    """Paper defaults; ``None`` takes the paper's value for the task family (:data:`PAPER`)."""

    # IQL critic
    expectile: float | None = None  # expectile of Q that V regresses
    discount: float = 0.99  # discount of the TD target
    tau: float = 0.005  # Polyak rate of the target twin Q
    critic_lr: float = 3e-4  # Adam learning rate of V and Q
    critic_hidden: int = 256  # width of the critic MLPs' hidden layers
    critic_depth: int = 2  # hidden layers of the critic MLPs
    reward_norm: str | None = None  # reward transform: returns, minus_one, cql_antmaze or none
    # diffusion actor
    n_diffusion_steps: int = 5  # diffusion steps T of the noise schedule
    beta_schedule: str = "vp"  # noise schedule: vp, cosine or linear
    actor_hidden: int = 256  # width of the denoiser's residual stream
    actor_blocks: int = 3  # residual blocks of the denoiser
    actor_dropout: float = 0.1  # dropout rate at the input of every residual block
    time_dim: int = 64  # width of the sinusoidal diffusion-step embedding
    actor_lr: float = 3e-4  # Adam learning rate of the denoiser (cosine decay to 0 over the run)
    ema_decay: float = 0.999  # decay of the denoiser's EMA copy, which samples the actions
    batch_size: int = 256  # transitions per update
    # acting
    n_candidates: int = 64  # actions sampled per state and ranked by the critic
    selection: str = "argmax"  # argmax: the largest Q; expectile: the implicit policy's weights
    ddpm_temperature: float = 1.0  # scale of the sampler's noise (initial and per step)
    clip_sampler: bool = True  # clip every denoising step's sample to [-1, 1], as the official
    act_chunk: int = 1024  # CPU: candidates per denoising pass (cache-sized); GPUs take all


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with the paper's per-family values filled in; every choice validated."""
    cfg = fill(cfg, PAPER, info)
    check_choice("reward_norm", cfg.reward_norm, REWARD_NORMS)
    check_choice("beta_schedule", cfg.beta_schedule, tuple(SCHEDULES))
    check_choice("selection", cfg.selection, SELECTIONS)
    return cfg


# ---------------------------------------------------------------------------------- networks


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


class Agent(Checkpointable):
    """IDQL agent following :mod:`algorithms.common.contract`."""

    # The critic's state holds its target twin Q and its optimizer (IQLCritic trains itself).
    state_attrs = ("critic", "actor", "ema", "actor_optimizer", "actor_schedule", "step")

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
        self.data_spec = DataSpec(
            kind="transitions", batch_size=cfg.batch_size, discount=cfg.discount
        )
        self.normalize = ObsNormalizer(stats.obs_mean, stats.obs_std, self.device)
        self.reward_scale, self.reward_shift = reward_transform(cfg.reward_norm, stats)
        self.box = ActionBox.of(info)

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
        self.ema = EMA(self.actor, decay=cfg.ema_decay)
        self.ema.model.eval()
        self.actor_optimizer = torch.optim.Adam(
            self.actor.parameters(), lr=cfg.actor_lr, fused=True
        )
        self.actor_schedule = torch.optim.lr_scheduler.LambdaLR(
            self.actor_optimizer, cosine_decay(train_steps)
        )
        self.diffusion = GaussianDiffusion(
            make_betas(cfg.beta_schedule, cfg.n_diffusion_steps), variance="beta"
        ).to(self.device)
        self.step = 0

    def _update_actor(self, obs: Tensor, unit_actions: Tensor) -> Tensor:
        """One step of the denoiser on the diffusion (behaviour-cloning) loss of the dataset's
        actions in ``[-1, 1]``, then of its learning-rate decay and its EMA."""
        loss = self.diffusion.loss(self.actor, unit_actions, obs)
        gradient_step(self.actor_optimizer, loss)
        self.actor_schedule.step()
        self.ema.update(self.actor)
        return loss

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One step of the IQL critic and, independently, one of the diffusion actor."""
        obs = self.normalize(batch["observations"])
        next_obs = self.normalize(batch["next_observations"])
        reward = self.reward_scale * batch["rewards"] + self.reward_shift
        info = self.critic.update(obs, batch["actions"], reward, next_obs, batch["terminals"])
        actor_loss = self._update_actor(obs, self.box.to_unit(batch["actions"]))
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
        obs_t = self.normalize.from_numpy(obs)
        group = len(obs_t)
        if self.device.type == "cpu":
            group = max(1, self.cfg.act_chunk // self.cfg.n_candidates)
        actions = torch.cat([self._act_group(o) for o in obs_t.split(group)])
        return actions.cpu().numpy()

    def _act_group(self, obs: Tensor) -> Tensor:
        """Actions for one group of normalized observations ``[E, obs_dim]``."""
        n_envs, n = obs.shape[0], self.cfg.n_candidates
        cond = obs.unsqueeze(1).expand(n_envs, n, obs.shape[-1])
        unit = self.diffusion.sample(
            self.ema.model,
            (n_envs, n, self.info.act_dim),
            cond,
            temperature=self.cfg.ddpm_temperature,
            projection=self._clip_to_box if self.cfg.clip_sampler else None,
        )
        candidates = self.box.from_unit(unit)
        q = self.critic.q(cond, candidates)
        v = self.critic.v(obs) if self.cfg.selection == "expectile" else None
        idx = select_candidates(q, v, self.cfg.selection, self.cfg.expectile)
        action = candidates[torch.arange(n_envs, device=self.device), idx]
        return self.box.clamp(action)

    def reset(self, done: np.ndarray | None = None) -> None:
        """IDQL keeps no per-environment state."""
