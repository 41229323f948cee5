"""Behaviour cloning: a deterministic MLP policy regressed onto the dataset's actions.

Paper: the standard offline-RL baseline (e.g. Fujimoto & Gu 2021, "A Minimalist Approach to
Offline Reinforcement Learning", and CORL's ``any_percent_bc.py`` with ``frac=1``).
Method: normalize observations with the dataset statistics, map them through a 2x256 ReLU MLP
with a tanh-squashed output scaled into the action box, and minimize the MSE to the dataset
action. No value function, no reward: the baseline every offline-RL method must beat.
Differences from CORL: none in the method; the tanh output is mapped affinely onto
``[action_low, action_high]`` instead of multiplied by ``max_action``, so asymmetric boxes work;
observations are divided by ``max(std, 1e-3)``, the suite's dataset statistics that every
algorithm shares, where CORL divides by ``std + 1e-3`` (divisors within 1e-3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from algorithms.common.contract import Checkpointable, DatasetStats, DataSpec, TaskInfo
from algorithms.common.defaults import Official, PaperDefaults, Settings, fill
from algorithms.common.nets import ObsNormalizer, gradient_step
from algorithms.common.policies import TanhPolicy, act_deterministic

CORL = "tinkoff-ai/CORL algorithms/offline/any_percent_bc.py"
# BC has one setting for every task: the Config's defaults are CORL's.
PAPER = PaperDefaults(
    families={"default": Settings("CORL any_percent_bc.py (frac=1): every task alike", {})}
)


# budget=paper: CORL's BC configs, every task alike.
PAPER_BUDGET = PaperDefaults(
    families={
        "default": Settings(
            f"{CORL} (max_timesteps, eval_freq, n_episodes)",
            {"train_steps": 1_000_000, "eval_every": 5000, "eval_episodes": 10},
        )
    }
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


# ---------------------------------------------------------------------------------- fidelity

HOPPER = "tinkoff-ai/CORL configs/offline/bc/hopper/medium_v2.yaml"
FIDELITY_TASKS = ("hopper-medium-v2",)
FIDELITY = (
    Official("hidden", 256, f"{CORL} (Actor)"),
    Official("depth", 2, f"{CORL} (Actor)"),
    Official("lr", 3e-4, f"{CORL} (actor_optimizer)"),
    Official("batch_size", 256, HOPPER),
    Official("training data", "every transition (frac=1.0)", HOPPER),
    Official("policy and loss", "tanh MLP, ReLU, MSE to the dataset action", CORL),
    Official(
        "observation normalization",
        "(s - mean) / (std + 1e-3)",
        f"{CORL} (compute_mean_std)",
        "the dataset statistics every algorithm shares; the divisors differ by at most 1e-3",
        ours="(s - mean) / max(std, 1e-3)",
    ),
)
