"""Temporal U-Net denoiser and temporal value network over trajectory segments.

After Diffuser's ``models/temporal.py`` (Janner et al. 2022): 1-D convolutions along the horizon,
residual blocks ``Conv-GroupNorm-Mish`` x2 with the diffusion-step embedding added after the
first, stride-2 down-sampling / transposed-conv up-sampling with skip connections. Decision
Diffuser's variant adds a condition embedding (an MLP of the returns) concatenated to the step
embedding; here a condition is ``{"value": [*batch, k], "mask": [*batch, k]}`` with one keep flag
per component, so a dropped (``mask = 0``) component is the "empty" condition of classifier-free
guidance and several components can be dropped independently (composition).

Differences from the official networks, on purpose:

* any horizon works: the input is zero-padded at the end to a multiple of ``2^(levels - 1)`` and
  the output cropped back (Diffuser needs the horizon divisible by it);
* GroupNorm uses ``gcd(8, channels)`` groups so narrow test networks are valid;
* any number of leading batch axes: ``x [*batch, H, C]``, ``t [*batch]``.

``attention=True`` adds Diffuser's linear-attention layers (``Residual(PreNorm(LinearAttention))``
after each level's two blocks, down and up, and between the two middle blocks; 4 heads of 32),
which its halfcheetah setting switches on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from algorithms.common.nets import SinusoidalEmbedding


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class ConvBlock(nn.Module):
    """``Conv1d -> GroupNorm -> Mish`` with 'same' padding."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 5):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2)
        self.norm = nn.GroupNorm(_groups(c_out), c_out)
        self.act = nn.Mish()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class ResidualTemporalBlock(nn.Module):
    """Two conv blocks; the embedding is projected and added after the first; 1x1 residual."""

    def __init__(self, c_in: int, c_out: int, embed_dim: int, kernel_size: int = 5):
        super().__init__()
        self.block1 = ConvBlock(c_in, c_out, kernel_size)
        self.block2 = ConvBlock(c_out, c_out, kernel_size)
        self.embed = nn.Sequential(nn.Mish(), nn.Linear(embed_dim, c_out))
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.block1(x) + self.embed(emb).unsqueeze(-1)
        return self.block2(h) + self.residual(x)


class LinearAttention(nn.Module):
    """Diffuser's residual, pre-normed linear attention over the horizon: channels are
    layer-normed, keys softmaxed over positions, ``out = x + W_o (softmax(k) v^T)^T (q / sqrt(d))``
    per head."""

    def __init__(self, channels: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        self.norm_gain = nn.Parameter(torch.ones(1, channels, 1))
        self.norm_bias = nn.Parameter(torch.zeros(1, channels, 1))
        self.to_qkv = nn.Conv1d(channels, 3 * heads * dim_head, 1, bias=False)
        self.to_out = nn.Conv1d(heads * dim_head, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        h = (x - mean) / (var + 1e-5).sqrt() * self.norm_gain + self.norm_bias
        q, k, v = (t.unflatten(1, (self.heads, -1)) for t in self.to_qkv(h).chunk(3, dim=1))
        context = torch.einsum("bhdn,bhen->bhde", k.softmax(dim=-1), v)
        out = torch.einsum("bhde,bhdn->bhen", context, q * self.scale)
        return x + self.to_out(out.flatten(1, 2))


def time_mlp(dim: int) -> nn.Sequential:
    """Sinusoidal step embedding followed by ``Linear(dim, 4 dim) -> Mish -> Linear(4 dim, dim)``."""
    return nn.Sequential(
        SinusoidalEmbedding(dim), nn.Linear(dim, 4 * dim), nn.Mish(), nn.Linear(4 * dim, dim)
    )


class ConditionEmbedding(nn.Module):
    """MLP of ``concat(value * mask, mask)``: all-zero input when every component is dropped.

    Decision Diffuser's returns MLP (``Linear(1, dim) -> Mish -> Linear(dim, 4 dim) -> Mish ->
    Linear(4 dim, dim)``) fed the masked values and the keep flags.
    """

    def __init__(self, cond_dim: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * cond_dim, dim),
            nn.Mish(),
            nn.Linear(dim, 4 * dim),
            nn.Mish(),
            nn.Linear(4 * dim, dim),
        )

    def forward(self, cond: dict[str, Tensor]) -> Tensor:
        mask = cond["mask"].to(cond["value"].dtype)
        return self.net(torch.cat([cond["value"] * mask, mask], dim=-1))


def _flatten_batch(x: Tensor, t: Tensor, event_dims: int) -> tuple[Tensor, Tensor, tuple]:
    batch_shape = x.shape[: x.dim() - event_dims]
    return x.reshape(-1, *x.shape[-event_dims:]), t.reshape(-1), tuple(batch_shape)


class TemporalUnet(nn.Module):
    """Denoiser ``model(x [*batch, H, C], t [*batch], cond) -> [*batch, H, C]``.

    ``cond_dim > 0`` adds a :class:`ConditionEmbedding`; ``cond`` is then a dict with ``value``
    and ``mask`` of shape ``[*batch, cond_dim]`` (see the module docstring), else ``None``.
    ``attention`` adds :class:`LinearAttention` layers (module docstring).
    """

    def __init__(
        self,
        transition_dim: int,
        dim: int = 32,
        dim_mults: Sequence[int] = (1, 2, 4, 8),
        cond_dim: int = 0,
        kernel_size: int = 5,
        attention: bool = False,
    ):
        super().__init__()
        dims = [transition_dim, *(dim * m for m in dim_mults)]
        in_out = list(pairwise(dims))
        self.factor = 2 ** (len(in_out) - 1)
        self.time = time_mlp(dim)
        self.condition = ConditionEmbedding(cond_dim, dim) if cond_dim > 0 else None
        embed_dim = 2 * dim if cond_dim > 0 else dim

        def block(c_in: int, c_out: int) -> ResidualTemporalBlock:
            return ResidualTemporalBlock(c_in, c_out, embed_dim, kernel_size)

        def attend(channels: int) -> nn.Module:
            return LinearAttention(channels) if attention else nn.Identity()

        # Each level holds [block, block, resample, attention] (applied block, block, attention,
        # resample), so networks without attention keep the parameter names they always had.
        self.downs = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(in_out):
            last = i == len(in_out) - 1
            down = nn.Identity() if last else nn.Conv1d(c_out, c_out, 3, 2, 1)
            self.downs.append(
                nn.ModuleList([block(c_in, c_out), block(c_out, c_out), down, attend(c_out)])
            )
        self.mid1 = block(dims[-1], dims[-1])
        self.mid_attention = attend(dims[-1])
        self.mid2 = block(dims[-1], dims[-1])
        self.ups = nn.ModuleList()
        for c_in, c_out in reversed(in_out[1:]):
            up = nn.ConvTranspose1d(c_in, c_in, 4, 2, 1)
            self.ups.append(
                nn.ModuleList([block(2 * c_out, c_in), block(c_in, c_in), up, attend(c_in)])
            )
        self.final = nn.Sequential(
            ConvBlock(dims[1], dims[1], kernel_size), nn.Conv1d(dims[1], transition_dim, 1)
        )

    def embed(self, t: Tensor, cond: dict[str, Tensor] | None, n: int) -> Tensor:
        emb = self.time(t)
        if self.condition is None:
            return emb
        flat = {k: v.reshape(n, -1) for k, v in cond.items()}
        return torch.cat([emb, self.condition(flat)], dim=-1)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        cond: dict[str, Tensor] | None = None,
        mix: Callable[[int, Tensor, Tensor], Tensor] | None = None,
    ) -> Tensor:
        """``mix(level, h, emb) -> h``, optional, edits the features ``h [N, C, H']`` (``N`` the
        flattened batch) of the bottleneck (level 0) and of each skip connection before the up
        path reads it (levels 1, 2, ... in the order they are read); MADiff's cross-agent
        attention is one."""
        x, t, batch_shape = _flatten_batch(x, t, 2)
        horizon = x.shape[1]
        emb = self.embed(t, cond, x.shape[0])
        pad = -horizon % self.factor
        h = F.pad(x.transpose(1, 2), (0, pad))
        skips = []
        for res1, res2, down, attend in self.downs:
            h = attend(res2(res1(h, emb), emb))
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attention(self.mid1(h, emb)), emb)
        if mix is not None:
            h = mix(0, h, emb)
        for level, (res1, res2, up, attend) in enumerate(self.ups, start=1):
            skip = skips.pop()
            if mix is not None:
                skip = mix(level, skip, emb)
            h = torch.cat([h, skip], dim=1)
            h = up(attend(res2(res1(h, emb), emb)))
        out = self.final(h)[..., :horizon].transpose(1, 2)
        return out.reshape(*batch_shape, *out.shape[1:])


