"""Behaviour cloning: a deterministic MLP policy regressed onto the dataset's actions.

Paper: the standard offline-RL baseline (e.g. Fujimoto & Gu 2021, "A Minimalist Approach to
Offline Reinforcement Learning", and CORL's ``any_percent_bc.py`` with ``frac=1``).
Method: normalize observations with the dataset statistics, map them through a 2x256 ReLU MLP
with a tanh-squashed output scaled into the action box, and minimize the MSE to the dataset
action. No value function, no reward: the baseline every offline-RL method must beat.
Differences from CORL: none in the method; the tanh output is mapped affinely onto
``[action_low, action_high]`` instead of multiplied by ``max_action``, so asymmetric boxes work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from algorithms.common.contract import Checkpointable, DatasetStats, DataSpec, TaskInfo
from algorithms.common.defaults import PaperDefaults, Settings, fill
from algorithms.common.nets import ObsNormalizer, gradient_step
from algorithms.common.policies import TanhPolicy, act_deterministic

# BC has one setting for every task: the Config's defaults are CORL's.
PAPER = PaperDefaults(
    families={"default": Settings("CORL any_percent_bc.py (frac=1): every task alike", {})}
)


@dataclass
class Config:
    """CORL ``any_percent_bc.py`` defaults (Adam 3e-4, batch 256, 2x256 ReLU)."""

    hidden: int = 256  # width of the policy MLP's hidden layers
    depth: int = 2  # hidden layers of the policy MLP
    lr: float = 3e-4  # Adam learning rate
    batch_size: int = 256  # transitions per update


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with the paper's values filled in (BC has no per-task ones)."""
    return fill(cfg, PAPER, info)


def bc_loss(actor: TanhPolicy, obs: Tensor, act: Tensor) -> Tensor:
    """Mean squared error between the policy's actions and the dataset's."""
    return (actor(obs) - act).square().mean()


class Agent(Checkpointable):
    """BC agent following :mod:`algorithms.common.contract`."""

    state_attrs = ("actor", "optimizer", "step")

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
        self.normalize = ObsNormalizer(stats.obs_mean, stats.obs_std, self.device)
        self.actor = TanhPolicy(info, cfg.hidden, cfg.depth).to(self.device)
        self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr, fused=True)
        self.step = 0

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One Adam step on :func:`bc_loss`."""
        loss = bc_loss(self.actor, self.normalize(batch["observations"]), batch["actions"])
        gradient_step(self.optimizer, loss)
        self.step += 1
        return {"actor_loss": loss.detach()}

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[n_envs, act_dim]`` for observations ``[n_envs, obs_dim]``."""
        return act_deterministic(self.actor, self.normalize, obs)

    def reset(self, done: np.ndarray | None = None) -> None:
        """BC keeps no per-environment state."""
