"""Small network blocks shared by every algorithm: MLPs, time embeddings, EMA, target updates."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


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
