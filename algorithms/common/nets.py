"""Small blocks shared by every algorithm: MLPs, a fast Mish, time embeddings, EMA, target
updates, the optimizer step, observation normalization and a checkpointable random stream."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import Tensor, nn


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: int = 256,
    depth: int = 2,
    activation: type[nn.Module] = nn.ReLU,
    layer_norm: bool = False,
    dropout: float = 0.0,
    out_activation: nn.Module | None = None,
) -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden`` (optionally LayerNorm and dropout), then a linear head."""
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers.append(nn.Linear(d, hidden))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(activation())
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    if out_activation is not None:
        layers.append(out_activation)
    return nn.Sequential(*layers)


class _MishFunction(torch.autograd.Function):
    """``x * tanh(softplus(x))`` from a single exp: ``tanh(softplus(x)) = n / (n + 2)`` with
    ``n = e^x (e^x + 2)``; about 2.5x faster than ``torch.nn.functional.mish`` on CPU, forward
    and backward (``d/dx = w + x (1 - w^2) sigmoid(x)``, ``w = tanh(softplus(x))``)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        e = x.clamp(max=20.0).exp()  # beyond 20, w == 1 in float32
        n = (e + 2.0).mul_(e)
        w = n.div_(n + 2.0)
        ctx.save_for_backward(x, w, e)
        return x * w

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        x, w, e = ctx.saved_tensors
        return grad * (w + x * (1.0 - w * w) * (e / (1.0 + e)))


class Mish(nn.Module):
    """Mish activation (``torch.nn.Mish``'s values) with a faster CPU kernel, for the policy and
    critic MLPs of IDQL and Diffusion-QL."""

    def forward(self, x: Tensor) -> Tensor:
        return _MishFunction.apply(x)


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of a (diffusion) time index."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = t.float()[..., None] * self.freqs
        return torch.cat([x.sin(), x.cos()], dim=-1)


class EMA:
    """Exponential moving average of a module's parameters, kept as a frozen copy.

    ``start`` delays averaging (the copy tracks the live weights until then), as Diffuser and
    Diffusion-QL do.
    """

    def __init__(self, model: nn.Module, decay: float = 0.995, start: int = 0, every: int = 1):
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.decay, self.start, self.every = decay, start, every
        self.step = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.step += 1
        if self.step % self.every:
            return
        if self.step <= self.start:
            self.model.load_state_dict(model.state_dict())
            return
        ema_params = list(self.model.parameters())
        torch._foreach_lerp_(ema_params, list(model.parameters()), 1.0 - self.decay)
        for b_ema, b in zip(self.model.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.step = state["step"]


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``target <- (1 - tau) * target + tau * source``, fused over all tensors."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def gradient_step(
    optimizer: torch.optim.Optimizer,
    loss: Tensor,
    params: list[Tensor] | None = None,
    max_norm: float = 0.0,
) -> None:
    """One optimizer step on ``loss``: gradients into ``params`` only when given (a loss that
    also reaches other networks, e.g. an actor loss through the critic, leaves them untouched),
    their norm clipped to ``max_norm`` when it is positive."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    if max_norm > 0:
        nn.utils.clip_grad_norm_(params, max_norm=max_norm, foreach=True)
    optimizer.step()


class ObsNormalizer:
    """Z-scores observations with the dataset's mean and std, on the agent's device."""

    def __init__(self, obs_mean: np.ndarray, obs_std: np.ndarray, device: torch.device | str):
        self.mean = torch.as_tensor(obs_mean, dtype=torch.float32, device=device)
        self.std = torch.as_tensor(obs_std, dtype=torch.float32, device=device)

    def __call__(self, obs: Tensor) -> Tensor:
        return (obs - self.mean) / self.std

    def from_numpy(self, obs: np.ndarray) -> Tensor:
        """Normalized float32 tensor on the agent's device from the vector env's observations."""
        return self(torch.as_tensor(obs, dtype=torch.float32, device=self.mean.device))


class RandomStream:
    """An agent-owned ``torch.Generator``, seeded from the global RNG when built, that an agent
    declares as state (:class:`~algorithms.common.contract.Checkpointable`): a resumed run draws
    the same numbers as an uninterrupted one."""

    def __init__(self, device: torch.device | str):
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(int(torch.randint(2**62, ())))

    def state_dict(self) -> dict[str, Tensor]:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["state"].cpu())  # map_location may have moved it
