"""TD3+BC (Fujimoto & Gu, NeurIPS 2021, "A Minimalist Approach to Offline Reinforcement Learning").

Method: TD3 (twin Q with clipped target-policy noise, delayed actor and target updates) whose actor
maximizes ``lambda * Q1(s, pi(s)) - (pi(s) - a)^2`` with ``lambda = alpha / mean|Q1|`` (detached),
so the behaviour-cloning term keeps the policy near the data while Q pulls it uphill; states are
normalized with the dataset statistics.
Differences from the official code (sfujim/TD3_BC) and why:
- the target-policy noise is drawn from an agent-owned generator saved with the agent's state,
  so a resumed run continues exactly;
- the actor's backward pass is restricted to the actor's parameters (the official code also
  computes, then discards, critic gradients): same result, less arithmetic;
- noise scales and the tanh output are expressed in half-widths of ``[action_low, action_high]``
  (the official code multiplies by ``max_action``; identical for symmetric boxes).
- observations are divided by ``max(std, 1e-3)``, the suite's dataset statistics that every
  algorithm shares, where the official code divides by ``std + 1e-3`` (divisors within 1e-3);
- the harness scores the final evaluation (and reports the best periodic one); the paper's score
  is the mean of the final 10 evaluations, 5000 steps apart.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from algorithms.common.contract import Checkpointable, DatasetStats, DataSpec, TaskInfo
from algorithms.common.critics import TwinQ, twin_q_loss
from algorithms.common.defaults import Official, PaperDefaults, Settings, fill
from algorithms.common.nets import ObsNormalizer, RandomStream, gradient_step, soft_update
from algorithms.common.policies import TanhPolicy, act_deterministic

# TD3+BC uses one setting for every D4RL task: the Config's defaults.
PAPER = PaperDefaults(
    families={
        "default": Settings("Fujimoto & Gu 2021, Table 4; sfujim/TD3_BC main.py: every task", {})
    }
)


# budget=paper: main.py's flags, every task alike.
PAPER_BUDGET = PaperDefaults(
    families={
        "default": Settings(
            "sfujim/TD3_BC main.py (max_timesteps, eval_freq, eval_episodes)",
            {"train_steps": 1_000_000, "eval_every": 5000, "eval_episodes": 10},
        )
    }
)


@dataclass
class Config:
    """The paper's defaults (Table 4 of the paper; ``main.py`` of the official code)."""

    alpha: float = 2.5  # BC trade-off: the Q term is weighted by alpha / mean|Q|
    discount: float = 0.99  # discount of the TD target
    tau: float = 0.005  # Polyak rate of the actor and critic targets
    policy_noise: float = 0.2  # std of the target-policy noise, in action half-widths
    noise_clip: float = 0.5  # clip of that noise, in action half-widths
    policy_freq: int = 2  # actor and target updates every this many critic updates
    actor_lr: float = 3e-4  # Adam learning rate of the actor
    critic_lr: float = 3e-4  # Adam learning rate of the twin critic
    batch_size: int = 256  # transitions per update
    hidden: int = 256  # width of the actor's and critics' hidden layers
    depth: int = 2  # hidden layers of the actor and critic MLPs


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with the paper's values filled in (TD3+BC has no per-task ones)."""
    return fill(cfg, PAPER, info)


def td3bc_actor_loss(q: Tensor, pi: Tensor, act: Tensor, alpha: float) -> Tensor:
    """``-lambda * mean(Q) + MSE(pi, a)`` with ``lambda = alpha / mean|Q|`` held constant."""
    lmbda = alpha / q.abs().mean().detach()
    return -lmbda * q.mean() + (pi - act).square().mean()