class TemporalValue(nn.Module):
    """Value ``V(x [*batch, H, C], t [*batch]) -> [*batch]`` of a noisy segment at step ``t``.

    Diffuser's ``ValueFunction``: the U-Net's down path (each level down-sampled), two more
    residual blocks halving the channels and down-sampling, then ``MLP(flatten, step embedding)``.
    """

    def __init__(
        self,
        horizon: int,
        transition_dim: int,
        dim: int = 32,
        dim_mults: Sequence[int] = (1, 2, 4, 8),
        kernel_size: int = 5,
    ):
        super().__init__()
        dims = [transition_dim, *(dim * m for m in dim_mults)]
        self.time = time_mlp(dim)
        self.blocks = nn.ModuleList()
        h = horizon
        for c_in, c_out in pairwise(dims):
            self.blocks.append(
                nn.ModuleList(
                    [
                        ResidualTemporalBlock(c_in, c_out, dim, kernel_size),
                        ResidualTemporalBlock(c_out, c_out, dim, kernel_size),
                        nn.Conv1d(c_out, c_out, 3, 2, 1),
                    ]
                )
            )
            h = (h + 1) // 2
        mid, mid2, mid4 = dims[-1], max(dims[-1] // 2, 1), max(dims[-1] // 4, 1)
        self.mid1 = ResidualTemporalBlock(mid, mid2, dim, kernel_size)
        self.down1 = nn.Conv1d(mid2, mid2, 3, 2, 1)
        self.mid2 = ResidualTemporalBlock(mid2, mid4, dim, kernel_size)
        self.down2 = nn.Conv1d(mid4, mid4, 3, 2, 1)
        fc = mid4 * (((h + 1) // 2 + 1) // 2)  # two more stride-2 convs
        hidden = max(fc // 2, 1)
        self.head = nn.Sequential(nn.Linear(fc + dim, hidden), nn.Mish(), nn.Linear(hidden, 1))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        x, t, batch_shape = _flatten_batch(x, t, 2)
        emb = self.time(t)
        h = x.transpose(1, 2)
        for res1, res2, down in self.blocks:
            h = down(res2(res1(h, emb), emb))
        h = self.down1(self.mid1(h, emb))
        h = self.down2(self.mid2(h, emb))
        out = self.head(torch.cat([h.flatten(1), emb], dim=-1))
        return out.reshape(batch_shape)
