"""Diffusion-QL: Diffusion Policies as an Expressive Policy Class for Offline Reinforcement Learning
(Wang, Hunt & Zhou, ICLR 2023, arXiv:2208.06193).

Method: the policy is a conditional diffusion model over actions (T = 5 denoising steps), trained
with the denoising (behaviour-cloning) loss plus ``eta`` times a Q-learning term, ``-Q(s, a~pi)``
normalized by the detached mean ``|Q|``, whose gradient flows back through the whole sampling
chain; twin Q critics learn by TD with target actions sampled from the EMA of the policy.

Follows the official code (Zhendong-Wang/Diffusion-Policies-for-Offline-RL: ``agents/
ql_diffusion.py``, ``agents/diffusion.py``, ``agents/model.py``, ``main.py``): the VP schedule with
T = 5, epsilon prediction, predicted ``x_0`` clipped to the action box, ancestral sampling with
the posterior variance; the denoiser ``MLP`` (``concat(a_t, MLP(sinusoid_16(t)), s)`` -> 3x256
Mish -> linear); twin 3x256 Mish critics with a Polyak target (tau 0.005) whose TD target is
``min(Q1', Q2')`` at an action sampled by the EMA actor (``max_q_backup``: the max over 10 such
actions per head, then the min); the Q term picks one head at random each step,
``-mean(Q_i) / mean|Q_j|`` (i != j), on the live critic after its step; Adam with the per-task
actor learning rate and 3e-4 for the critic, gradient-norm clipping at the per-task ``gn`` for
both, cosine learning-rate decay for both (``--lr_decay``, as the README's commands run it); EMA
of the actor with rate 0.995 every 5 steps from step 1000; acting samples 50 actions per state
from the live actor and draws one with probabilities ``softmax(min(Q1', Q2'))`` of the target
critic. Per-task settings (``PAPER_HPARAMS``) are ``main.py``'s ``hyperparameters`` table.
Differences and why:
- the cosine decay runs once over the run's ``max_steps`` (set by the harness from
  ``train.steps``), stepped every update; the official scheduler has ``T_max = num_epochs`` but is
  stepped once per ``train()`` call of 50 epochs, so its rate falls by only 0.1% over a run;
- before step 1000 the EMA copy follows the live actor (the suite's :class:`EMA`); the official
  copy stays at its initialization until then, so its first 1000 TD targets use actions of an
  untrained diffusion model;
- observations are normalized with the dataset statistics (the official code does not), and
  actions are mapped affinely onto [-1, 1] for the diffusion when the box differs;
- the random choice of Q head is drawn on the device (``torch.where``, no host round trip), and
  the actor's backward pass is restricted to the actor's parameters (the official code also
  computes, then discards, critic gradients): same result, less arithmetic, no host sync;
- ``top_k`` and ``num_epochs`` are recorded, not acted on: the harness fixes the budget
  (``train.steps``) and reports the final and the best evaluation instead of the official
  offline model selection by the ``top_k``-th smallest BC loss; Adroit's rows (``reward_tune=
  'normalize'``, reward mean and std, which :class:`DatasetStats` does not carry) are left out.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import DatasetStats, DataSpec, TaskInfo
from algorithms.common.diffusion import GaussianDiffusion
from algorithms.common.nets import EMA, SinusoidalEmbedding, mlp, soft_update
from algorithms.common.schedules import make_betas
from algorithms.idql import Mish
from algorithms.iql import cosine_decay

MAX_Q_BACKUP_SAMPLES = 10  # next actions per state for the max-Q backup (official constant)


@dataclass(frozen=True)
class TaskHparams:
    """One row of the official per-task table; ``gn <= 0`` means no gradient clipping."""

    lr: float
    eta: float
    max_q_backup: bool
    reward_tune: str
    gn: float
    top_k: int
    num_epochs: int  # of 1000 updates each: the paper's training budget


# main.py's ``hyperparameters`` of the official code (the paper's Table of per-task settings).
PAPER_HPARAMS: dict[str, TaskHparams] = {
    "halfcheetah-medium-v2": TaskHparams(3e-4, 1.0, False, "no", 9.0, 1, 2000),
    "hopper-medium-v2": TaskHparams(3e-4, 1.0, False, "no", 9.0, 2, 2000),
    "walker2d-medium-v2": TaskHparams(3e-4, 1.0, False, "no", 1.0, 1, 2000),
    "halfcheetah-medium-replay-v2": TaskHparams(3e-4, 1.0, False, "no", 2.0, 0, 2000),
    "hopper-medium-replay-v2": TaskHparams(3e-4, 1.0, False, "no", 4.0, 2, 2000),
    "walker2d-medium-replay-v2": TaskHparams(3e-4, 1.0, False, "no", 4.0, 1, 2000),
    "halfcheetah-medium-expert-v2": TaskHparams(3e-4, 1.0, False, "no", 7.0, 0, 2000),
    "hopper-medium-expert-v2": TaskHparams(3e-4, 1.0, False, "no", 5.0, 2, 2000),
    "walker2d-medium-expert-v2": TaskHparams(3e-4, 1.0, False, "no", 5.0, 1, 2000),
    "antmaze-umaze-v0": TaskHparams(3e-4, 0.5, False, "cql_antmaze", 2.0, 2, 1000),
    "antmaze-umaze-diverse-v0": TaskHparams(3e-4, 2.0, True, "cql_antmaze", 3.0, 2, 1000),
    "antmaze-medium-play-v0": TaskHparams(1e-3, 2.0, True, "cql_antmaze", 2.0, 1, 1000),
    "antmaze-medium-diverse-v0": TaskHparams(3e-4, 3.0, True, "cql_antmaze", 1.0, 1, 1000),
    "antmaze-large-play-v0": TaskHparams(3e-4, 4.5, True, "cql_antmaze", 10.0, 2, 1000),
    "antmaze-large-diverse-v0": TaskHparams(3e-4, 3.5, True, "cql_antmaze", 7.0, 1, 1000),
    "kitchen-complete-v0": TaskHparams(3e-4, 0.005, False, "no", 9.0, 2, 250),
    "kitchen-partial-v0": TaskHparams(3e-4, 0.005, False, "no", 10.0, 2, 1000),
    "kitchen-mixed-v0": TaskHparams(3e-4, 0.005, False, "no", 10.0, 0, 1000),
}
# Tasks outside the table (other locomotion levels, point mazes, toys): the values the nine
# locomotion rows share, with ``Diffusion_QL``'s default ``grad_norm=1.0`` and ``main.py``'s
# (commented-out) default ``top_k=1``.
DEFAULT_HPARAMS = TaskHparams(3e-4, 1.0, False, "no", 1.0, 1, 2000)

# The ``reward_tune`` modes of the official ``utils/data_sampler.py`` that DatasetStats can express.
REWARD_TUNES = ("no", "cql_antmaze", "iql_antmaze", "iql_locomotion")


@dataclass
class Config:
    """Paper defaults; ``None`` takes the task's row of ``PAPER_HPARAMS`` (see :func:`paper_hparams`)."""

    # per task (None: the paper's table)
    eta: float | None = None  # weight of the normalized Q term
    lr: float | None = None  # actor learning rate
    max_q_backup: bool | None = None
    reward_tune: str | None = None  # one of REWARD_TUNES
    grad_norm: float | None = None  # ``gn``: max gradient norm of actor and critic; <= 0: none
    top_k: int | None = None  # recorded only (official offline model selection)
    num_epochs: int | None = None  # recorded only (the paper's budget, epochs of 1000 updates)
    # critic
    critic_lr: float = 3e-4
    discount: float = 0.99
    tau: float = 0.005
    critic_hidden: int = 256
    critic_depth: int = 3
    # diffusion actor
    T: int = 5
    beta_schedule: str = "vp"
    actor_hidden: int = 256
    actor_depth: int = 3
    time_dim: int = 16
    ema_decay: float = 0.995
    step_start_ema: int = 1000
    update_ema_every: int = 5
    # optimization
    lr_decay: bool = True
    max_steps: int = 1_000_000  # cosine schedule length; the harness sets it from train.steps
    batch_size: int = 256
    # acting
    n_candidates: int = 50


