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
learning rate to 0 over training, and the reward normalization of ``train_offline.py``; the
per-family expectile, beta and reward normalization are :data:`PAPER`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import Checkpointable, DatasetStats, DataSpec, TaskInfo
from algorithms.common.critics import IQLCritic
from algorithms.common.defaults import Official, PaperDefaults, Settings, check_choice, fill
from algorithms.common.nets import ObsNormalizer, gradient_step
from algorithms.common.offline import REWARD_NORMS, cosine_decay, reward_transform
from algorithms.common.policies import TanhPolicy, act_deterministic

EXP_ADV_MAX = 100.0
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

PAPER = PaperDefaults(
    families={
        "default": Settings(
            "no IQL setting (point mazes, toys): locomotion's expectile and beta, rewards "
            "unchanged",
            {"expectile": 0.7, "beta": 3.0, "reward_norm": "none"},
        ),
        "locomotion": Settings(
            "ikostrikov/implicit_q_learning configs/mujoco_config.py; train_offline.py rewards",
            {"expectile": 0.7, "beta": 3.0, "reward_norm": "returns"},
        ),
        "antmaze": Settings(
            "ikostrikov/implicit_q_learning configs/antmaze_config.py; train_offline.py rewards",
            {"expectile": 0.9, "beta": 10.0, "reward_norm": "minus_one"},
        ),
    }
)


# budget=paper: train_offline.py's flags; antmaze as the README runs it.
PAPER_BUDGET = PaperDefaults(
    families={
        "default": Settings(
            "ikostrikov/implicit_q_learning train_offline.py (max_steps, eval_interval, "
            "eval_episodes)",
            {"train_steps": 1_000_000, "eval_every": 5000, "eval_episodes": 10},
        ),
        "antmaze": Settings(
            "ikostrikov/implicit_q_learning README.md (--eval_episodes=100 --eval_interval=100000)",
            {"train_steps": 1_000_000, "eval_every": 100_000, "eval_episodes": 100},
        ),
    }
)


@dataclass
class Config:
    """Paper defaults; ``None`` takes the paper's value for the task family (:data:`PAPER`)."""

    expectile: float | None = None  # expectile of Q that V regresses
    beta: float | None = None  # inverse temperature of the advantage weights exp(beta * A)
    discount: float = 0.99  # discount of the TD target
    tau: float = 0.005  # Polyak rate of the target twin Q
    lr: float = 3e-4  # Adam learning rate of V, Q and the actor (the actor's decays to 0)
    batch_size: int = 256  # transitions per update
    hidden: int = 256  # width of every MLP's hidden layers
    depth: int = 2  # hidden layers of every MLP
    reward_norm: str | None = None  # reward transform: returns, minus_one, cql_antmaze or none


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with the paper's per-family values filled in; the reward transform validated."""
    cfg = fill(cfg, PAPER, info)
    check_choice("reward_norm", cfg.reward_norm, REWARD_NORMS)
    return cfg


class GaussianPolicy(TanhPolicy):
    """Gaussian policy: the tanh-MLP mean in the action box, a state-independent clipped log-std."""

    def __init__(self, info: TaskInfo, hidden: int, depth: int):
        super().__init__(info, hidden, depth)
        self.log_std = nn.Parameter(torch.zeros(info.act_dim))

    def log_prob(self, obs: Tensor, act: Tensor) -> Tensor:
        """Diagonal-Gaussian log-density of ``act`` [B]."""
        log_std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        z = (act - self(obs)) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std).sum(-1) - 0.5 * math.log(2 * math.pi) * act.shape[-1]


def awr_loss(log_prob: Tensor, adv: Tensor, beta: float) -> Tensor:
    """Advantage-weighted regression: ``-mean(min(exp(beta * A), 100) * log pi(a|s))``."""
    weight = torch.exp(beta * adv).clamp(max=EXP_ADV_MAX)
    return -(weight * log_prob).mean()


class Agent(Checkpointable):
    """IQL agent following :mod:`algorithms.common.contract`."""

    # The critic's state holds its target twin Q and its optimizer (IQLCritic trains itself).
    state_attrs = ("critic", "actor", "actor_optimizer", "actor_schedule", "step")

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
            self.actor_optimizer, cosine_decay(train_steps)
        )
        self.step = 0

    def _update_actor(self, obs: Tensor, act: Tensor, adv: Tensor) -> Tensor:
        """One step of the actor on :func:`awr_loss`, then of its learning-rate decay."""
        loss = awr_loss(self.actor.log_prob(obs, act), adv, self.cfg.beta)
        gradient_step(self.actor_optimizer, loss)
        self.actor_schedule.step()
        return loss

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One step of V and Q (with their target; :class:`IQLCritic`), then of the actor on the
        advantages the critic read before its step."""
        obs = self.normalize(batch["observations"])
        next_obs = self.normalize(batch["next_observations"])
        reward = self.reward_scale * batch["rewards"] + self.reward_shift
        act = batch["actions"]
        info, adv = self.critic.update_with_advantage(
            obs, act, reward, next_obs, batch["terminals"]
        )
        actor_loss = self._update_actor(obs, act, adv)
        self.step += 1
        return {**info, "actor_loss": actor_loss.detach(), "adv_mean": adv.mean()}

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic (mean) actions ``[n_envs, act_dim]``, as the official evaluation."""
        return act_deterministic(self.actor, self.normalize, obs)

    def reset(self, done: np.ndarray | None = None) -> None:
        """IQL keeps no per-environment state."""


# ---------------------------------------------------------------------------------- fidelity

REPO = "ikostrikov/implicit_q_learning"
MUJOCO = f"{REPO} configs/mujoco_config.py"
FIDELITY_TASKS = ("hopper-medium-v2",)
FIDELITY = (
    Official("expectile", 0.7, MUJOCO),
    Official("beta", 3.0, f"{MUJOCO} (temperature)"),
    Official("discount", 0.99, MUJOCO),
    Official("tau", 0.005, MUJOCO),
    Official("lr", 3e-4, f"{MUJOCO} (actor_lr, value_lr, critic_lr)"),
    Official("batch_size", 256, f"{REPO} train_offline.py"),
    Official("hidden", 256, f"{MUJOCO} (hidden_dims)"),
    Official("depth", 2, f"{MUJOCO} (hidden_dims)"),
    Official("reward_norm", "returns", f"{REPO} train_offline.py (normalize)"),
    Official(
        "value used by Q and the actor",
        "V after this step's V update",
        f"{REPO} learner.py (_update_jit)",
        "one V forward pass fewer per step (as CORL's iql.py)",
        ours="V before this step's V update (one step stale)",
    ),
    Official(
        "actor learning-rate schedule",
        "cosine decay to 0 over the run (max_steps); V and Q constant",
        f"{REPO} learner.py (opt_decay_schedule='cosine')",
    ),
    Official(
        "policy and actor loss",
        "Gaussian, tanh mean, state-independent log-std clipped to [-5, 2]; weights exp(beta A) "
        "clipped at 100",
        f"{REPO} policy.py, actor.py",
    ),
    Official(
        "observation normalization",
        "none",
        f"{REPO} train_offline.py",
        "as CORL's iql.py: z-scores keep the networks' inputs in range on every task",
        ours="z-scores with the dataset's mean and std",
    ),
    Official(
        "network initialization",
        "orthogonal (Flax, default_init)",
        f"{REPO} common.py",
        "every network of the suite starts from PyTorch's default initialization",
        ours="PyTorch defaults",
    ),
    Official("evaluation actions", "the policy's mean (temperature 0)", f"{REPO} evaluation.py"),
)