class Agent(Checkpointable):
    """TD3+BC agent following :mod:`algorithms.common.contract`."""

    state_attrs = (
        "actor",
        "critic",
        "actor_target",
        "critic_target",
        "actor_optimizer",
        "critic_optimizer",
        "noise",
        "last_actor_loss",
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
        self.data_spec = DataSpec(
            kind="transitions", batch_size=cfg.batch_size, discount=cfg.discount
        )
        self.normalize = ObsNormalizer(stats.obs_mean, stats.obs_std, self.device)
        self.actor = TanhPolicy(info, cfg.hidden, cfg.depth)
        self.critic = TwinQ(info.obs_dim, info.act_dim, cfg.hidden, cfg.depth)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_params = list(self.actor.parameters())
        self.actor_optimizer = torch.optim.Adam(self.actor_params, lr=cfg.actor_lr, fused=True)
        self.critic_optimizer = torch.optim.Adam(
            self.critic.parameters(), lr=cfg.critic_lr, fused=True
        )
        half = self.actor.box.half
        self.noise_std, self.noise_clip = cfg.policy_noise * half, cfg.noise_clip * half
        self.noise = RandomStream(self.device)
        self.last_actor_loss = torch.zeros((), device=self.device)
        self.step = 0

    @torch.no_grad()
    def td_target(self, next_obs: Tensor, reward: Tensor, terminal: Tensor) -> Tensor:
        """``r + discount * (1 - done) * min Q_target(s', pi_target(s') + clipped noise)``."""
        next_mean = self.actor_target(next_obs)
        noise = torch.randn(next_mean.shape, generator=self.noise.generator, device=self.device)
        noise = (noise * self.noise_std).clamp(-self.noise_clip, self.noise_clip)
        next_act = self.actor.box.clamp(next_mean + noise)
        next_q = self.critic_target.min(next_obs, next_act)
        return reward + self.cfg.discount * (1.0 - terminal) * next_q

    def _update_critic(
        self, obs: Tensor, act: Tensor, reward: Tensor, next_obs: Tensor, terminal: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One step of the twin critic on its TD loss; returns the loss and Q1 [B]."""
        target = self.td_target(next_obs, reward, terminal)
        q1, q2 = self.critic(obs, act)
        loss = twin_q_loss(q1, q2, target)
        gradient_step(self.critic_optimizer, loss)
        return loss, q1

    def _update_actor(self, obs: Tensor, act: Tensor) -> Tensor:
        """One step of the actor on :func:`td3bc_actor_loss` (gradients into the actor only)."""
        pi = self.actor(obs)
        loss = td3bc_actor_loss(self.critic.first(obs, pi), pi, act, self.cfg.alpha)
        gradient_step(self.actor_optimizer, loss, self.actor_params)
        return loss

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One critic step; every ``policy_freq`` steps also an actor step and target updates."""
        self.step += 1
        obs = self.normalize(batch["observations"])
        next_obs = self.normalize(batch["next_observations"])
        act = batch["actions"]
        critic_loss, q1 = self._update_critic(
            obs, act, batch["rewards"], next_obs, batch["terminals"]
        )
        if self.step % self.cfg.policy_freq == 0:
            self.last_actor_loss = self._update_actor(obs, act).detach()
            soft_update(self.critic_target, self.critic, self.cfg.tau)
            soft_update(self.actor_target, self.actor, self.cfg.tau)
        return {
            "critic_loss": critic_loss.detach(),
            "actor_loss": self.last_actor_loss,
            "q_mean": q1.detach().mean(),
        }

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions ``[n_envs, act_dim]`` for observations ``[n_envs, obs_dim]``."""
        return act_deterministic(self.actor, self.normalize, obs)

    def reset(self, done: np.ndarray | None = None) -> None:
        """TD3+BC keeps no per-environment state."""


# ---------------------------------------------------------------------------------- fidelity

MAIN = "sfujim/TD3_BC main.py"
NETS = "sfujim/TD3_BC TD3_BC.py"
FIDELITY_TASKS = ("hopper-medium-v2",)
FIDELITY = (
    Official("alpha", 2.5, MAIN),
    Official("discount", 0.99, MAIN),
    Official("tau", 0.005, MAIN),
    Official("policy_noise", 0.2, MAIN),
    Official("noise_clip", 0.5, MAIN),
    Official("policy_freq", 2, MAIN),
    Official("actor_lr", 3e-4, f"{NETS} (actor_optimizer)"),
    Official("critic_lr", 3e-4, f"{NETS} (critic_optimizer)"),
    Official("batch_size", 256, MAIN),
    Official("hidden", 256, f"{NETS} (Actor, Critic)"),
    Official("depth", 2, f"{NETS} (Actor, Critic)"),
    Official(
        "critic TD target",
        "r + discount * (1 - done) * min(Q1', Q2') at the target actor's action plus clipped noise",
        f"{NETS} (train)",
    ),
    Official(
        "actor loss",
        "-lambda * mean Q1(s, pi(s)) + MSE(pi(s), a), lambda = alpha / mean|Q1| (detached)",
        f"{NETS} (train)",
    ),
    Official(
        "observation normalization",
        "(s - mean) / (std + 1e-3)",
        "sfujim/TD3_BC utils.py (normalize_states)",
        "the dataset statistics every algorithm shares; the divisors differ by at most 1e-3",
        ours="(s - mean) / max(std, 1e-3)",
    ),
    Official(
        "evaluation protocol",
        "deterministic actions; the paper's score is the mean of the final 10 evaluations (10 "
        "episodes each, every 5000 steps)",
        MAIN,
        "the suite scores every algorithm alike: one final evaluation (the budget rows)",
        ours="deterministic actions; the final evaluation, the best periodic one beside it",
    ),
)
