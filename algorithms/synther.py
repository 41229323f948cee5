"""SynthER: Synthetic Experience Replay (Lu, Ball, Teh & Parker-Holder, NeurIPS 2023,
arXiv:2303.06614). A dataset transform, not an agent
(:class:`algorithms.common.contract.DatasetTransform`): ``augment=synther`` with any ``algo=``;
DiffStitch's paper compares against it.

Method: an unconditional diffusion model over single transitions ``(s, a, r, s', terminal)``,
z-scored per dimension (the terminal flag left as it is), with a residual-MLP denoiser trained
and sampled in the EDM formulation (Karras et al. 2022: preconditioning, log-normal noise levels,
the stochastic Heun sampler); samples are split back into transitions, terminals thresholded.

Official code followed: conglu1997/SynthER (commit e6835a5): ``config/resmlp_denoiser.gin`` (the
settings), ``synther/diffusion/denoiser_network.py`` (``ResidualMLPDenoiser``, random Fourier
features of the noise level), ``synther/diffusion/elucidated_diffusion.py`` (loss, sampler,
trainer: AdamW betas (0.9, 0.99), gradient norm clipped to 1, cosine learning rate, EMA 0.995
every 10 steps, batch 256 below 800k transitions else 1024), ``synther/diffusion/norm.py``
(``Normalizer``: std + 1e-5), ``synther/diffusion/utils.py`` (inputs, terminal threshold 0.5),
``synther/diffusion/train_diffuser.py`` (100k steps, 5M samples).

Departures from the official code, and why:
- mixing: the official offline runs train on the 5M synthetic transitions alone (with the real
  data's state and reward normalizers); the harness's augmentation stage appends them to the
  real data (one path for every transform; agents sample every transition alike, so at budget 1
  five in six are synthetic on a 1M dataset); the statistics agents read (``bench.data``) count
  the real episodes' returns only, as the official normalizers do;
- the EMA (``algorithms.common.nets.EMA``) averages with the constant decay 0.995 from step 100
  on; the official ``ema_pytorch`` ramps its decay up from 0 (``inv_gamma`` 1, ``power`` 2/3)
  and caps it at 0.995, so the two agree once training is long;
- ``n_samples`` (5M) and ``train_steps`` (100k) are scaled by the augmentation budget; samples
  are drawn ``sample_batch`` at a time (official 100k) with the same 128 Heun steps;
- each synthetic transition is appended as its own one-step episode (flagged ``timeouts`` unless
  the model predicts termination), so episode-based samplers never join two of them.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from algorithms.common.contract import Augmented, DatasetStats, TaskInfo
from algorithms.common.nets import EMA

SOURCE = "conglu1997/SynthER config/resmlp_denoiser.gin"


@dataclass
class Config:
    """SynthER's settings (:data:`SOURCE`); every default is the official's."""

    mlp_width: int = 2048  # width of the residual MLP (ResidualMLPDenoiser.mlp_width)
    depth: int = 6  # residual blocks (num_layers)
    dim_t: int = 128  # width of the input projection and the noise-level embedding
    fourier_dim: int = 16  # random Fourier features of the noise level (learned_sinusoidal_dim)
    layer_norm: bool = False  # LayerNorm inside the residual blocks (official gin: off)
    sigma_min: float = 0.002  # smallest noise level of the sampler
    sigma_max: float = 80.0  # largest noise level of the sampler
    sigma_data: float = 1.0  # std of the (z-scored) data in the preconditioning
    rho: float = 7.0  # exponent of the sampler's noise-level schedule
    p_mean: float = -1.2  # mean of log sigma in training
    p_std: float = 1.2  # std of log sigma in training
    s_churn: float = 80.0  # stochasticity of the sampler
    s_tmin: float = 0.05  # smallest noise level that receives churn
    s_tmax: float = 50.0  # largest noise level that receives churn
    s_noise: float = 1.003  # scale of the churn noise
    n_sample_steps: int = 128  # Heun steps per sample (num_sample_steps)
    lr: float = 3e-4  # AdamW learning rate, cosine-annealed to 0 over training
    weight_decay: float = 0.0  # AdamW weight decay (not on biases and norms)
    batch_size: int | None = None  # transitions per update (None: 256 below 800k, else 1024)
    train_steps: int = 100_000  # updates at budget 1 (train_num_steps)
    ema_decay: float = 0.995  # decay of the EMA copy that samples
    ema_every: int = 10  # updates between EMA updates
    ema_start: int = 100  # updates before the EMA starts averaging (ema_pytorch update_after_step)
    grad_clip: float = 1.0  # largest gradient norm
    n_samples: int = 5_000_000  # synthetic transitions at budget 1 (save_num_samples)
    sample_batch: int = 100_000  # transitions sampled at once (sample_batch_size)
    terminal_threshold: float = 0.5  # a sampled terminal above this is an episode end


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with the data-dependent batch size filled in, checked."""
    if cfg.batch_size is None:
        cfg = dataclasses.replace(cfg, batch_size=256 if stats.n_transitions < 800_000 else 1024)
    if cfg.fourier_dim % 2:
        raise ValueError(f"augment.fourier_dim={cfg.fourier_dim} is not valid; valid: even")
    if cfg.n_sample_steps < 2:
        raise ValueError(f"augment.n_sample_steps={cfg.n_sample_steps} is not valid; valid: >= 2")
    return cfg


