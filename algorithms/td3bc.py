"""TD3+BC (Fujimoto & Gu, NeurIPS 2021, "A Minimalist Approach to Offline Reinforcement Learning").

Method: TD3 (twin Q with clipped target-policy noise, delayed actor and target updates) whose actor
maximizes ``lambda * Q1(s, pi(s)) - (pi(s) - a)^2`` with ``lambda = alpha / mean|Q1|`` (detached),
so the behaviour-cloning term keeps the policy near the data while Q pulls it uphill; states are
normalized with the dataset statistics.
Differences from the official code (sfujim/TD3_BC) and why:
- the target-policy noise is drawn from an agent-owned generator saved in :meth:`Agent.state_dict`,
  so a resumed run continues exactly;
- the actor's backward pass is restricted to the actor's parameters (the official code also
  computes, then discards, critic gradients): same result, less arithmetic;
- noise scales and the tanh output are expressed in half-widths of ``[action_low, action_high]``
  (the official code multiplies by ``max_action``; identical for symmetric boxes).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from algorithms.bc import TanhPolicy
from algorithms.common.contract import DatasetStats, DataSpec, TaskInfo
from algorithms.common.critics import TwinQ
from algorithms.common.nets import soft_update


@dataclass
class Config:
    """The paper's defaults (Table 4 of the paper; ``main.py`` of the official code)."""

    alpha: float = 2.5
    discount: float = 0.99
    tau: float = 0.005
    policy_noise: float = 0.2  # std of the target-policy noise, in action half-widths
    noise_clip: float = 0.5  # clip of that noise, in action half-widths
    policy_freq: int = 2  # actor and target updates every this many critic updates
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    batch_size: int = 256
    hidden: int = 256
    depth: int = 2


def td3bc_actor_loss(q: Tensor, pi: Tensor, act: Tensor, alpha: float) -> Tensor:
    """``-lambda * mean(Q) + MSE(pi, a)`` with ``lambda = alpha / mean|Q|`` held constant."""
    lmbda = alpha / q.abs().mean().detach()
    return -lmbda * q.mean() + (pi - act).square().mean()


class Agent:
    """TD3+BC agent following :mod:`algorithms.common.contract`."""

    def __init__(
        self, cfg: Config, info: TaskInfo, stats: DatasetStats, device: torch.device | str
    ):
        self.cfg, self.info, self.device = cfg, info, torch.device(device)
        self.data_spec = DataSpec(
            kind="transitions", batch_size=cfg.batch_size, discount=cfg.discount
        )
        self.obs_mean = torch.as_tensor(stats.obs_mean, dtype=torch.float32, device=self.device)
        self.obs_std = torch.as_tensor(stats.obs_std, dtype=torch.float32, device=self.device)
        half = (info.action_high - info.action_low) / 2
        self.noise_std, self.noise_clip = cfg.policy_noise * half, cfg.noise_clip * half

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
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(torch.randint(2**62, ())))
        self.last_actor_loss = torch.zeros((), device=self.device)
        self.step = 0

    def normalize(self, obs: Tensor) -> Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def td_target(self, next_obs: Tensor, reward: Tensor, terminal: Tensor) -> Tensor:
        """``r + discount * (1 - done) * min Q_target(s', pi_target(s') + clipped noise)``."""
        with torch.no_grad():
            next_mean = self.actor_target(next_obs)
            noise = torch.randn(next_mean.shape, generator=self.generator, device=self.device)
            noise = (noise * self.noise_std).clamp(-self.noise_clip, self.noise_clip)
            next_act = (next_mean + noise).clamp(self.info.action_low, self.info.action_high)
            next_q = self.critic_target.min(next_obs, next_act)
            return reward + self.cfg.discount * (1.0 - terminal) * next_q

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One critic step; every ``policy_freq`` steps also an actor step and target updates."""
        self.step += 1
        obs = self.normalize(batch["observations"])
        next_obs = self.normalize(batch["next_observations"])
        act = batch["actions"]
        target = self.td_target(next_obs, batch["rewards"], batch["terminals"])
        q1, q2 = self.critic(obs, act)
        critic_loss = (q1 - target).square().mean() + (q2 - target).square().mean()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        if self.step % self.cfg.policy_freq == 0:
            pi = self.actor(obs)
            actor_loss = td3bc_actor_loss(self.critic.first(obs, pi), pi, act, self.cfg.alpha)
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward(inputs=self.actor_params)
            self.actor_optimizer.step()
            soft_update(self.critic_target, self.critic, self.cfg.tau)
            soft_update(self.actor_target, self.actor, self.cfg.tau)
            self.last_actor_loss = actor_loss.detach()
        return {
            "critic_loss": critic_loss.detach(),
            "actor_loss": self.last_actor_loss,
            "q_mean": q1.detach().mean(),
        }

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions ``[n_envs, act_dim]`` for observations ``[n_envs, obs_dim]``."""
        self.actor.eval()
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        action = self.actor(self.normalize(obs_t)).clamp(
            self.info.action_low, self.info.action_high
        )
        self.actor.train()
        return action.cpu().numpy()

    def reset(self, done: np.ndarray | None = None) -> None:
        """TD3+BC keeps no per-environment state."""

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "last_actor_loss": self.last_actor_loss,
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.generator.set_state(state["generator"].cpu())  # map_location may have moved it
        self.last_actor_loss = state["last_actor_loss"].to(self.device)
        self.step = state["step"]
