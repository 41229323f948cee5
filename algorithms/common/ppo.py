"""PPO machinery shared by the online fine-tuning agents (DPPO and the Gaussian-policy baseline),
following irom-lab/dppo (``agent/finetune/train_ppo_agent.py``, ``util/reward_scaling.py``,
``model/common/mlp.py``, ``model/common/critic.py``, ``model/rl/gaussian_ppo.py``).

* :func:`rollout_advantages` (:func:`gae`): advantages over the decisions of a
  :class:`~algorithms.common.contract.Rollout`;
* :class:`RunningRewardScaler`: rewards divided by the running std of the discounted return;
* :func:`clipped_surrogate`, :func:`value_loss`: the PPO losses; :data:`LOGPROB_CLAMP`;
* :func:`ppo_epochs`: epochs of shuffled minibatches with the approximate-KL stop;
* :class:`Critic`: the official residual Mish V(s); :func:`residual_mlp`;
* :class:`MinMax`: the official min-max scaling onto [-1, 1]; :func:`warmup_cosine`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import Rollout
from algorithms.common.nets import Mish

LOGPROB_CLAMP = (-5.0, 2.0)  # log-probabilities are clamped to this before the ratio
NORM_EPS = 1e-6  # the official min-max scaling's guard


class PreActivationBlock(nn.Module):
    """``x + W2 act(W1 act(x))`` (the official TwoLayerPreActivationResNetLinear)."""

    def __init__(self, dim: int, activation: type[nn.Module]):
        super().__init__()
        self.l1, self.l2, self.act = nn.Linear(dim, dim), nn.Linear(dim, dim), activation()

    def forward(self, x: Tensor) -> Tensor:
        return x + self.l2(self.act(self.l1(self.act(x))))


def residual_mlp(
    in_dim: int, out_dim: int, hidden: int, activation: type[nn.Module]
) -> nn.Sequential:
    """The official ResidualMLP for ``mlp_dims=[h, h, h]``: Linear, one block, Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        PreActivationBlock(hidden, activation),
        nn.Linear(hidden, out_dim),
    )


class Critic(nn.Module):
    """V(s): the official CriticObs with ``mlp_dims=[h, h, h]``, Mish, residual."""

    def __init__(self, obs_dim: int, hidden: int):
        super().__init__()
        self.net = residual_mlp(obs_dim, 1, hidden, Mish)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)


class MinMax:
    """Affine map of each dimension's dataset range onto [-1, 1] (the official normalization)."""

    def __init__(self, low: np.ndarray, high: np.ndarray, device: torch.device):
        self.low = torch.as_tensor(low, dtype=torch.float32, device=device)
        high = torch.as_tensor(high, dtype=torch.float32, device=device)
        self.span = high - self.low + NORM_EPS

    def __call__(self, x: Tensor) -> Tensor:
        return 2 * ((x - self.low) / self.span - 0.5)

    def inverse(self, unit: Tensor) -> Tensor:
        return (unit + 1) / 2 * self.span + self.low


def warmup_cosine(lr: float, min_lr: float, warmup: int, total: int) -> Callable[[int], float]:
    """LR multiplier for ``LambdaLR``: linear from ``min_lr`` to ``lr`` over ``warmup`` steps,
    then a cosine to ``min_lr`` at step ``total`` (the official CosineAnnealingWarmupRestarts,
    one cycle)."""
    span = max(total - warmup, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (min_lr + (lr - min_lr) * step / warmup) / lr
        progress = min(step - warmup, span) / span
        return (min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))) / lr

    return factor


def gae(
    rewards: Tensor,
    values: Tensor,
    next_value: Tensor,
    terminated: Tensor,
    discount: float,
    lam: float,
) -> Tensor:
    """Advantages ``[S, N]`` by GAE over decisions, as the official: ``values[s + 1]`` bootstraps
    every non-terminated step (after a time limit too: then it is the next episode's first)."""
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for s in reversed(range(len(rewards))):
        nxt = next_value if s == len(rewards) - 1 else values[s + 1]
        live = 1.0 - terminated[s]
        delta = rewards[s] + discount * nxt * live - values[s]
        advantages[s] = last = delta + discount * lam * live * last
    return advantages


