"""Noise schedules for discrete-time Gaussian diffusion and the quantities derived from them.

Each schedule returns ``betas`` as a float32 tensor of length ``T`` (index 0 is the first,
least noisy step). :func:`schedule_terms` derives the alphas, cumulative products and
posterior coefficients every sampler needs, in float64 so short schedules stay exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def linear_beta_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> torch.Tensor:
    """DDPM's linear schedule (Ho et al. 2020), with its endpoints as defaults."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64).float()


def cosine_beta_schedule(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal (2021): ``alpha_bar(t) = cos^2((t/T + s)/(1 + s) * pi/2)``, normalized.

    ``beta_t = 1 - alpha_bar(t)/alpha_bar(t-1)``, clipped to ``max_beta`` so the last step stays
    finite. Diffuser's and Decision Diffuser's ``cosine_beta_schedule`` evaluate the same grid
    (``linspace(0, T + 1, T + 1) / (T + 1)`` is ``t / T``): the same betas.
    """
    t = torch.arange(T + 1, dtype=torch.float64) / T
    alpha_bar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = alpha_bar / alpha_bar[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(0.0, max_beta).float()


def vp_beta_schedule(T: int, b_min: float = 0.1, b_max: float = 10.0) -> torch.Tensor:
    """Discretized variance-preserving SDE (Song et al. 2021) as Diffusion-QL and IDQL use it.

    ``alpha_t = exp(-b_min/T - (b_max - b_min)(2t - 1)/(2 T^2))`` for ``t = 1..T``; designed for
    few steps (both papers use ``T = 5``).
    """
    t = torch.arange(1, T + 1, dtype=torch.float64)
    alpha = torch.exp(-b_min / T - 0.5 * (b_max - b_min) * (2 * t - 1) / T**2)
    return (1 - alpha).float()


SCHEDULES = {
    "linear": linear_beta_schedule,
    "cosine": cosine_beta_schedule,
    "vp": vp_beta_schedule,
}


def make_betas(name: str, T: int) -> torch.Tensor:
    """Betas of the schedule called ``name`` (``linear``, ``cosine`` or ``vp``) with ``T`` steps."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown beta schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    return SCHEDULES[name](T)


@dataclass(frozen=True)
class ScheduleTerms:
    """Per-step constants of a schedule, float64 tensors of length ``T``.

    ``posterior_*`` describe ``q(x_{t-1} | x_t, x_0) = N(coef1 * x_0 + coef2 * x_t, variance)``;
    ``posterior_log_variance_clipped`` replaces the zero variance at ``t = 0`` by the one at
    ``t = 1`` (as DDPM's reference code does) so its log is finite.
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor


def schedule_terms(betas: torch.Tensor) -> ScheduleTerms:
    """Derive alphas, cumulative products and posterior coefficients from ``betas``."""
    betas = betas.double()
    alphas = 1.0 - betas
    alphas_cumprod = torch.cumprod(alphas, dim=0)
    alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    clipped = (
        torch.cat([posterior_variance[1:2], posterior_variance[1:]]) if len(betas) > 1 else betas
    )
    return ScheduleTerms(
        betas=betas,
        alphas=alphas,
        alphas_cumprod=alphas_cumprod,
        alphas_cumprod_prev=alphas_cumprod_prev,
        posterior_variance=posterior_variance,
        posterior_log_variance_clipped=clipped.log(),
        posterior_mean_coef1=betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod),
        posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod),
    )