# ----------------------------------------------------------------------------------------- denoiser


class ResidualBlock(nn.Module):
    """``x + Linear(relu(LN(x)))`` (LayerNorm optional)."""

    def __init__(self, width: int, layer_norm: bool):
        super().__init__()
        self.norm = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.linear = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.linear(F.relu(self.norm(x)))


class ResidualMLPDenoiser(nn.Module):
    """``net(x, c_noise) -> [N, d]``: ``proj(x) + time_mlp(c_noise)`` through ``depth`` residual
    blocks, a ReLU and a linear head; the noise level enters as ``[c, sin, cos]`` of random
    (frozen) Fourier frequencies."""

    def __init__(self, cfg: Config, d_in: int):
        super().__init__()
        self.freqs = nn.Parameter(torch.randn(cfg.fourier_dim // 2), requires_grad=False)
        self.time_mlp = nn.Sequential(
            nn.Linear(cfg.fourier_dim + 1, cfg.dim_t), nn.SiLU(), nn.Linear(cfg.dim_t, cfg.dim_t)
        )
        self.proj = nn.Linear(d_in, cfg.dim_t)
        self.body = nn.Sequential(
            nn.Linear(cfg.dim_t, cfg.mlp_width),
            *[ResidualBlock(cfg.mlp_width, cfg.layer_norm) for _ in range(cfg.depth)],
            nn.LayerNorm(cfg.mlp_width) if cfg.layer_norm else nn.Identity(),
        )
        self.head = nn.Linear(cfg.mlp_width, d_in)

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        angles = c_noise[:, None] * self.freqs * 2 * math.pi
        emb = torch.cat([c_noise[:, None], angles.sin(), angles.cos()], dim=-1)
        return self.head(F.relu(self.body(self.proj(x) + self.time_mlp(emb))))


# ---------------------------------------------------------------------------------------------- EDM


def denoise(net: nn.Module, x: Tensor, sigma: Tensor, cfg: Config) -> Tensor:
    """EDM's preconditioned denoiser ``D(x; sigma)`` (Karras et al. Table 1); ``sigma [N]``."""
    s, sd = sigma[:, None], cfg.sigma_data
    c_skip = sd**2 / (s**2 + sd**2)
    c_out = s * sd / (s**2 + sd**2).sqrt()
    c_in = 1 / (s**2 + sd**2).sqrt()
    c_noise = sigma.clamp(min=1e-20).log() * 0.25
    return c_skip * x + c_out * net(c_in * x, c_noise)


def edm_loss(net: nn.Module, x0: Tensor, cfg: Config) -> Tensor:
    """Weighted denoising loss at log-normal noise levels (``ElucidatedDiffusion.forward``)."""
    sigma = (cfg.p_mean + cfg.p_std * torch.randn(len(x0), device=x0.device)).exp()
    noised = x0 + sigma[:, None] * torch.randn_like(x0)
    losses = ((denoise(net, noised, sigma, cfg) - x0) ** 2).mean(dim=-1)
    weight = (sigma**2 + cfg.sigma_data**2) / (sigma * cfg.sigma_data) ** 2
    return (losses * weight).mean()


def sigma_schedule(cfg: Config) -> list[float]:
    """The sampler's noise levels, ``sigma_max`` to ``sigma_min`` then 0 (EDM eq. 5)."""
    n, inv = cfg.n_sample_steps, 1 / cfg.rho
    steps = [
        (cfg.sigma_max**inv + i / (n - 1) * (cfg.sigma_min**inv - cfg.sigma_max**inv)) ** cfg.rho
        for i in range(n)
    ]
    return [*steps, 0.0]


@torch.no_grad()
def edm_sample(net: nn.Module, n: int, dim: int, cfg: Config, device: torch.device) -> Tensor:
    """EDM's stochastic Heun sampler (Algorithm 2), as ``ElucidatedDiffusion.sample``."""
    sigmas = sigma_schedule(cfg)
    churn = min(cfg.s_churn / cfg.n_sample_steps, math.sqrt(2) - 1)
    x = sigmas[0] * torch.randn(n, dim, device=device)
    for sigma, sigma_next in pairwise(sigmas):
        gamma = churn if cfg.s_tmin <= sigma <= cfg.s_tmax else 0.0
        sigma_hat = sigma + gamma * sigma
        x_hat = x + math.sqrt(sigma_hat**2 - sigma**2) * cfg.s_noise * torch.randn_like(x)
        d = x_hat - denoise(net, x_hat, torch.full((n,), sigma_hat, device=device), cfg)
        d = d / sigma_hat
        x = x_hat + (sigma_next - sigma_hat) * d
        if sigma_next != 0:
            full = torch.full((n,), sigma_next, device=device)
            d_next = (x - denoise(net, x, full, cfg)) / sigma_next
            x = x_hat + 0.5 * (sigma_next - sigma_hat) * (d + d_next)
    return x


# ------------------------------------------------------------------------------------ the transform


REPORTS_PER_TRAINING = 10  # progress lines over the denoiser's training


def report(line: str) -> None:
    """A progress line on stderr (the stage can run for hours at the paper's budget)."""
    print(f"[synther] {line}", file=sys.stderr, flush=True)


def transition_inputs(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """``[s, a, r, s', terminal]`` per row (``make_inputs`` with modelled terminals)."""
    return np.concatenate(
        [
            arrays["observations"],
            arrays["actions"],
            arrays["rewards"][:, None],
            arrays["next_observations"],
            arrays["terminals"].astype(np.float32)[:, None],
        ],
        axis=1,
    ).astype(np.float32)


def train_denoiser(
    cfg: Config, inputs: Tensor, steps: int, generator: torch.Generator
) -> tuple[EMA, float]:
    """``steps`` AdamW updates on uniformly drawn batches; returns the EMA copy and last loss."""
    net = ResidualMLPDenoiser(cfg, inputs.shape[1]).to(inputs.device)
    decay = [p for n, p in net.named_parameters() if p.dim() > 1]
    rest = [p for n, p in net.named_parameters() if p.dim() <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0}],
        lr=cfg.lr,
        betas=(0.9, 0.99),
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    ema = EMA(net, decay=cfg.ema_decay, start=cfg.ema_start, every=cfg.ema_every)
    loss = torch.zeros(())
    every = max(1, steps // REPORTS_PER_TRAINING)
    for step in range(1, steps + 1):
        idx = torch.randint(len(inputs), (cfg.batch_size,), generator=generator)
        loss = edm_loss(net, inputs[idx.to(inputs.device)], cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        optimizer.step()
        schedule.step()
        ema.update(net)
        if step % every == 0:
            report(f"update {step:,}/{steps:,}: loss {float(loss.detach()):.4f}")
    return ema, float(loss.detach())


def split_samples(samples: np.ndarray, info: TaskInfo, threshold: float) -> dict[str, np.ndarray]:
    """Samples back into D4RL-layout transitions, each its own one-step episode."""
    s, a = info.obs_dim, info.act_dim
    terminals = samples[:, -1] > threshold
    return {
        "observations": samples[:, :s],
        "actions": np.clip(samples[:, s : s + a], info.action_low, info.action_high),
        "rewards": samples[:, s + a],
        "next_observations": samples[:, s + a + 1 : 2 * s + a + 1],
        "terminals": terminals,
        "timeouts": ~terminals,
    }


def augment(
    cfg: Config,
    arrays: dict[str, np.ndarray],
    info: TaskInfo,
    stats: DatasetStats,
    sampler,
    device: torch.device,
    seed: int,
    budget: float,
) -> Augmented:
    """Train SynthER's diffusion model on the data's transitions and sample new ones; see the
    contract's :class:`~algorithms.common.contract.DatasetTransform` (``sampler`` unused: the
    model trains on single transitions drawn here)."""
    cfg = resolve(cfg, info, stats)
    device = torch.device(device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    raw = torch.as_tensor(transition_inputs(arrays), device=device)
    mean, std = raw.mean(0), raw.std(0) + 1e-5
    mean[-1], std[-1] = 0.0, 1.0  # the terminal flag is not normalized
    steps = max(1, math.ceil(cfg.train_steps * budget))
    report(f"training the denoiser ({steps:,} updates)")
    ema, loss = train_denoiser(cfg, (raw - mean) / std, steps, generator)
    total = max(1, math.ceil(cfg.n_samples * budget))
    pieces = []
    for start in range(0, total, cfg.sample_batch):
        n = min(cfg.sample_batch, total - start)
        report(f"sampling transitions {start:,}..{start + n:,} of {total:,}")
        pieces.append((edm_sample(ema.model, n, raw.shape[1], cfg, device) * std + mean).cpu())
    samples = torch.cat(pieces).numpy()
    out = split_samples(samples, info, cfg.terminal_threshold)
    finite = np.isfinite(samples).all(axis=1)
    out = {k: v[finite] for k, v in out.items()}
    return Augmented(
        arrays=out,
        generated=total,
        accepted=int(finite.sum()),
        checkpoints={"denoiser_ema": ema.model.state_dict()},
        stats={
            "diffusion_loss": loss,
            "terminal_share": float(out["terminals"].mean()) if finite.any() else 0.0,
        },
    )
