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
from torch import Tensor, nn

from algorithms.common.contract import DatasetStats, DataSpec, TaskInfo
from algorithms.common.nets import mlp


@dataclass
class Config:
    """CORL ``any_percent_bc.py`` defaults (Adam 3e-4, batch 256, 2x256 ReLU)."""

    hidden: int = 256
    depth: int = 2
    lr: float = 3e-4
    batch_size: int = 256


class TanhPolicy(nn.Module):
    """Deterministic policy: normalized observation -> MLP -> tanh -> action box."""

    def __init__(self, info: TaskInfo, hidden: int, depth: int):
        super().__init__()
        self.net = mlp(info.obs_dim, info.act_dim, hidden, depth, out_activation=nn.Tanh())
        self.act_mid = (info.action_high + info.action_low) / 2
        self.act_half = (info.action_high - info.action_low) / 2

    def forward(self, obs: Tensor) -> Tensor:
        return self.act_mid + self.act_half * self.net(obs)


class Agent:
    """BC agent following :mod:`algorithms.common.contract`."""

    def __init__(
        self, cfg: Config, info: TaskInfo, stats: DatasetStats, device: torch.device | str
    ):
        self.cfg, self.info, self.device = cfg, info, torch.device(device)
        self.data_spec = DataSpec(kind="transitions", batch_size=cfg.batch_size)
        self.obs_mean = torch.as_tensor(stats.obs_mean, dtype=torch.float32, device=self.device)
        self.obs_std = torch.as_tensor(stats.obs_std, dtype=torch.float32, device=self.device)
        self.actor = TanhPolicy(info, cfg.hidden, cfg.depth)
        self.actor.to(self.device)
        self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr, fused=True)
        self.step = 0

    def normalize(self, obs: Tensor) -> Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One Adam step on the MSE between the policy's and the dataset's actions."""
        pred = self.actor(self.normalize(batch["observations"]))
        loss = (pred - batch["actions"]).square().mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return {"actor_loss": loss.detach()}

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[n_envs, act_dim]`` for observations ``[n_envs, obs_dim]``."""
        self.actor.eval()
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        action = self.actor(self.normalize(obs_t)).clamp(
            self.info.action_low, self.info.action_high
        )
        self.actor.train()
        return action.cpu().numpy()

    def reset(self, done: np.ndarray | None = None) -> None:
        """BC keeps no per-environment state."""

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
