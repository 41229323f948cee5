"""Critics shared by value-based algorithms: twin Q, state value, their losses, and the whole
IQL critic.

:class:`IQLCritic` is Implicit Q-Learning's critic (Kostrikov et al. 2022) on its own, so that
IQL and the diffusion methods that rank or weight actions with it (IDQL) train the same thing:
V regresses the ``expectile`` of the target twin-Q minimum, Q regresses ``r + discount * V(s')``,
and the target twin Q follows Q by Polyak averaging.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from algorithms.common.nets import gradient_step, mlp, soft_update


class TwinQ(nn.Module):
    """Two independent Q MLPs on ``concat(obs, act)`` (clipped double Q)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: int = 256,
        depth: int = 2,
        layer_norm: bool = False,
        activation: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        in_dim = obs_dim + act_dim
        self.q1 = mlp(in_dim, 1, hidden, depth, activation=activation, layer_norm=layer_norm)
        self.q2 = mlp(in_dim, 1, hidden, depth, activation=activation, layer_norm=layer_norm)

    def forward(self, obs: Tensor, act: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([obs, act], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def min(self, obs: Tensor, act: Tensor) -> Tensor:
        return torch.minimum(*self(obs, act))

    def first(self, obs: Tensor, act: Tensor) -> Tensor:
        """Q1 alone [B], e.g. for TD3's actor objective (half the cost of both)."""
        return self.q1(torch.cat([obs, act], dim=-1)).squeeze(-1)


def twin_q_loss(q1: Tensor, q2: Tensor, target: Tensor) -> Tensor:
    """Sum of both heads' mean squared TD errors to the (detached) ``target``."""
    return (q1 - target).square().mean() + (q2 - target).square().mean()


class ValueNet(nn.Module):
    """State value V(s) as an MLP."""

    def __init__(self, obs_dim: int, hidden: int = 256, depth: int = 2, layer_norm: bool = False):
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden, depth, layer_norm=layer_norm)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)


def expectile_loss(diff: Tensor, expectile: float) -> Tensor:
    """Mean asymmetric squared error ``|tau - 1(diff < 0)| * diff^2``; ``diff = target - pred``.

    Minimizing it over a constant prediction gives the ``expectile`` of the targets
    (0.5: the mean, with half the MSE as loss; towards 1: their maximum).
    """
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


class IQLCritic(nn.Module):
    """IQL's critic: twin Q, its Polyak target, and V trained by expectile regression.

    One :meth:`update` is one step of V (:func:`expectile_loss` of the advantage) and of Q
    (:func:`twin_q_loss` to ``r + discount * V(s')``). As in CORL's ``iql.py``, V(s') for the TD
    target and the advantage are read before V's step; the V and Q losses share no parameters, so
    one backward pass and one Adam over both parameter sets is the same as two separate steps.
    The critic trains itself, so its optimizer state is part of its :meth:`state_dict` (as extra
    state): an agent that declares the critic resumes it exactly.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: int = 256,
        depth: int = 2,
        expectile: float = 0.7,
        discount: float = 0.99,
        tau: float = 0.005,
        lr: float = 3e-4,
        layer_norm: bool = False,
    ):
        super().__init__()
        self.expectile, self.discount, self.tau = expectile, discount, tau
        self.q_net = TwinQ(obs_dim, act_dim, hidden, depth, layer_norm)
        self.q_target = copy.deepcopy(self.q_net).requires_grad_(False)
        self.v_net = ValueNet(obs_dim, hidden, depth, layer_norm)
        self.optimizer = torch.optim.Adam(
            [*self.q_net.parameters(), *self.v_net.parameters()], lr=lr, fused=True
        )

    def update(
        self, obs: Tensor, act: Tensor, reward: Tensor, next_obs: Tensor, terminal: Tensor
    ) -> dict[str, Tensor]:
        """One step of V and Q on a batch; returns detached scalar losses and means."""
        info, _ = self.update_with_advantage(obs, act, reward, next_obs, terminal)
        return info

    def update_with_advantage(
        self, obs: Tensor, act: Tensor, reward: Tensor, next_obs: Tensor, terminal: Tensor
    ) -> tuple[dict[str, Tensor], Tensor]:
        """:meth:`update`, also returning the detached advantage ``Q_target(s, a) - V(s)`` [B]
        computed on the way (before the step), so a policy can be weighted without new forwards."""
        with torch.no_grad():
            target_q = self.q_target.min(obs, act)
            next_v = self.v_net(next_obs)
            td_target = reward + self.discount * (1.0 - terminal) * next_v
        v = self.v_net(obs)
        adv = target_q - v
        v_loss = expectile_loss(adv, self.expectile)
        q1, q2 = self.q_net(obs, act)
        q_loss = twin_q_loss(q1, q2, td_target)
        gradient_step(self.optimizer, v_loss + q_loss)
        soft_update(self.q_target, self.q_net, self.tau)
        info = {
            "v_loss": v_loss.detach(),
            "q_loss": q_loss.detach(),
            "v_mean": v.detach().mean(),
            "q_mean": q1.detach().mean(),
        }
        return info, adv.detach()

    @torch.no_grad()
    def q(self, obs: Tensor, act: Tensor) -> Tensor:
        """Target-network min Q [B], the stable estimate used to rank or weight actions."""
        return self.q_target.min(obs, act)

    @torch.no_grad()
    def v(self, obs: Tensor) -> Tensor:
        """State value V(s) [B]."""
        return self.v_net(obs)

    @torch.no_grad()
    def advantage(self, obs: Tensor, act: Tensor) -> Tensor:
        """``Q_target(s, a) - V(s)`` [B]."""
        return self.q(obs, act) - self.v(obs)

    def get_extra_state(self) -> dict:
        """The optimizer's state, saved with the networks (see the class docstring)."""
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
