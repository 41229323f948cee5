"""Independent multi-agent TD3+BC (MA-TD3+BC): TD3+BC run by every agent on its own observations,
actions and rewards.

Paper: the MA-TD3+BC baseline of OMAR (Pan et al., ICML 2022, Sec. 5) and of MADiff's MPE table;
TD3+BC itself: Fujimoto & Gu, NeurIPS 2021. Method: per agent, twin critics ``Q_i(o_i, a_i)``
trained by TD3 (clipped target-policy noise, delayed actor and target updates) on the agent's
reward, and an actor maximizing ``lambda * Q_i(o_i, pi_i(o_i)) - (pi_i(o_i) - a_i)^2`` with
``lambda = alpha / mean|Q_i|``; agents act on their own observations (decentralized).
Official code followed: OMAR's ``algorithms/maddpg.py`` (``MATD3.update``: per-agent critics on
the agent's own observation and action, ``1e-3 * pi^2`` actor regularizer, gradient norms clipped
to 0.5) with its MPE settings from ``main.py`` (:data:`PAPER`: 2x64 networks, Adam 0.01, batch
1024, discount 0.95, Polyak 0.01), and sfujim/TD3_BC for the TD3+BC terms (alpha 2.5, target
noise 0.2 clipped at 0.5, actor every 2 critic steps).
Departures: OMAR's ``update`` takes no target-policy noise and updates the actor every step (its
TD3 flavour); we keep TD3+BC's noise and delay, the method the baseline is named after; its
networks' input BatchNorm is left out (observations are normalized with the pooled dataset
statistics instead).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import Checkpointable, DatasetStats, DataSpec, TaskInfo
from algorithms.common.critics import TwinQ, twin_q_loss
from algorithms.common.defaults import PaperDefaults, Settings, fill
from algorithms.common.nets import ObsNormalizer, RandomStream, gradient_step, soft_update
from algorithms.common.policies import TanhPolicy

OMAR = "ling-pan/OMAR main.py (MPE settings) and algorithms/maddpg.py"
PAPER = PaperDefaults(
    families={
        "default": Settings("sfujim/TD3_BC main.py (single-agent defaults)", {}),
        "multi-agent": Settings(
            OMAR,
            {
                "hidden": 64,
                "actor_lr": 0.01,
                "critic_lr": 0.01,
                "batch_size": 1024,
                "discount": 0.95,
                "tau": 0.01,
            },
        ),
    }
)


@dataclass
class Config:
    """TD3+BC's terms (Fujimoto & Gu 2021); network and optimizer settings from :data:`PAPER`."""

    alpha: float = 2.5  # BC trade-off: the Q term is weighted by alpha / mean|Q|
    policy_noise: float = 0.2  # std of the target-policy noise, in action half-widths
    noise_clip: float = 0.5  # clip of that noise, in action half-widths
    policy_freq: int = 2  # actor and target updates every this many critic updates
    action_penalty: float = 1e-3  # weight of OMAR's mean(pi^2) actor regularizer
    max_grad_norm: float = 0.5  # gradient-norm clip of actors and critics (OMAR)
    discount: float | None = None  # discount of the TD target
    tau: float | None = None  # Polyak rate of the targets
    actor_lr: float | None = None  # Adam learning rate of the actors
    critic_lr: float | None = None  # Adam learning rate of the critics
    batch_size: int | None = None  # joint transitions per update
    hidden: int | None = None  # width of the actors' and critics' hidden layers
    depth: int = 2  # hidden layers of the actor and critic MLPs


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with :data:`PAPER`'s values filled in; multi-agent tasks only."""
    if info.n_agents < 2:
        raise ValueError(f"ma_td3bc needs a multi-agent task; {info.task_id} has one agent")
    return fill(cfg, PAPER, info)


def td3bc_actor_loss(q: Tensor, pi: Tensor, act: Tensor, alpha: float, penalty: float) -> Tensor:
    """``-lambda * mean(Q) + MSE(pi, a) + penalty * mean(pi^2)``, ``lambda = alpha / mean|Q|``."""
    lmbda = alpha / q.abs().mean().detach()
    return -lmbda * q.mean() + (pi - act).square().mean() + penalty * pi.square().mean()