class RunningRewardScaler:
    """Rewards divided by the running std of the discounted return (util/reward_scaling.py: the
    returns run forward per env, restarting at episode starts; the result clipped to +-10)."""

    def __init__(self, discount: float, clip: float = 10.0, eps: float = 1e-8):
        self.discount, self.clip, self.eps = discount, clip, eps
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4
        self.ret = np.zeros(0)

    def __call__(self, rewards: np.ndarray, firsts: np.ndarray) -> np.ndarray:
        """Scale ``rewards`` ``[S, N]`` (``firsts`` ``[S, N]``) after updating the statistics."""
        if len(self.ret) != rewards.shape[1]:
            self.ret = np.zeros(rewards.shape[1])
        rets = np.zeros_like(rewards, dtype=np.float64)
        for s in range(len(rewards)):
            self.ret = rets[s] = rewards[s] + (1 - firsts[s]) * self.discount * self.ret
        self._update(rets.reshape(-1))
        return np.clip(rewards / np.sqrt(self.var + self.eps), -self.clip, self.clip)

    def _update(self, x: np.ndarray) -> None:
        mean, var, n = x.mean(), x.var(), len(x)
        delta, total = mean - self.mean, self.count + n
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / (total - 1), total

    def state_dict(self) -> dict:
        return {"mean": self.mean, "var": self.var, "count": self.count, "ret": self.ret.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]
        self.ret = np.array(state["ret"])


def normalized(advantages: Tensor) -> Tensor:
    """Advantages standardized within the minibatch (the official ``norm_adv``)."""
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)


def clipped_surrogate(
    new_logp: Tensor, old_logp: Tensor, advantages: Tensor, clip: Tensor | float
) -> tuple[Tensor, Tensor, Tensor]:
    """PPO's clipped objective (to minimize), the approximate KL (Schulman's k3) and the share
    of clipped ratios; ``advantages`` and ``clip`` broadcast against the log-probabilities."""
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    surrogate = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip, 1 + clip))
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clipfrac = ((ratio - 1).abs() > clip).float().mean()
    return surrogate.mean(), approx_kl, clipfrac


def value_loss(values: Tensor, returns: Tensor) -> Tensor:
    """Half the mean squared error of V(s) against the GAE returns."""
    return 0.5 * ((values - returns) ** 2).mean()


def minibatch_step(
    pg_loss: Tensor,
    v_loss: Tensor,
    vf_coef: float,
    optimizers: Sequence[torch.optim.Optimizer],
    approx_kl: Tensor,
    clipfrac: Tensor,
) -> dict[str, Tensor]:
    """One gradient step of ``pg_loss + vf_coef * v_loss`` with every optimizer (the policy's and
    the critic's, as the official's one backward pass), and the step's detached statistics."""
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    (pg_loss + vf_coef * v_loss).backward()
    for optimizer in optimizers:
        optimizer.step()
    stats = {"pg_loss": pg_loss.detach(), "v_loss": v_loss.detach()}
    return {**stats, "approx_kl": approx_kl, "clipfrac": clipfrac}


def explained_variance(values: Tensor, returns: Tensor) -> Tensor:
    """``1 - Var(returns - values) / Var(returns)``: how much of the returns V(s) explains."""
    var = returns.var(unbiased=False).clamp(min=1e-12)
    return (1 - (returns - values).var(unbiased=False) / var).detach()


def ppo_epochs(
    total: int,
    batch_size: int,
    epochs: int,
    target_kl: float | None,
    step: Callable[[Tensor], dict[str, Tensor]],
    device: torch.device,
) -> dict[str, Tensor]:
    """``epochs`` passes over ``total`` samples in shuffled minibatches of ``batch_size`` (the
    remainder dropped, at least one); ``step(indices)`` takes one gradient step and returns its
    stats with ``approx_kl``; stops once that exceeds ``target_kl`` (one host sync a step).
    Returns the last step's stats."""
    n_batches = max(1, total // batch_size)
    stats: dict[str, Tensor] = {}
    for _ in range(epochs):
        order = torch.randperm(total, device=device)
        for b in range(n_batches):
            stats = step(order[b * batch_size : (b + 1) * batch_size])
            if target_kl is not None and stats["approx_kl"] > target_kl:
                return stats
    return stats


def rollout_advantages(
    rollout: Rollout,
    values: Tensor,
    next_value: Tensor,
    scaler: RunningRewardScaler | None,
    discount: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """GAE advantages and returns ``[S * N]`` of a rollout's decisions (rewards first divided by
    the running scale when ``scaler`` is given); ``values`` ``[S * N]``, ``next_value`` ``[N]``."""
    rewards = rollout.rewards.astype(np.float64)
    if scaler is not None:
        rewards = scaler(rewards, rollout.firsts.astype(np.float64))
    adv = gae(
        torch.as_tensor(rewards, dtype=torch.float32, device=values.device),
        values.view(rollout.rewards.shape),
        next_value,
        torch.as_tensor(rollout.terminated, dtype=torch.float32, device=values.device),
        discount,
        lam,
    ).flatten()
    return adv, adv + values
