"""Gaussian-PPO: the Gaussian-MLP policy baseline of DPPO (Ren et al., ICLR 2025,
arXiv:2409.00588, the policy-parameterization comparison).

Method: pre-train a Gaussian MLP policy (tanh mean, fixed std) by maximum likelihood on the
dataset's actions, then fine-tune it online with PPO (clipped ratio, GAE, a V(s) critic) with a
learned per-dimension std, from the same start as DPPO's diffusion policy.

Follows the official code irom-lab/dppo at commit 7b10df6: pre-training as
``cfg/gym/pretrain/hopper-medium-v2/pre_gaussian_mlp.yaml`` (MLP 3 x 256 with Mish, fixed std 0.1,
one-step chunks, AdamW 1e-4 with weight decay 1e-6, batches of 128, the negative log-likelihood
of ``model/common/gaussian.py``); fine-tuning with the training settings of
``cfg/gym/finetune/hopper-v2/ppo_gaussian_mlp.yaml`` (10 envs, 1000 decisions per env per
iteration, minibatches of 1000, 10 epochs, clip 0.1, actor 1e-4, critic 1e-3, GAE 0.99 / 0.95,
running reward scaling, approximate-KL stop at 1, value loss weight 0.5) and
``model/rl/gaussian_ppo.py`` (log-probs averaged over action dims and clamped to [-5, 2],
advantages normalized per minibatch, sampling noise clipped at 3 std); the critic and the PPO
machinery are the suite's shared :mod:`algorithms.common.ppo` (as DPPO's).

Departures and why:
- the official gym Gaussian-PPO config trains from scratch (``nopre``) with a separate learned
  log-variance head; the issue's baseline fine-tunes the pre-trained policy, so its std is the
  official pre-trained-Gaussian recipe's (``cfg/robomimic/finetune/*/ft_ppo_gaussian_mlp.yaml``:
  ``fixed_std=0.1, learn_fixed_std=True``, clamped to [0.01, 0.2]) and the network is the
  pre-trained one;
- the official pre-training keeps an EMA copy that fine-tuning never loads (``GaussianModel``
  reads ``checkpoint["model"]``): none is kept, and evaluations use the weights fine-tuning
  starts from;
- observations and actions are min-max scaled with the loaded dataset's extremes (as in our
  DPPO); actions are clipped into the action box;
- evaluation acts with the mean (the official samples with std 1e-4) through ``bench.evaluate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import (
    Checkpointable,
    DatasetStats,
    DataSpec,
    OnlineSpec,
    Rollout,
    TaskInfo,
)
from algorithms.common.defaults import Official, PaperDefaults, Settings
from algorithms.common.nets import Mish, mlp
from algorithms.common.policies import ActionBox
from algorithms.common.ppo import (
    LOGPROB_CLAMP,
    Critic,
    MinMax,
    RunningRewardScaler,
    clipped_surrogate,
    explained_variance,
    minibatch_step,
    normalized,
    ppo_epochs,
    rollout_advantages,
    value_loss,
)

OFFICIAL = "irom-lab/dppo@7b10df6"
PRETRAIN_CFG = f"{OFFICIAL} cfg/gym/pretrain/hopper-medium-v2/pre_gaussian_mlp.yaml"
FINETUNE_CFG = f"{OFFICIAL} cfg/gym/finetune/hopper-v2/ppo_gaussian_mlp.yaml"
STD_CFG = f"{OFFICIAL} cfg/robomimic/finetune/can/ft_ppo_gaussian_mlp.yaml"

# budget=paper: 500 pre-training epochs of batches of 128 over hopper-medium-v2 (7,812 an epoch).
PAPER_BUDGET = PaperDefaults(
    families={
        "default": Settings(
            f"{PRETRAIN_CFG} (n_epochs=500, batch_size=128, save_model_freq=100); "
            "40 evaluation episodes, as our DPPO",
            {"train_steps": 3_906_000, "eval_every": 781_200, "eval_episodes": 40},
        )
    }
)


@dataclass
class Config:
    """Paper defaults (the official hopper gym configs)."""

    # pre-training (maximum likelihood)
    hidden: int = 256  # width of the policy MLP's hidden layers
    depth: int = 3  # hidden layers of the policy MLP
    pretrain_std: float = 0.1  # the fixed std of the pre-trained policy (fixed_std)
    batch_size: int = 128  # transitions per pre-training update
    lr: float = 1e-4  # AdamW learning rate in pre-training (the schedule's min_lr is the same)
    weight_decay: float = 1e-6  # AdamW weight decay in pre-training
    # fine-tuning (PPO)
    std_min: float = 0.01  # the learned std's floor
    std_max: float = 0.2  # the learned std's ceiling
    noise_clip: float = 3.0  # sampled noise clipped to this many stds
    clip_coef: float = 0.1  # PPO clip coefficient
    discount: float = 0.99  # discount of values and returns
    gae_lambda: float = 0.95  # GAE's lambda
    reward_scale_running: bool = True  # divide rewards by the running std of discounted returns
    ft_lr: float = 1e-4  # AdamW learning rate of the policy (mean and std) in fine-tuning
    critic_lr: float = 1e-3  # AdamW learning rate of the critic V(s)
    critic_hidden: int = 256  # width of the critic's residual MLP
    rollout_steps: int = 1000  # decisions per environment in one iteration (n_steps)
    update_epochs: int = 10  # passes over an iteration's data
    ft_batch_size: int = 1000  # decisions per PPO minibatch
    vf_coef: float = 0.5  # weight of the value loss
    target_kl: float | None = 1.0  # stop the iteration's updates once approx. KL exceeds it
    norm_adv: bool = True  # normalize advantages within each minibatch


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` as given (no per-task defaults); the std range validated."""
    if not 0 < cfg.std_min <= cfg.pretrain_std <= cfg.std_max:
        raise ValueError(
            f"algo.std_min={cfg.std_min}, algo.pretrain_std={cfg.pretrain_std}, "
            f"algo.std_max={cfg.std_max} are not valid; valid: 0 < std_min <= pretrain_std <= "
            "std_max"
        )
    return cfg


