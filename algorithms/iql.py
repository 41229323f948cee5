"""IQL: Implicit Q-Learning (Kostrikov, Nair & Levine, ICLR 2022, arXiv:2110.06169).

Method: V(s) regresses an upper expectile of Q(s, a) over the dataset's actions, so it
approximates the best in-support value without ever querying an unseen action; Q(s, a) regresses
``r + discount * V(s')``. The policy is extracted by advantage-weighted regression: maximize
``exp(beta * (Q(s, a) - V(s)))``-weighted log-likelihood of the dataset actions (weights <= 100).
Differences from the official code (ikostrikov/implicit_q_learning) and why:
- V(s') for the TD target and the advantage for the actor use V before this step's V update (one
  step stale, as CORL's ``iql.py``): it saves a V forward pass per step;
- observations are normalized with the dataset statistics (as CORL), which the official code
  does not do; PyTorch's default initialization replaces Flax's orthogonal one;
- the Gaussian mean is mapped affinely from tanh onto ``[action_low, action_high]``.
Everything else follows the official code: twin Q with a Polyak target (tau 0.005), a Gaussian
policy whose mean is a tanh MLP and whose log-std is a state-independent parameter clipped to
[-5, 2], the deterministic mean at evaluation, Adam 3e-4 with a cosine decay of the actor's
learning rate to 0 over training, and the reward normalization of ``train_offline.py``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import DatasetStats, DataSpec, TaskInfo
from algorithms.common.critics import IQLCritic
from algorithms.common.nets import mlp
from algorithms.common.offline import cosine_decay, reward_transform, task_family

EXP_ADV_MAX = 100.0
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

# The paper's settings per task family: (expectile, beta, reward normalization). Source: the
# official configs/mujoco_config.py and configs/antmaze_config.py, and train_offline.py for the
# rewards. The paper reports no point-maze (maze2d) or toy setting: they take the locomotion
# expectile and beta with the rewards unchanged.
PAPER_HPARAMS: dict[str, tuple[float, float, str]] = {
    "locomotion": (0.7, 3.0, "returns"),
    "antmaze": (0.9, 10.0, "minus_one"),
    "maze": (0.7, 3.0, "none"),
    "other": (0.7, 3.0, "none"),
}


@dataclass
class Config:
    """Paper defaults; ``None`` means the paper's value for the task family (``PAPER_HPARAMS``).

    ``reward_norm``: ``auto`` follows the official ``train_offline.py`` (locomotion: rewards times
    ``1000 / (return_max - return_min)``; antmaze: ``reward - 1``; others unchanged), or force one
    of ``returns`` / ``minus_one`` / ``none``.
    """

    expectile: float | None = None
    beta: float | None = None
    discount: float = 0.99
    tau: float = 0.005
    lr: float = 3e-4
    batch_size: int = 256
    hidden: int = 256
    depth: int = 2
    max_steps: int = 1_000_000  # cosine schedule length; the harness sets it from train.steps
    reward_norm: str = "auto"


def resolve_config(cfg: Config, info: TaskInfo) -> Config:
    """``cfg`` with the paper's per-task values filled in where a field is ``None`` or ``auto``."""
    expectile, beta, reward_norm = PAPER_HPARAMS.get(task_family(info), PAPER_HPARAMS["other"])
    return dataclasses.replace(
        cfg,
        expectile=expectile if cfg.expectile is None else cfg.expectile,
        beta=beta if cfg.beta is None else cfg.beta,
        reward_norm=reward_norm if cfg.reward_norm == "auto" else cfg.reward_norm,
    )


class GaussianPolicy(nn.Module):
    """Gaussian policy: tanh-MLP mean in the action box, state-independent clipped log-std."""

    def __init__(self, info: TaskInfo, hidden: int, depth: int):
        super().__init__()
        self.net = mlp(info.obs_dim, info.act_dim, hidden, depth, out_activation=nn.Tanh())
        self.log_std = nn.Parameter(torch.zeros(info.act_dim))
        self.act_mid = (info.action_high + info.action_low) / 2
        self.act_half = (info.action_high - info.action_low) / 2

    def forward(self, obs: Tensor) -> Tensor:
        """The mean action (the deterministic action used at evaluation)."""
        return self.act_mid + self.act_half * self.net(obs)

    def log_prob(self, obs: Tensor, act: Tensor) -> Tensor:
        """Diagonal-Gaussian log-density of ``act`` [B]."""
        log_std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        z = (act - self(obs)) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std).sum(-1) - 0.5 * math.log(2 * math.pi) * act.shape[-1]


def awr_loss(log_prob: Tensor, adv: Tensor, beta: float) -> Tensor:
    """Advantage-weighted regression: ``-mean(min(exp(beta * A), 100) * log pi(a|s))``."""
    weight = torch.exp(beta * adv).clamp(max=EXP_ADV_MAX)
    return -(weight * log_prob).mean()


class Agent:
    """IQL agent following :mod:`algorithms.common.contract`."""

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
        self.critic = IQLCritic(
            info.obs_dim,
            info.act_dim,
            cfg.hidden,
            cfg.depth,
            expectile=cfg.expectile,
            discount=cfg.discount,
            tau=cfg.tau,
            lr=cfg.lr,
        ).to(self.device)
        self.actor = GaussianPolicy(info, cfg.hidden, cfg.depth)
        self.actor.to(self.device)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr, fused=True)
        self.actor_schedule = torch.optim.lr_scheduler.LambdaLR(
            self.actor_optimizer, cosine_decay(cfg.max_steps)
        )
        self.step = 0

    def normalize(self, obs: Tensor) -> Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One step of V, Q (with their target) and the actor on a batch of transitions."""
        obs = self.normalize(batch["observations"])
        next_obs = self.normalize(batch["next_observations"])
        reward = self.reward_scale * batch["rewards"] + self.reward_shift
        act = batch["actions"]
        info, adv = self.critic.update_with_advantage(
            obs, act, reward, next_obs, batch["terminals"]
        )

        actor_loss = awr_loss(self.actor.log_prob(obs, act), adv, self.cfg.beta)
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        self.actor_schedule.step()
        self.step += 1
        return {**info, "actor_loss": actor_loss.detach(), "adv_mean": adv.mean()}

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic (mean) actions ``[n_envs, act_dim]``, as the official evaluation."""
        self.actor.eval()
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        action = self.actor(self.normalize(obs_t)).clamp(
            self.info.action_low, self.info.action_high
        )
        self.actor.train()
        return action.cpu().numpy()

    def reset(self, done: np.ndarray | None = None) -> None:
        """IQL keeps no per-environment state."""

    def state_dict(self) -> dict:
        return {
            "critic": self.critic.state_dict(),
            "actor": self.actor.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "actor_schedule": self.actor_schedule.state_dict(),
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        self.critic.load_state_dict(state["critic"])
        self.actor.load_state_dict(state["actor"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.actor_schedule.load_state_dict(state["actor_schedule"])
        self.step = state["step"]