class Agent(Checkpointable):
    """MA-TD3+BC following :mod:`algorithms.common.contract` (multi-agent)."""

    state_attrs = (
        "actors",
        "critics",
        "actor_targets",
        "critic_targets",
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
        n = info.n_agents
        self.actors = nn.ModuleList(TanhPolicy(info, cfg.hidden, cfg.depth) for _ in range(n))
        self.critics = nn.ModuleList(
            TwinQ(info.obs_dim, info.act_dim, cfg.hidden, cfg.depth) for _ in range(n)
        )
        self.actors.to(self.device)
        self.critics.to(self.device)
        self.actor_targets = copy.deepcopy(self.actors).requires_grad_(False)
        self.critic_targets = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_params = list(self.actors.parameters())
        self.actor_optimizer = torch.optim.Adam(self.actor_params, lr=cfg.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critics.parameters(), lr=cfg.critic_lr)
        half = self.actors[0].box.half
        self.noise_std, self.noise_clip = cfg.policy_noise * half, cfg.noise_clip * half
        self.noise = RandomStream(self.device)
        self.last_actor_loss = torch.zeros((), device=self.device)
        self.step = 0

    @torch.no_grad()
    def td_targets(self, next_obs: Tensor, rewards: Tensor, terminals: Tensor) -> Tensor:
        """Per agent ``r_i + discount (1 - done) min Q_i'(o_i', pi_i'(o_i') + noise)``: ``[B, A]``."""
        out = []
        for i, (actor, critic) in enumerate(
            zip(self.actor_targets, self.critic_targets, strict=True)
        ):
            mean = actor(next_obs[:, i])
            noise = torch.randn(mean.shape, generator=self.noise.generator, device=self.device)
            act = actor.box.clamp(
                mean + (noise * self.noise_std).clamp(-self.noise_clip, self.noise_clip)
            )
            out.append(critic.min(next_obs[:, i], act))
        return rewards + self.cfg.discount * (1.0 - terminals[:, None]) * torch.stack(out, dim=1)

    def critic_loss(self, obs: Tensor, act: Tensor, target: Tensor) -> Tensor:
        """Sum over agents of the twin critics' TD losses."""
        losses = [
            twin_q_loss(*critic(obs[:, i], act[:, i]), target[:, i])
            for i, critic in enumerate(self.critics)
        ]
        return torch.stack(losses).sum()

    def actor_loss(self, obs: Tensor, act: Tensor) -> Tensor:
        """Sum over agents of :func:`td3bc_actor_loss`."""
        losses = []
        for i, (actor, critic) in enumerate(zip(self.actors, self.critics, strict=True)):
            pi = actor(obs[:, i])
            q = critic.first(obs[:, i], pi)
            losses.append(
                td3bc_actor_loss(q, pi, act[:, i], self.cfg.alpha, self.cfg.action_penalty)
            )
        return torch.stack(losses).sum()

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One critic step for every agent; every ``policy_freq`` steps actors and targets too."""
        cfg = self.cfg
        self.step += 1
        obs = self.normalize(batch["observations"])
        next_obs = self.normalize(batch["next_observations"])
        act = batch["actions"]
        target = self.td_targets(next_obs, batch["rewards"], batch["terminals"])
        critic_loss = self.critic_loss(obs, act, target)
        gradient_step(
            self.critic_optimizer, critic_loss, list(self.critics.parameters()), cfg.max_grad_norm
        )
        if self.step % cfg.policy_freq == 0:
            loss = self.actor_loss(obs, act)
            gradient_step(self.actor_optimizer, loss, self.actor_params, cfg.max_grad_norm)
            self.last_actor_loss = loss.detach()
            soft_update(self.critic_targets, self.critics, cfg.tau)
            soft_update(self.actor_targets, self.actors, cfg.tau)
        return {"critic_loss": critic_loss.detach(), "actor_loss": self.last_actor_loss}

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[n_envs, n_agents, act_dim]``, each agent from its own observation."""
        x = self.normalize.from_numpy(obs)
        acts = [actor.box.clamp(actor(x[:, i])) for i, actor in enumerate(self.actors)]
        return torch.stack(acts, dim=1).cpu().numpy()

    def reset(self, done: np.ndarray | None = None) -> None:
        """MA-TD3+BC keeps no per-environment state."""