class GaussianMLP(nn.Module):
    """``tanh(MLP(obs))``: the mean of the policy in [-1, 1]-scaled actions (Gaussian_MLP)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, depth: int):
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden, depth, activation=Mish, out_activation=nn.Tanh())

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs)


class LearnedStd(nn.Module):
    """A std per action dimension, learned in log space and clamped (learn_fixed_std)."""

    def __init__(self, act_dim: int, init: float, low: float, high: float):
        super().__init__()
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init)))
        self.low, self.high = low, high

    def forward(self) -> Tensor:
        return self.log_std.exp().clamp(self.low, self.high)


def nll_loss(mean: Tensor, std: float, actions: Tensor) -> Tensor:
    """The pre-training loss: the mean negative log-likelihood of the dataset's actions."""
    return -torch.distributions.Normal(mean, std).log_prob(actions).mean()


def policy_log_prob(mean: Tensor, std: Tensor, actions: Tensor) -> Tensor:
    """Per-decision log-probability averaged over action dims, clamped (gaussian_ppo.py)."""
    logp = torch.distributions.Normal(mean, std).log_prob(actions).mean(-1)
    return logp.clamp(*LOGPROB_CLAMP)


class Agent(Checkpointable):
    """Gaussian-PPO agent: pre-trains with ``update``, fine-tunes as an ``OnlineAgent``."""

    state_attrs = (
        "actor",
        "std",
        "optimizer",
        "critic",
        "ft_optimizer",
        "critic_optimizer",
        "reward_scaler",
        "step",
        "online",
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
        self.data_spec = DataSpec(kind="transitions", batch_size=cfg.batch_size)
        self.online_spec = OnlineSpec(act_steps=1, rollout_steps=cfg.rollout_steps)
        self.obs_scale = MinMax(stats.obs_quantiles[0], stats.obs_quantiles[-1], self.device)
        self.act_scale = MinMax(stats.act_quantiles[0], stats.act_quantiles[-1], self.device)
        self.box = ActionBox.of(info)
        self.actor = GaussianMLP(info.obs_dim, info.act_dim, cfg.hidden, cfg.depth).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.actor.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        # Fine-tuning: a learned std per action dim starting at the pre-training std, and V(s).
        self.std = LearnedStd(info.act_dim, cfg.pretrain_std, cfg.std_min, cfg.std_max).to(
            self.device
        )
        self.critic = Critic(info.obs_dim, cfg.critic_hidden).to(self.device)
        self.ft_optimizer = torch.optim.AdamW(
            [*self.actor.parameters(), *self.std.parameters()], lr=cfg.ft_lr, weight_decay=0.0
        )
        self.critic_optimizer = torch.optim.AdamW(
            self.critic.parameters(), lr=cfg.critic_lr, weight_decay=0.0
        )
        self.reward_scaler = RunningRewardScaler(cfg.discount)
        self.step = 0
        self.online = False  # whether fine-tuning began
        self._actions: list[Tensor] = []  # explore's actions ([-1, 1]-scale), kept for improve

    # -- pre-training ---------------------------------------------------------------------
    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One maximum-likelihood step of the policy with the fixed pre-training std."""
        mean = self.actor(self.obs_scale(batch["observations"]))
        loss = nll_loss(mean, self.cfg.pretrain_std, self.act_scale(batch["actions"]))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"nll_loss": loss.detach()}

    # -- acting ---------------------------------------------------------------------------
    def to_env(self, unit: Tensor) -> np.ndarray:
        return self.box.clamp(self.act_scale.inverse(unit)).cpu().numpy()

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """The policy's mean action."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return self.to_env(self.actor(self.obs_scale(obs_t)))

    def reset(self, done: np.ndarray | None = None) -> None:
        """The policy keeps no per-environment state."""

    # -- fine-tuning (the contract's OnlineAgent) -----------------------------------------
    def start_online(self, n_envs: int) -> None:
        """Fine-tuning starts from the pre-trained weights with std ``pretrain_std``."""
        self.online = True

    @torch.no_grad()
    def explore(self, obs: np.ndarray) -> np.ndarray:
        """Sampled actions ``[n_envs, 1, act_dim]`` (noise clipped at ``noise_clip`` stds)."""
        obs_t = self.obs_scale(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
        mean = self.actor(obs_t)
        noise = torch.randn_like(mean).clamp(-self.cfg.noise_clip, self.cfg.noise_clip)
        unit = mean + self.std() * noise
        self._actions.append(unit)
        return self.to_env(unit)[:, None]

    def improve(self, rollout: Rollout) -> dict[str, Tensor]:
        """PPO on the iteration's decisions: GAE, then ``update_epochs`` passes of minibatches,
        stopped early at ``target_kl``."""
        cfg = self.cfg
        actions = torch.stack(self._actions).flatten(0, 1)
        self._actions = []
        obs = self.obs_scale(torch.as_tensor(rollout.obs, device=self.device)).flatten(0, 1)
        with torch.no_grad():
            values = self.critic(obs)
            old_logp = policy_log_prob(self.actor(obs), self.std(), actions)
            next_obs = self.obs_scale(torch.as_tensor(rollout.next_obs, device=self.device))
            scaler = self.reward_scaler if cfg.reward_scale_running else None
            advantages, returns = rollout_advantages(
                rollout, values, self.critic(next_obs), scaler, cfg.discount, cfg.gae_lambda
            )

        def step(idx: Tensor) -> dict[str, Tensor]:
            return self.ppo_step(
                obs[idx], actions[idx], old_logp[idx], advantages[idx], returns[idx]
            )

        stats = ppo_epochs(
            len(obs), cfg.ft_batch_size, cfg.update_epochs, cfg.target_kl, step, self.device
        )
        std = self.std().mean().detach()
        return {**stats, "std": std, "explained_variance": explained_variance(values, returns)}

    def ppo_step(
        self, obs: Tensor, actions: Tensor, old_logp: Tensor, advantages: Tensor, returns: Tensor
    ) -> dict[str, Tensor]:
        """One minibatch step of the policy (clipped surrogate) and the critic (value loss)."""
        cfg = self.cfg
        if cfg.norm_adv:
            advantages = normalized(advantages)
        new_logp = policy_log_prob(self.actor(obs), self.std(), actions)
        pg_loss, approx_kl, clipfrac = clipped_surrogate(
            new_logp, old_logp, advantages, cfg.clip_coef
        )
        v_loss = value_loss(self.critic(obs), returns)
        optimizers = (self.ft_optimizer, self.critic_optimizer)
        return minibatch_step(pg_loss, v_loss, cfg.vf_coef, optimizers, approx_kl, clipfrac)


# ---------------------------------------------------------------------------------- fidelity

FIDELITY_TASKS = ("hopper-medium-v2",)
FIDELITY = (
    Official("hidden", 256, f"{PRETRAIN_CFG} (mlp_dims)"),
    Official("depth", 3, f"{PRETRAIN_CFG} (mlp_dims)"),
    Official("pretrain_std", 0.1, f"{PRETRAIN_CFG} (fixed_std)"),
    Official("batch_size", 128, PRETRAIN_CFG),
    Official("lr", 1e-4, PRETRAIN_CFG),
    Official("weight_decay", 1e-6, PRETRAIN_CFG),
    Official("std_min", 0.01, STD_CFG),
    Official("std_max", 0.2, STD_CFG),
    Official("noise_clip", 3.0, f"{FINETUNE_CFG} (randn_clip_value)"),
    Official("clip_coef", 0.1, f"{FINETUNE_CFG} (clip_ploss_coef)"),
    Official("discount", 0.99, FINETUNE_CFG),
    Official("gae_lambda", 0.95, FINETUNE_CFG),
    Official("reward_scale_running", True, FINETUNE_CFG),
    Official("ft_lr", 1e-4, f"{FINETUNE_CFG} (actor_lr)"),
    Official("critic_lr", 1e-3, FINETUNE_CFG),
    Official("critic_hidden", 256, FINETUNE_CFG),
    Official("rollout_steps", 1000, f"{FINETUNE_CFG} (n_steps)"),
    Official("update_epochs", 10, FINETUNE_CFG),
    Official("ft_batch_size", 1000, f"{FINETUNE_CFG} (batch_size)"),
    Official("vf_coef", 0.5, FINETUNE_CFG),
    Official("target_kl", 1.0, FINETUNE_CFG),
    Official("norm_adv", True, f"{OFFICIAL} model/rl/gaussian_ppo.py"),
    Official(
        "fine-tuned policy",
        "from scratch, MLP 3 x 512 ReLU with a learned log-variance head",
        FINETUNE_CFG,
        "the baseline fine-tunes the pre-trained policy (the official pre-trained recipe's std)",
        ours="the pre-trained MLP, a learned per-dimension std from 0.1 clamped to [0.01, 0.2]",
    ),
    Official(
        "pre-training EMA",
        "decay 0.995, not loaded by fine-tuning",
        f"{OFFICIAL} model/common/gaussian.py",
        "fine-tuning reads the raw weights, so the suite keeps no unused copy",
        ours="none",
    ),
)