def paper_hparams(task_id: str) -> TaskHparams:
    """The official row for ``task_id``, matched by name without the ``-vN`` suffix (so
    ``antmaze-umaze-v2`` takes ``antmaze-umaze-v0``'s row), else :data:`DEFAULT_HPARAMS`."""
    base = re.sub(r"-v\d+$", "", task_id)
    for name, row in PAPER_HPARAMS.items():
        if re.sub(r"-v\d+$", "", name) == base:
            return row
    return DEFAULT_HPARAMS


def resolve_config(cfg: Config, info: TaskInfo) -> Config:
    """``cfg`` with every ``None`` per-task field taken from the task's paper row; validated."""
    row = paper_hparams(info.data_id)
    filled = {
        "eta": row.eta,
        "lr": row.lr,
        "max_q_backup": row.max_q_backup,
        "reward_tune": row.reward_tune,
        "grad_norm": row.gn,
        "top_k": row.top_k,
        "num_epochs": row.num_epochs,
    }
    out = dataclasses.replace(
        cfg, **{k: v if getattr(cfg, k) is None else getattr(cfg, k) for k, v in filled.items()}
    )
    if out.reward_tune not in REWARD_TUNES:
        raise ValueError(
            f"unknown reward_tune {out.reward_tune!r}; valid: {', '.join(REWARD_TUNES)}"
        )
    return out


