"""DAWR: advantage-weighted regression on a diffusion policy, the baseline of DPPO (Ren et al.,
ICLR 2025, arXiv:2409.00588; after Peng et al.'s AWR).

Method: pre-train the same chunk-diffusion policy as DPPO; online, keep a FIFO buffer of the
latest decisions, fit V(s) to TD(lambda) targets on it, and regress the denoiser on its own
sampled chunks with the diffusion loss weighted by ``exp(beta * A)`` (``A``: the TD(lambda)
advantage, standardized per minibatch).

Follows the official code irom-lab/dppo at commit 7b10df6:
``cfg/gym/finetune/hopper-v2/ft_awr_diffusion_mlp.yaml`` (500 decisions per env per iteration, a
buffer of the last 5000 decisions per env, rewards scaled by 0.01, discount 0.99, beta 10,
weights clipped at 100, minibatches of 1000, ``replay_ratio`` 64 and ``critic_update_ratio`` 4,
AdamW 1e-4 for the denoiser and 1e-3 for the critic, constant in effect; sampling std floored at
0.1, noise clipped at 3) and ``agent/finetune/train_awr_diffusion_agent.py`` (``td_values``:
TD(lambda) with lambda 0.95 and the error scaled by alpha 0.95, over the buffer's decisions in
order; the critic's squared error; minibatches drawn with replacement). Pre-training, scaling,
sampling and the critic network are DPPO's (:mod:`algorithms.common.chunk_diffusion`,
:mod:`algorithms.common.ppo`), and so are their departures (see :mod:`algorithms.dppo`);
fine-tuning trains every denoising step of the network started from the EMA weights.

Departures and why:
- the critic's minibatches are drawn from every buffered decision (the official draws indices
  below the buffer's length in time from the flattened time-by-env rows, so it trains on the
  oldest ``1 / n_envs`` of the buffer only: a bug);
- the buffer keeps the whole sampled chunk (the official keeps the executed ``act_steps``
  actions; the same when ``act_steps == horizon``, as in every official gym config).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from algorithms.common.chunk_diffusion import (
    OFFICIAL,
    PRETRAIN_BUDGET,
    PRETRAIN_CFG,
    ChunkDiffusionConfig,
    ChunkDiffusionPolicy,
    resolve_chunk_diffusion,
)
from algorithms.common.contract import DatasetStats, OnlineSpec, Rollout, TaskInfo
from algorithms.common.defaults import Official
from algorithms.common.ppo import Critic

FINETUNE_CFG = f"{OFFICIAL} cfg/gym/finetune/hopper-v2/ft_awr_diffusion_mlp.yaml"
AGENT = f"{OFFICIAL} agent/finetune/train_awr_diffusion_agent.py"

PAPER_BUDGET = PRETRAIN_BUDGET  # budget=paper: the shared pre-training's


@dataclass
class Config(ChunkDiffusionConfig):
    """Paper defaults (the hopper gym config); the pre-training and sampling fields are
    :class:`~algorithms.common.chunk_diffusion.ChunkDiffusionConfig`'s."""

    discount: float = 0.99  # discount of values, per decision (chunk)
    td_lambda: float = 0.95  # lambda of the TD(lambda) targets
    td_alpha: float = 0.95  # scale of each TD error in the targets (td_values' alpha)
    reward_scale: float = 0.01  # rewards are multiplied by this (scale_reward_factor)
    beta: float = 10.0  # temperature of the weights exp(beta * standardized advantage)
    max_weight: float = 100.0  # the weights are clipped at this (max_adv_weight)
    buffer_size: int = 5000  # decisions per env kept in the FIFO buffer
    replay_ratio: float = 64.0  # actor minibatches = decisions collected / batch * this
    critic_update_ratio: int = 4  # the critic takes 1 / this as many minibatches
    ft_lr: float = 1e-4  # AdamW learning rate of the denoiser in fine-tuning
    critic_lr: float = 1e-3  # AdamW learning rate of the critic V(s)
    critic_hidden: int = 256  # width of the critic's residual MLP
    rollout_steps: int = 500  # decisions per environment in one iteration (n_steps)
    ft_batch_size: int = 1000  # decisions per minibatch


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with the epoch-based defaults in steps; every choice validated."""
    return resolve_chunk_diffusion(cfg, stats)


def td_lambda_targets(
    rewards: Tensor, terminated: Tensor, values: Tensor, discount: float, lam: float, alpha: float
) -> Tensor:
    """TD(lambda) targets ``[L, N]`` over consecutive decisions (the official ``td_values``):
    the last decision bootstraps from its own value, a terminated one from nothing."""
    live = 1.0 - terminated
    targets = torch.zeros_like(values)
    running = torch.zeros_like(values[0])
    for i in reversed(range(len(values))):
        nxt = values[-1] * live[-1] if i == len(values) - 1 else values[i + 1] * live[i]
        error = rewards[i] + discount * nxt - values[i]
        running = alpha * error + discount * lam * live[i] * running
        targets[i] = running + values[i]
    return targets


def advantage_weights(advantages: Tensor, beta: float, max_weight: float) -> Tensor:
    """``exp(beta * z)`` of the minibatch's standardized advantages (``std + 1e-6``), clipped."""
    z = (advantages - advantages.mean()) / (advantages.std() + 1e-6)
    return torch.exp(beta * z).clamp(max=max_weight)


