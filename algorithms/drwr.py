"""DRWR: reward-weighted regression on a diffusion policy, the baseline of DPPO (Ren et al., ICLR
2025, arXiv:2409.00588; after Peters & Schaal's RWR).

Method: pre-train the same chunk-diffusion policy as DPPO; online, collect episodes with the
exploring sampler, and regress the denoiser on its own sampled chunks with the diffusion loss
weighted by ``exp(beta * R)`` (``R``: the discounted return-to-go, normalized over the
iteration), so that chunks that led to high returns become more likely.

Follows the official code irom-lab/dppo at commit 7b10df6:
``cfg/gym/finetune/hopper-v2/ft_rwr_diffusion_mlp.yaml`` (500 decisions per env per iteration,
discount 0.99, beta 10, weights clipped at 100, 16 epochs of minibatches of 1000, AdamW 1e-4
without weight decay, constant in effect; sampling std floored at 0.1, noise clipped at 3),
``model/diffusion/diffusion_rwr.py`` (the weighted loss: per-sample mean squared error over the
chunk times its weight) and ``agent/finetune/train_rwr_diffusion_agent.py`` (only the episodes
that begin and end within the iteration and span at least two decisions are used; returns
normalized by their mean and ``std + 1e-3``). Pre-training, scaling and sampling are DPPO's
(:mod:`algorithms.common.chunk_diffusion`), and so are its departures (see
:mod:`algorithms.dppo`); fine-tuning trains every denoising step of the network started from the
EMA weights, as the official.
"""

from __future__ import annotations

import itertools
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

FINETUNE_CFG = f"{OFFICIAL} cfg/gym/finetune/hopper-v2/ft_rwr_diffusion_mlp.yaml"
AGENT = f"{OFFICIAL} agent/finetune/train_rwr_diffusion_agent.py"

PAPER_BUDGET = PRETRAIN_BUDGET  # budget=paper: the shared pre-training's


@dataclass
class Config(ChunkDiffusionConfig):
    """Paper defaults (the hopper gym config); the pre-training and sampling fields are
    :class:`~algorithms.common.chunk_diffusion.ChunkDiffusionConfig`'s."""

    discount: float = 0.99  # discount of the returns-to-go, per decision (chunk)
    beta: float = 10.0  # temperature of the weights exp(beta * normalized return)
    max_weight: float = 100.0  # the weights are clipped at this
    ft_lr: float = 1e-4  # AdamW learning rate of the denoiser in fine-tuning
    rollout_steps: int = 500  # decisions per environment in one iteration (n_steps)
    update_epochs: int = 16  # passes over an iteration's data
    ft_batch_size: int = 1000  # decisions per minibatch


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with the epoch-based defaults in steps; every choice validated."""
    return resolve_chunk_diffusion(cfg, stats)


def complete_episodes(rollout: Rollout) -> list[tuple[int, int, int]]:
    """``(env, first, last)`` decision rows of every episode that begins and ends within the
    rollout and spans at least two decisions (the official's ``episodes_start_end``)."""
    ended = rollout.terminated[-1] | rollout.truncated[-1]
    firsts = np.vstack([rollout.firsts, ended[None]])
    out = []
    for env in range(firsts.shape[1]):
        starts = np.flatnonzero(firsts[:, env])
        out += [(env, a, b - 1) for a, b in itertools.pairwise(starts) if b - a > 1]
    return out


def discounted_returns(rewards: np.ndarray, discount: float) -> np.ndarray:
    """Returns-to-go of one episode's rewards."""
    out, running = np.zeros(len(rewards)), 0.0
    for i in reversed(range(len(rewards))):
        running = out[i] = rewards[i] + discount * running
    return out


def reward_weights(returns: np.ndarray, beta: float, max_weight: float) -> np.ndarray:
    """``exp(beta * z)`` of the returns standardized with ``std + 1e-3``, clipped at
    ``max_weight``."""
    z = (returns - returns.mean()) / (returns.std() + 1e-3)
    return np.minimum(np.exp(beta * z), max_weight)


def weighted_diffusion_loss(
    agent: ChunkDiffusionPolicy, chunks: Tensor, obs: Tensor, weights: Tensor
) -> Tensor:
    """The denoising loss, each chunk's mean squared error times its weight, averaged."""
    return agent.diffusion.loss(agent.actor, chunks, obs, weights=weights[:, None, None])


class Agent(ChunkDiffusionPolicy):
    """DRWR agent: DPPO's pre-training, reward-weighted regression online."""

    state_attrs = (*ChunkDiffusionPolicy.state_attrs, "ft_optimizer")

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
        self.ft_optimizer = torch.optim.AdamW(
            self.actor.parameters(), lr=cfg.ft_lr, weight_decay=0.0
        )
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
        """Reward-weighted regression on the iteration's complete episodes (none: no update)."""
        cfg = self.cfg
        chunks = torch.stack(self._chunks)  # [S, N, horizon, act_dim]
        self._chunks = []
        episodes = complete_episodes(rollout)
        if not episodes:
            zero = torch.zeros((), device=self.device)
            return {"rwr_loss": zero, "episodes": zero}
        rows = [(s, env) for env, a, b in episodes for s in range(a, b + 1)]
        steps, envs = (torch.as_tensor(x, device=self.device) for x in zip(*rows, strict=True))
        returns = np.concatenate(
            [
                discounted_returns(rollout.rewards[a : b + 1, env], cfg.discount)
                for env, a, b in episodes
            ]
        )
        weights = torch.as_tensor(
            reward_weights(returns, cfg.beta, cfg.max_weight),
            dtype=torch.float32,
            device=self.device,
        )
        obs = self.obs_scale(torch.as_tensor(rollout.obs, device=self.device))[steps, envs]
        samples = chunks[steps, envs]
        loss = torch.zeros((), device=self.device)
        n_batches = max(1, len(obs) // cfg.ft_batch_size)
        for _ in range(cfg.update_epochs):
            order = torch.randperm(len(obs), device=self.device)
            for b in range(n_batches):
                idx = order[b * cfg.ft_batch_size : (b + 1) * cfg.ft_batch_size]
                loss = weighted_diffusion_loss(self, samples[idx], obs[idx], weights[idx])
                self.ft_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.ft_optimizer.step()
        return {"rwr_loss": loss.detach(), "episodes": torch.tensor(float(len(episodes)))}


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
    Official("beta", 10.0, FINETUNE_CFG),
    Official("max_weight", 100.0, f"{FINETUNE_CFG} (max_reward_weight)"),
    Official("ft_lr", 1e-4, f"{FINETUNE_CFG} (lr)"),
    Official("rollout_steps", 500, f"{FINETUNE_CFG} (n_steps)"),
    Official("update_epochs", 16, FINETUNE_CFG),
    Official("ft_batch_size", 1000, f"{FINETUNE_CFG} (batch_size)"),
    Official(
        "episodes used",
        "those beginning and ending within the iteration, of two decisions or more",
        AGENT,
    ),
)
