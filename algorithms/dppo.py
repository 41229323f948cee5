"""DPPO: Diffusion Policy Policy Optimization (Ren, Lidard, Ankile, Simeonov, Agrawal, Majumdar,
Burchfiel, Dai & Simchowitz, ICLR 2025, arXiv:2409.00588).

Method: pre-train a DDPM policy over action chunks by behaviour cloning; then fine-tune it online
with PPO on a two-layer MDP whose outer steps are environment decisions (a chunk of actions,
rewards summed) and whose inner steps are the denoising steps, each a Gaussian "action" with an
exact log-probability, so the whole chain's likelihood ratio is PPO's.

Follows the official code irom-lab/dppo at commit 7b10df6: the gym configs
``cfg/gym/pretrain/hopper-medium-v2/pre_diffusion_mlp.yaml`` and
``cfg/gym/finetune/hopper-v2/ft_ppo_diffusion_mlp.yaml``; ``model/diffusion/diffusion.py``
(DDPM, cosine schedule, epsilon prediction, x0 clipped to [-1, 1]), ``mlp_diffusion.py`` and
``model/common/mlp.py`` (DiffusionMLP: the flattened chunk, a 16-wide sinusoidal time embedding
through Linear-Mish-Linear, and the observation into a residual MLP of width 512: Linear, one
two-layer pre-activation ReLU block, Linear), ``diffusion_vpg.py`` (the last
``ft_denoising_steps`` of 20 run a fine-tuned copy while the earlier ones stay with the frozen
pre-trained network; sampling std floored at 0.1, noise clipped at 3; log-probs with std floored
at 0.1), ``diffusion_ppo.py`` (log-probs clamped to [-5, 2] and averaged over the executed chunk
and the action dims, advantages normalized, repeated over denoising steps and discounted by
``gamma_denoising`` per step from the last, per-denoising-step clip coefficient interpolated
exponentially from ``clip_coef_base`` to ``clip_coef``, value loss 0.5 MSE) and
``agent/finetune/train_ppo_diffusion_agent.py`` / ``train_ppo_agent.py`` (500 chunk decisions per
env per iteration, the running reward scaler of ``util/reward_scaling.py``, GAE over decisions
with 0.99 / 0.95, 5 epochs of minibatches of 5000 with an approximate-KL stop at 1.0, AdamW at
1e-4 for the copy and 1e-3 for the critic (the configs' warmup-cosine schedules have
``min_lr`` equal to the rate: constant), a residual Mish critic V(s) of width 256).
Pre-training as ``agent/pretrain/train_diffusion_agent.py``: AdamW 1e-3 with weight decay 1e-6,
cosine from one epoch of warmup to 1e-4 at the run's end, EMA 0.995 updated every 5 epochs from
epoch 10; acting uses the EMA weights, and fine-tuning starts from them.
The diffusion policy over chunks (pre-training, scaling, sampling, open-loop acting) is the
shared :mod:`algorithms.common.chunk_diffusion` (DRWR and DAWR build on it too) and the PPO
machinery (GAE, reward scaler, clipped surrogate, critic) :mod:`algorithms.common.ppo` (shared
with the Gaussian-PPO baseline).

Departures and why:
- observations and actions are min-max scaled to [-1, 1] with the loaded dataset's extremes
  (the official scales with ``normalization.npz`` written by its dataset script, which also
  drops episodes of zero reward first; the suite's samplers keep every episode);
- pre-training counts training steps, not epochs: the EMA's start, interval and the learning
  rate's warmup are the official epochs converted with ``n_transitions / batch_size`` steps per
  epoch (the official epoch is over the windows of 4 whole steps, slightly fewer); the length is
  the harness's ``train.steps`` (``budget=paper``: the official 3000 epochs);
- evaluation goes through the harness (``bench.evaluate``: fixed-seed episodes, each chunk
  executed open-loop, sampled with the official ``deterministic=True`` rule: std floored at 1e-3,
  none at the last step), not the official evaluation iterations in the training envs;
- actions are clipped into the action box (the official passes the chunk to the env unclipped;
  MuJoCo clips controls itself);
- the pre-training and evaluation noise clip is the fine-tuning config's 3 (the pre-training
  config's default is 10): the same sampler before and after fine-tuning;
- environment steps, reward summing over chunks and resets after an episode's end within a
  chunk are the harness's (:mod:`bench.online`), counted as the official counts them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.chunk_diffusion import (
    OFFICIAL,
    PRETRAIN_BUDGET,
    PRETRAIN_CFG,
    ChunkDiffusionConfig,
    ChunkDiffusionPolicy,
    check_at_most,
    resolve_chunk_diffusion,
)
from algorithms.common.contract import DatasetStats, OnlineSpec, Rollout, TaskInfo
from algorithms.common.defaults import Official
from algorithms.common.ppo import (
    LOGPROB_CLAMP,
    Critic,
    RunningRewardScaler,
    clipped_surrogate,
    explained_variance,
    minibatch_step,
    normalized,
    ppo_epochs,
    rollout_advantages,
    value_loss,
)

FINETUNE_CFG = f"{OFFICIAL} cfg/gym/finetune/hopper-v2/ft_ppo_diffusion_mlp.yaml"

PAPER_BUDGET = PRETRAIN_BUDGET  # budget=paper: the shared pre-training's


@dataclass
class Config(ChunkDiffusionConfig):
    """Paper defaults (the hopper gym configs of the official code); the pre-training and
    sampling fields are :class:`~algorithms.common.chunk_diffusion.ChunkDiffusionConfig`'s."""

    ft_denoising_steps: int = 10  # the last this many denoising steps run the fine-tuned copy
    min_logprob_std: float = 0.1  # floor of the std in the log-probabilities
    gamma_denoising: float = 0.99  # discount of advantages across denoising steps
    clip_coef: float = 0.01  # PPO clip coefficient of the last denoising step
    clip_coef_base: float = 0.01  # PPO clip coefficient of the first fine-tuned step
    clip_coef_rate: float = 3.0  # exponential rate of the clip coefficient across steps
    discount: float = 0.99  # discount of values and returns, per decision (chunk)
    gae_lambda: float = 0.95  # GAE's lambda over decisions
    reward_scale_running: bool = True  # divide rewards by the running std of discounted returns
    ft_lr: float = 1e-4  # AdamW learning rate of the fine-tuned denoiser copy
    critic_lr: float = 1e-3  # AdamW learning rate of the critic V(s)
    critic_hidden: int = 256  # width of the critic's residual MLP
    rollout_steps: int = 500  # decisions per environment in one iteration (n_steps)
    update_epochs: int = 5  # passes over an iteration's data
    ft_batch_size: int = 5000  # decisions per PPO minibatch
    vf_coef: float = 0.5  # weight of the value loss
    target_kl: float | None = 1.0  # stop the iteration's updates once approx. KL exceeds it
    norm_adv: bool = True  # normalize advantages within each minibatch
    logprob_batch: int = 10000  # decisions per forward pass when computing old log-probs


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with the epoch-based defaults in steps; every choice validated."""
    check_at_most(
        "ft_denoising_steps",
        cfg.ft_denoising_steps,
        "algo.n_diffusion_steps",
        cfg.n_diffusion_steps,
    )
    return resolve_chunk_diffusion(cfg, stats)


# ---------------------------------------------------------------------------------- losses


def denoising_log_prob(mean: Tensor, std: Tensor, x_next: Tensor) -> Tensor:
    """Elementwise Gaussian log-density of ``x_next`` under ``N(mean, std)``."""
    return torch.distributions.Normal(mean, std).log_prob(x_next)


def clip_schedule(steps: int, coef: float, base: float, rate: float) -> Tensor:
    """The per-denoising-step PPO clip coefficients, first fine-tuned step to last
    (diffusion_ppo.py): ``base + (coef - base) * (exp(rate * k / (K - 1)) - 1) / (exp(rate) - 1)``."""
    if steps == 1:
        return torch.tensor([coef])
    k = torch.arange(steps, dtype=torch.float32) / (steps - 1)
    return base + (coef - base) * (torch.exp(rate * k) - 1) / (math.exp(rate) - 1)


def denoising_discount(steps: int, gamma: float) -> Tensor:
    """``gamma ** (K - 1 - k)`` for chain step ``k``: the last denoising step is undiscounted."""
    return gamma ** torch.arange(steps - 1, -1, -1, dtype=torch.float32)


def ppo_policy_loss(
    new_logp: Tensor, old_logp: Tensor, advantages: Tensor, clip: Tensor, gamma_denoising: float
) -> tuple[Tensor, Tensor, Tensor]:
    """DPPO's clipped surrogate over (decision, denoising step) pairs. ``new_logp``/``old_logp``:
    ``[B, K]`` per-step log-probabilities (clamped, averaged over the chunk); ``advantages``
    ``[B]``, repeated over the steps and discounted by :func:`denoising_discount`; ``clip``
    ``[K]``. Returns the loss, the approximate KL and the clip fraction."""
    discount = denoising_discount(new_logp.shape[1], gamma_denoising).to(advantages)
    return clipped_surrogate(
        new_logp, old_logp, advantages[:, None] * discount, clip.to(new_logp)[None]
    )


# ---------------------------------------------------------------------------------- agent


class Agent(ChunkDiffusionPolicy):
    """DPPO agent: pre-trains with ``update``, fine-tunes as the contract's ``OnlineAgent``."""

    state_attrs = (
        *ChunkDiffusionPolicy.state_attrs,
        "actor_ft",
        "critic",
        "ft_optimizer",
        "critic_optimizer",
        "reward_scaler",
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
        # Fine-tuning: a trainable copy of the EMA denoiser for the last steps, and V(s).
        self.actor_ft = copy.deepcopy(self.actor)
        self.critic = Critic(info.obs_dim, cfg.critic_hidden).to(self.device)
        self.ft_optimizer = torch.optim.AdamW(
            self.actor_ft.parameters(), lr=cfg.ft_lr, weight_decay=0.0
        )
        self.critic_optimizer = torch.optim.AdamW(
            self.critic.parameters(), lr=cfg.critic_lr, weight_decay=0.0
        )
        self.reward_scaler = RunningRewardScaler(cfg.discount)
        self.clip = clip_schedule(
            cfg.ft_denoising_steps, cfg.clip_coef, cfg.clip_coef_base, cfg.clip_coef_rate
        )
        self._chains: list[Tensor] = []  # explore's chains, kept until ``improve``

    def network(self, t: int) -> nn.Module:
        """The denoiser of step ``t``: the fine-tuned copy for the last ``ft_denoising_steps``
        once fine-tuning began, else the (frozen) EMA copy."""
        return self.actor_ft if self.online and t < self.cfg.ft_denoising_steps else self.ema.model

    def log_probs(self, obs: Tensor, chains: Tensor) -> Tensor:
        """Log-probabilities ``[B, K, horizon, act_dim]`` of each fine-tuned step of ``chains``
        ``[B, K + 1, horizon, act_dim]`` under the current copy (std floored at
        ``min_logprob_std``)."""
        k = self.cfg.ft_denoising_steps
        b = len(chains)
        t = torch.arange(k - 1, -1, -1, device=self.device).repeat(b)
        x = chains[:, :-1].flatten(0, 1)
        cond = obs.repeat_interleave(k, dim=0)
        mean = self.mdp.mean(self.actor_ft(x, t, cond), x, t)
        std = self.mdp.std[t].clamp(min=self.cfg.min_logprob_std).view(-1, 1, 1)
        return denoising_log_prob(mean, std, chains[:, 1:].flatten(0, 1)).view(
            b, k, *chains.shape[2:]
        )

    # -- fine-tuning (the contract's OnlineAgent) -----------------------------------------
    def start_online(self, n_envs: int) -> None:
        """Fine-tuning starts from the EMA denoiser: it stays frozen for the early steps and a
        trainable copy of it runs the last ``ft_denoising_steps``."""
        self.actor_ft.load_state_dict(self.ema.model.state_dict())
        self.online = True

    @torch.no_grad()
    def explore(self, obs: np.ndarray) -> np.ndarray:
        """Stochastic chunks ``[n_envs, act_steps, act_dim]``; the chain is kept."""
        cond = self.obs_scale(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        unit, chain = self.sample(cond, explore=True, chain_steps=self.cfg.ft_denoising_steps)
        self._chains.append(chain)
        return self.to_env(unit[:, : self.cfg.act_steps]).cpu().numpy()

    def improve(self, rollout: Rollout) -> dict[str, Tensor]:
        """PPO on the iteration's decisions: GAE over decisions, then ``update_epochs`` passes of
        minibatches over (decision, denoising step) pairs, stopped early at ``target_kl``."""
        cfg = self.cfg
        chains = torch.stack(self._chains).flatten(0, 1)  # [S * N, K + 1, horizon, act_dim]
        self._chains = []
        obs = self.obs_scale(torch.as_tensor(rollout.obs, device=self.device)).flatten(0, 1)
        with torch.no_grad():
            values = self.critic(obs)
            old_logp = torch.cat(
                [
                    self.chunk_log_prob(self.log_probs(o, c))
                    for o, c in zip(
                        obs.split(cfg.logprob_batch), chains.split(cfg.logprob_batch), strict=True
                    )
                ]
            )
            advantages, returns = self.advantages(rollout, values)

        def step(idx: Tensor) -> dict[str, Tensor]:
            return self.ppo_step(
                obs[idx], chains[idx], old_logp[idx], advantages[idx], returns[idx]
            )

        stats = ppo_epochs(
            len(obs), cfg.ft_batch_size, cfg.update_epochs, cfg.target_kl, step, self.device
        )
        return {**stats, "explained_variance": explained_variance(values, returns)}

    def chunk_log_prob(self, logp: Tensor) -> Tensor:
        """``[B, K, horizon, act_dim]`` -> ``[B, K]``: clamped, averaged over the executed
        actions and the action dims (diffusion_ppo.py, ``reward_horizon = act_steps``)."""
        logp = logp.clamp(*LOGPROB_CLAMP)[:, :, : self.cfg.act_steps]
        return logp.mean(dim=(-1, -2))

    def advantages(self, rollout: Rollout, values: Tensor) -> tuple[Tensor, Tensor]:
        """GAE advantages and returns ``[S * N]`` from the (running-scaled) chunk rewards."""
        cfg = self.cfg
        next_obs = self.obs_scale(torch.as_tensor(rollout.next_obs, device=self.device))
        scaler = self.reward_scaler if cfg.reward_scale_running else None
        return rollout_advantages(
            rollout, values, self.critic(next_obs), scaler, cfg.discount, cfg.gae_lambda
        )

    def ppo_step(
        self, obs: Tensor, chains: Tensor, old_logp: Tensor, advantages: Tensor, returns: Tensor
    ) -> dict[str, Tensor]:
        """One minibatch step of the copy (policy loss) and the critic (value loss)."""
        cfg = self.cfg
        if cfg.norm_adv:
            advantages = normalized(advantages)
        new_logp = self.chunk_log_prob(self.log_probs(obs, chains))
        pg_loss, approx_kl, clipfrac = ppo_policy_loss(
            new_logp, old_logp, advantages, self.clip, cfg.gamma_denoising
        )
        v_loss = value_loss(self.critic(obs), returns)
        optimizers = (self.ft_optimizer, self.critic_optimizer)
        return minibatch_step(pg_loss, v_loss, cfg.vf_coef, optimizers, approx_kl, clipfrac)


# ---------------------------------------------------------------------------------- fidelity

FIDELITY_TASKS = ("hopper-medium-v2",)
FIDELITY = (
    Official("n_diffusion_steps", 20, PRETRAIN_CFG),
    Official("beta_schedule", "cosine", f"{OFFICIAL} model/diffusion/diffusion.py"),
    Official("horizon", 4, PRETRAIN_CFG),
    Official("act_steps", 4, FINETUNE_CFG),
    Official("hidden", 512, f"{PRETRAIN_CFG} (mlp_dims)"),
    Official("time_dim", 16, PRETRAIN_CFG),
    Official("batch_size", 128, PRETRAIN_CFG),
    Official("lr", 1e-3, PRETRAIN_CFG),
    Official("min_lr", 1e-4, PRETRAIN_CFG),
    Official("weight_decay", 1e-6, PRETRAIN_CFG),
    Official("ema_decay", 0.995, PRETRAIN_CFG),
    Official("denoised_clip", 1.0, PRETRAIN_CFG),
    Official("noise_clip", 3.0, f"{FINETUNE_CFG} (randn_clip_value)"),
    Official("ft_denoising_steps", 10, FINETUNE_CFG),
    Official("min_sampling_std", 0.1, FINETUNE_CFG),
    Official("min_logprob_std", 0.1, FINETUNE_CFG),
    Official("gamma_denoising", 0.99, FINETUNE_CFG),
    Official("clip_coef", 0.01, FINETUNE_CFG),
    Official("clip_coef_base", 0.01, FINETUNE_CFG),
    Official("clip_coef_rate", 3.0, FINETUNE_CFG),
    Official("discount", 0.99, FINETUNE_CFG),
    Official("gae_lambda", 0.95, FINETUNE_CFG),
    Official("reward_scale_running", True, FINETUNE_CFG),
    Official("ft_lr", 1e-4, FINETUNE_CFG),
    Official("critic_lr", 1e-3, FINETUNE_CFG),
    Official("critic_hidden", 256, FINETUNE_CFG),
    Official("rollout_steps", 500, f"{FINETUNE_CFG} (n_steps)"),
    Official("update_epochs", 5, FINETUNE_CFG),
    Official("ft_batch_size", 5000, f"{FINETUNE_CFG} (batch_size)"),
    Official("vf_coef", 0.5, FINETUNE_CFG),
    Official("target_kl", 1.0, FINETUNE_CFG),
    Official("norm_adv", True, f"{OFFICIAL} model/diffusion/diffusion_ppo.py"),
    Official("logprob_batch", 10000, f"{OFFICIAL} agent/finetune/train_ppo_agent.py"),
    Official(
        "observation and action scaling",
        "min-max to [-1, 1] from normalization.npz (the processed data, zero-reward episodes dropped)",
        f"{OFFICIAL} env/gym_utils/wrapper/mujoco_locomotion_lowdim.py",
        "the suite's samplers keep every episode; the extremes are the loaded dataset's",
        ours="min-max to [-1, 1] from the loaded dataset's extremes",
    ),
    Official(
        "EMA start and interval",
        "from epoch 10, every 5 epochs",
        f"{OFFICIAL} agent/pretrain/train_agent.py",
        "the harness counts steps: epochs converted with n_transitions / batch_size steps each",
        ours="ema_start = 10 epochs, ema_every = 5 epochs, in steps",
    ),
    Official(
        "evaluation protocol",
        "every 10 iterations, a deterministic iteration of 500 decisions in the 40 training envs",
        FINETUNE_CFG,
        "the suite evaluates every algorithm with bench.evaluate (fixed-seed episodes)",
        ours="online.eval_every env steps, eval.periodic_episodes fixed-seed episodes",
    ),
)