def critic_loss(values: Tensor, targets: Tensor) -> Tensor:
    """The critic's mean squared error to the TD(lambda) targets."""
    return ((values - targets) ** 2).mean()


class Buffer:
    """The last ``size`` decisions of every env, in order: observations, sampled chunks,
    scaled rewards and terminations (``[L, N, ...]`` tensors)."""

    FIELDS = ("obs", "chunks", "rewards", "terminated")

    def __init__(self, size: int):
        self.size = size
        self.data: dict[str, Tensor] = {}

    def extend(self, **arrays: Tensor) -> None:
        for key, value in arrays.items():
            joined = torch.cat([self.data[key], value]) if key in self.data else value
            self.data[key] = joined[-self.size :]

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.clone() for k, v in self.data.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.data = {k: v.clone() for k, v in state.items()}


class Agent(ChunkDiffusionPolicy):
    """DAWR agent: DPPO's pre-training, advantage-weighted regression online."""

    state_attrs = (
        *ChunkDiffusionPolicy.state_attrs,
        "critic",
        "ft_optimizer",
        "critic_optimizer",
        "buffer",
    )

    def __init__(
        self,
        cfg: Config,
        info: TaskInfo,
        stats: DatasetStats,
        device: torch.device | str,
        train_steps: int,
    ):
        cfg = resolve(cfg, info, stats)
        super().__init__(cfg, info, stats, device, train_steps)
        self.online_spec = OnlineSpec(act_steps=cfg.act_steps, rollout_steps=cfg.rollout_steps)
        self.critic = Critic(info.obs_dim, cfg.critic_hidden).to(self.device)
        self.ft_optimizer = torch.optim.AdamW(
            self.actor.parameters(), lr=cfg.ft_lr, weight_decay=0.0
        )
        self.critic_optimizer = torch.optim.AdamW(
            self.critic.parameters(), lr=cfg.critic_lr, weight_decay=0.0
        )
        self.buffer = Buffer(cfg.buffer_size)
        self._chunks: list[Tensor] = []  # explore's sampled chunks ([-1, 1]-scale)

    def start_online(self, n_envs: int) -> None:
        """Fine-tuning trains the network from the EMA weights, every denoising step."""
        self.start_from_ema()

    @torch.no_grad()
    def explore(self, obs: np.ndarray) -> np.ndarray:
        """Stochastic chunks ``[n_envs, act_steps, act_dim]``; the whole sampled chunk is kept."""
        cond = self.obs_scale(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        unit, _ = self.sample(cond, explore=True)
        self._chunks.append(unit)
        return self.to_env(unit[:, : self.cfg.act_steps]).cpu().numpy()

    def improve(self, rollout: Rollout) -> dict[str, Tensor]:
        """Buffer the iteration, fit the critic to TD(lambda) targets, then regress the denoiser
        with advantage weights (``replay_ratio`` minibatches per collected minibatch)."""
        cfg = self.cfg
        device = self.device
        self.buffer.extend(
            obs=self.obs_scale(torch.as_tensor(rollout.obs, device=device)),
            chunks=torch.stack(self._chunks),
            rewards=torch.as_tensor(rollout.rewards, device=device) * cfg.reward_scale,
            terminated=torch.as_tensor(rollout.terminated, dtype=torch.float32, device=device),
        )
        self._chunks = []
        data = self.buffer.data
        obs = data["obs"].flatten(0, 1)
        n_batches = int(rollout.rewards.size / cfg.ft_batch_size * cfg.replay_ratio)
        c_loss = torch.zeros((), device=device)
        targets = self.targets()
        for _ in range(n_batches // cfg.critic_update_ratio):
            idx = torch.randint(len(obs), (cfg.ft_batch_size,), device=device)
            c_loss = critic_loss(self.critic(obs[idx]), targets[idx])
            self.critic_optimizer.zero_grad(set_to_none=True)
            c_loss.backward()
            self.critic_optimizer.step()
        with torch.no_grad():
            advantages = self.targets() - self.critic(obs)
        chunks = data["chunks"].flatten(0, 1)
        a_loss = torch.zeros((), device=device)
        for _ in range(n_batches):
            idx = torch.randint(len(obs), (cfg.ft_batch_size,), device=device)
            weights = advantage_weights(advantages[idx], cfg.beta, cfg.max_weight)
            a_loss = self.diffusion.loss(
                self.actor, chunks[idx], obs[idx], weights=weights[:, None, None]
            )
            self.ft_optimizer.zero_grad(set_to_none=True)
            a_loss.backward()
            self.ft_optimizer.step()
        return {"awr_loss": a_loss.detach(), "critic_loss": c_loss.detach()}

    @torch.no_grad()
    def targets(self) -> Tensor:
        """TD(lambda) targets of every buffered decision under the current critic, flattened."""
        data, cfg = self.buffer.data, self.cfg
        values = self.critic(data["obs"])
        return td_lambda_targets(
            data["rewards"], data["terminated"], values, cfg.discount, cfg.td_lambda, cfg.td_alpha
        ).flatten()


# ---------------------------------------------------------------------------------- fidelity

FIDELITY_TASKS = ("hopper-medium-v2",)
FIDELITY = (
    Official("n_diffusion_steps", 20, PRETRAIN_CFG),
    Official("horizon", 4, PRETRAIN_CFG),
    Official("act_steps", 4, FINETUNE_CFG),
    Official("hidden", 512, f"{PRETRAIN_CFG} (mlp_dims)"),
    Official("min_sampling_std", 0.1, f"{FINETUNE_CFG} (min_sampling_denoising_std)"),
    Official("noise_clip", 3.0, f"{FINETUNE_CFG} (randn_clip_value)"),
    Official("discount", 0.99, f"{FINETUNE_CFG} (gamma)"),
    Official("td_lambda", 0.95, f"{AGENT} (td_values)"),
    Official("td_alpha", 0.95, f"{AGENT} (td_values)"),
    Official("reward_scale", 0.01, f"{FINETUNE_CFG} (scale_reward_factor)"),
    Official("beta", 10.0, FINETUNE_CFG),
    Official("max_weight", 100.0, f"{FINETUNE_CFG} (max_adv_weight)"),
    Official("buffer_size", 5000, FINETUNE_CFG),
    Official("replay_ratio", 64.0, FINETUNE_CFG),
    Official("critic_update_ratio", 4, FINETUNE_CFG),
    Official("ft_lr", 1e-4, f"{FINETUNE_CFG} (actor_lr)"),
    Official("critic_lr", 1e-3, FINETUNE_CFG),
    Official("critic_hidden", 256, FINETUNE_CFG),
    Official("rollout_steps", 500, f"{FINETUNE_CFG} (n_steps)"),
    Official("ft_batch_size", 1000, f"{FINETUNE_CFG} (batch_size)"),
    Official(
        "critic minibatches",
        "indices below the buffer's length in time, drawn from the flattened time x env rows",
        AGENT,
        "the official index range covers only the oldest 1 / n_envs of the buffer (a bug)",
        ours="drawn from every buffered decision",
    ),
)
