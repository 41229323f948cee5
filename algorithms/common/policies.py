"""Policy pieces shared by the policy-learning algorithms: the action box, the deterministic tanh
policy (BC, TD3+BC, and IQL's Gaussian mean) and acting with it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from algorithms.common.contract import TaskInfo
from algorithms.common.nets import ObsNormalizer, mlp


@dataclass(frozen=True)
class ActionBox:
    """The task's action box ``[low, high]`` and its affine map onto ``[-1, 1]`` (asymmetric
    boxes work; the official codes multiply by ``max_action``, the same for symmetric boxes)."""

    low: float
    high: float

    @classmethod
    def of(cls, info: TaskInfo) -> ActionBox:
        """The box of ``info``'s actions."""
        return cls(info.action_low, info.action_high)

    @property
    def mid(self) -> float:
        """Centre of the box."""
        return (self.high + self.low) / 2

    @property
    def half(self) -> float:
        """Half-width of the box: noise scales in action units are multiples of it."""
        return (self.high - self.low) / 2

    def to_unit(self, act: Tensor) -> Tensor:
        """Actions in the box -> ``[-1, 1]``."""
        return (act - self.mid) / self.half

    def from_unit(self, unit: Tensor) -> Tensor:
        """``[-1, 1]`` -> actions in the box."""
        return self.mid + self.half * unit

    def clamp(self, act: Tensor) -> Tensor:
        """``act`` clipped into the box."""
        return act.clamp(self.low, self.high)


class TanhPolicy(nn.Module):
    """Deterministic policy: normalized observation -> MLP -> tanh -> action box."""

    def __init__(self, info: TaskInfo, hidden: int, depth: int):
        super().__init__()
        self.net = mlp(info.obs_dim, info.act_dim, hidden, depth, out_activation=nn.Tanh())
        self.box = ActionBox.of(info)

    def forward(self, obs: Tensor) -> Tensor:
        """The action for normalized observations ``obs`` ``[B, obs_dim]``."""
        return self.box.from_unit(self.net(obs))


@torch.no_grad()
def act_deterministic(actor: TanhPolicy, normalize: ObsNormalizer, obs: np.ndarray) -> np.ndarray:
    """Actions ``[n_envs, act_dim]`` of ``actor`` (in eval mode) for the vector env's
    observations ``[n_envs, obs_dim]``, clamped to the box: the acting step of BC, TD3+BC and
    IQL (whose evaluation takes the Gaussian's mean)."""
    actor.eval()
    action = actor.box.clamp(actor(normalize.from_numpy(obs)))
    actor.train()
    return action.cpu().numpy()