def reward_transform(mode: str, stats: DatasetStats) -> tuple[float, float]:
    """``(scale, shift)`` so the critic trains on ``scale * r + shift`` (official ``reward_tune``):
    ``cql_antmaze`` ``(r - 0.5) * 4``; ``iql_antmaze`` ``r - 1``; ``iql_locomotion``
    ``1000 r / (max return - min return)``; ``no`` unchanged."""
    if mode == "cql_antmaze":
        return 4.0, -2.0
    if mode == "iql_antmaze":
        return 1.0, -1.0
    if mode == "iql_locomotion":
        return 1000.0 / max(stats.return_max - stats.return_min, 1e-6), 0.0
    return 1.0, 0.0


# ---------------------------------------------------------------------------------- networks


class MLPDenoiser(nn.Module):
    """The official ``MLP`` noise predictor ``eps(a_t, t, s)`` in the suite's model-call convention:
    ``concat(a_t, MLP(sinusoid(t)), s)`` -> ``depth`` x ``hidden`` Mish -> linear."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, depth: int, time_dim: int):
        super().__init__()
        self.time = nn.Sequential(
            SinusoidalEmbedding(time_dim),
            mlp(time_dim, time_dim, 2 * time_dim, depth=1, activation=Mish),
        )
        self.net = mlp(act_dim + time_dim + obs_dim, act_dim, hidden, depth, activation=Mish)

    def forward(self, a_t: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        return self.net(torch.cat([a_t, self.time(t), obs], dim=-1))


class MishTwinQ(nn.Module):
    """The official ``Critic``: two ``depth`` x ``hidden`` Mish MLPs on ``concat(s, a)``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, depth: int):
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, 1, hidden, depth, activation=Mish)
        self.q2 = mlp(obs_dim + act_dim, 1, hidden, depth, activation=Mish)

    def forward(self, obs: Tensor, act: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([obs, act], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def min(self, obs: Tensor, act: Tensor) -> Tensor:
        return torch.minimum(*self(obs, act))


# ---------------------------------------------------------------------------------- losses


def normalized_q_loss(q1: Tensor, q2: Tensor, use_q1: Tensor) -> Tensor:
    """``-mean(Q_i) / mean|Q_j|`` (detached), ``i`` = 1 where the boolean ``use_q1`` holds, else 2;
    ``j`` is the other head (the official code flips a fair coin per step)."""
    loss_1 = -q1.mean() / q2.abs().mean().detach()
    loss_2 = -q2.mean() / q1.abs().mean().detach()
    return torch.where(use_q1, loss_1, loss_2)


# ---------------------------------------------------------------------------------- agent


class Agent:
    """Diffusion-QL agent following :mod:`algorithms.common.contract`."""

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
        self.reward_scale, self.reward_shift = reward_transform(cfg.reward_tune, stats)
        self.act_mid = (info.action_high + info.action_low) / 2
        self.act_half = (info.action_high - info.action_low) / 2

        self.actor = MLPDenoiser(
            info.obs_dim, info.act_dim, cfg.actor_hidden, cfg.actor_depth, cfg.time_dim
        ).to(self.device)
        self.ema = EMA(
            self.actor, decay=cfg.ema_decay, start=cfg.step_start_ema, every=cfg.update_ema_every
        )
        self.critic = MishTwinQ(info.obs_dim, info.act_dim, cfg.critic_hidden, cfg.critic_depth)
        self.critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_params = list(self.actor.parameters())
        self.critic_params = list(self.critic.parameters())
        self.actor_optimizer = torch.optim.Adam(self.actor_params, lr=cfg.lr, fused=True)
        self.critic_optimizer = torch.optim.Adam(self.critic_params, lr=cfg.critic_lr, fused=True)
        self.schedules = [
            torch.optim.lr_scheduler.LambdaLR(opt, cosine_decay(cfg.max_steps))
            for opt in (self.actor_optimizer, self.critic_optimizer)
            if cfg.lr_decay
        ]
        self.diffusion = GaussianDiffusion(
            make_betas(cfg.beta_schedule, cfg.T), clip_denoised=(-1.0, 1.0), variance="posterior"
        ).to(self.device)
        self.step = 0

    def normalize(self, obs: Tensor) -> Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def sample_unit(self, model: nn.Module, obs: Tensor, differentiable: bool = False) -> Tensor:
        """Actions in [-1, 1]^act_dim, one per row of ``obs`` ``[*batch, obs_dim]``, by DDPM."""
        shape = (*obs.shape[:-1], self.info.act_dim)
        return self.diffusion.sample(model, shape, obs, differentiable=differentiable)

    def td_target(self, next_obs: Tensor, reward: Tensor, terminal: Tensor) -> Tensor:
        """``r + discount * (1 - done) * min_i Q_i'(s', a')`` with ``a'`` from the EMA actor;
        with ``max_q_backup`` each head first takes its max over 10 sampled ``a'``."""
        with torch.no_grad():
            if self.cfg.max_q_backup:
                rep = next_obs.unsqueeze(1).expand(-1, MAX_Q_BACKUP_SAMPLES, -1)
                q1, q2 = self.critic_target(rep, self.sample_unit(self.ema.model, rep))
                next_q = torch.minimum(q1.amax(dim=1), q2.amax(dim=1))
            else:
                next_q = self.critic_target.min(
                    next_obs, self.sample_unit(self.ema.model, next_obs)
                )
            return reward + self.cfg.discount * (1.0 - terminal) * next_q

    def clip_and_step(self, params: list[Tensor], optimizer: torch.optim.Optimizer) -> None:
        if self.cfg.grad_norm > 0:
            nn.utils.clip_grad_norm_(params, max_norm=self.cfg.grad_norm, foreach=True)
        optimizer.step()

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One critic step, then one actor step (BC + eta * Q term through the chain), then the
        EMA, the critic's target and both learning-rate schedules, in the official order."""
        obs = self.normalize(batch["observations"])
        next_obs = self.normalize(batch["next_observations"])
        unit_act = (batch["actions"] - self.act_mid) / self.act_half
        reward = self.reward_scale * batch["rewards"] + self.reward_shift

        target = self.td_target(next_obs, reward, batch["terminals"])
        q1, q2 = self.critic(obs, unit_act)
        critic_loss = (q1 - target).square().mean() + (q2 - target).square().mean()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.clip_and_step(self.critic_params, self.critic_optimizer)

        bc_loss = self.diffusion.loss(self.actor, unit_act, obs)
        new_q1, new_q2 = self.critic(obs, self.sample_unit(self.actor, obs, differentiable=True))
        use_q1 = torch.rand((), device=self.device) < 0.5
        q_loss = normalized_q_loss(new_q1, new_q2, use_q1)
        actor_loss = bc_loss + self.cfg.eta * q_loss
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward(inputs=self.actor_params)
        self.clip_and_step(self.actor_params, self.actor_optimizer)

        self.ema.update(self.actor)
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        for schedule in self.schedules:
            schedule.step()
        self.step += 1
        return {
            "critic_loss": critic_loss.detach(),
            "bc_loss": bc_loss.detach(),
            "ql_loss": q_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "q_mean": q1.detach().mean(),
        }

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[n_envs, act_dim]``: ``n_candidates`` per env from the live actor in one
        denoising pass, one drawn per env with probabilities softmax(target min Q)."""
        obs_t = self.normalize(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        n_envs = obs_t.shape[0]
        cond = obs_t.unsqueeze(1).expand(n_envs, self.cfg.n_candidates, obs_t.shape[-1])
        candidates = self.sample_unit(self.actor, cond)
        probs = torch.softmax(self.critic_target.min(cond, candidates), dim=-1)
        idx = torch.multinomial(probs, 1).squeeze(-1)
        unit = candidates[torch.arange(n_envs, device=self.device), idx]
        action = self.act_mid + self.act_half * unit
        return action.clamp(self.info.action_low, self.info.action_high).cpu().numpy()

    def reset(self, done: np.ndarray | None = None) -> None:
        """Diffusion-QL keeps no per-environment state."""

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "ema": self.ema.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "schedules": [s.state_dict() for s in self.schedules],
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.ema.load_state_dict(state["ema"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        for schedule, s in zip(self.schedules, state["schedules"], strict=True):
            schedule.load_state_dict(s)
        self.step = state["step"]
