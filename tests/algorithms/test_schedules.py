"""Noise schedules: shapes, ranges, monotonicity, closed-form values and derived terms."""

import math

import pytest
import torch

from algorithms.common.schedules import (
    SCHEDULES,
    cosine_beta_schedule,
    linear_beta_schedule,
    make_betas,
    schedule_terms,
    vp_beta_schedule,
)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("T", [5, 100])
def test_betas_are_float32_in_unit_interval_and_noise_grows(name, T):
    betas = make_betas(name, T)
    assert betas.shape == (T,) and betas.dtype == torch.float32
    assert (betas > 0).all() and (betas < 1).all()
    assert (betas[1:] >= betas[:-1]).all(), "every schedule adds more noise at later steps"
    alphas_cumprod = schedule_terms(betas).alphas_cumprod
    assert (alphas_cumprod[1:] < alphas_cumprod[:-1]).all()


def test_linear_endpoints():
    betas = linear_beta_schedule(1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(2e-2)


def test_vp_known_values():
    # alpha_t = exp(-b_min/T - (b_max - b_min)(2t - 1)/(2 T^2)); T = 5: t = 1 -> exp(-0.218).
    betas = vp_beta_schedule(5)
    assert betas[0].item() == pytest.approx(1 - math.exp(-0.218), rel=1e-6)
    assert betas[-1].item() == pytest.approx(1 - math.exp(-1.802), rel=1e-6)
    # The exponents sum to b_min + (b_max - b_min)/2 for any T: alpha_bar_T = exp(-5.05).
    for T in (5, 50):
        alpha_bar_T = schedule_terms(vp_beta_schedule(T)).alphas_cumprod[-1].item()
        assert alpha_bar_T == pytest.approx(math.exp(-5.05), rel=1e-5)


def test_cosine_matches_closed_form_and_clips_last_beta():
    T, s = 100, 0.008
    alpha_bar = schedule_terms(cosine_beta_schedule(T)).alphas_cumprod

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    assert alpha_bar[T // 2 - 1].item() == pytest.approx(f(T // 2) / f(0), rel=1e-5)
    assert cosine_beta_schedule(T)[-1].item() == pytest.approx(0.999)


def test_posterior_terms_are_consistent():
    terms = schedule_terms(make_betas("cosine", 20))
    ab, ab_prev = terms.alphas_cumprod, terms.alphas_cumprod_prev
    # E[x_{t-1} | x_0] through the posterior: coef1 + coef2 * sqrt(ab_t) = sqrt(ab_{t-1}).
    mean = terms.posterior_mean_coef1 + terms.posterior_mean_coef2 * ab.sqrt()
    torch.testing.assert_close(mean, ab_prev.sqrt())
    # Var[x_{t-1} | x_0] = coef2^2 (1 - ab_t) + posterior variance = 1 - ab_{t-1}.
    var = terms.posterior_mean_coef2**2 * (1 - ab) + terms.posterior_variance
    torch.testing.assert_close(var, 1 - ab_prev)
    assert terms.posterior_variance[0].item() == 0.0
    torch.testing.assert_close(
        terms.posterior_log_variance_clipped[0], terms.posterior_variance[1].log()
    )


def test_unknown_schedule_names_the_valid_ones():
    with pytest.raises(ValueError, match="cosine"):
        make_betas("sigmoid", 10)


@pytest.mark.parametrize("T", [20, 64, 200, 256])
def test_cosine_is_diffusers_official_schedule(T):
    """jannerm/diffuser ``diffuser/models/helpers.py`` ``cosine_beta_schedule``, written out:
    the cosine on ``linspace(0, T + 1, T + 1) / (T + 1)``, clipped at 0.999 (float64 here)."""
    steps = T + 1
    x = torch.linspace(0, steps, steps, dtype=torch.float64)
    alphas_cumprod = torch.cos(((x / steps) + 0.008) / (1 + 0.008) * math.pi * 0.5) ** 2
    alphas_cumprod = alphas_cumprod / alphas_cumprod[0]
    official = (1 - alphas_cumprod[1:] / alphas_cumprod[:-1]).clamp(0, 0.999).float()
    torch.testing.assert_close(cosine_beta_schedule(T), official, rtol=1e-6, atol=0.0)
