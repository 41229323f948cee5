"""GaussianDiffusion: loss targets, DDPM/DDIM samplers and every sampling hook.

Mode recovery is checked twice: with a denoiser trained briefly on a 2-D Gaussian mixture, and
with the mixture's exact (analytic) noise predictor, which isolates the sampler's arithmetic
from training error. A sample is "near" a mode when within ``NEAR`` of it (3 component stds).
"""

import math

import pytest
import torch
from torch import nn

from algorithms.common.diffusion import (
    ClassifierFreeGuidance,
    ClassifierGuidance,
    GaussianDiffusion,
    WarmStart,
    inpainting,
    value_gradient,
)
from algorithms.common.nets import SinusoidalEmbedding, mlp
from algorithms.common.schedules import make_betas, schedule_terms

MODE_A = torch.tensor([0.6, 0.6])
MODE_B = torch.tensor([-0.6, -0.6])
STD = 0.1
NEAR = 0.3
N_SAMPLES = 1000


def mixture(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples of the equal-weight mixture and a one-hot label of their component."""
    is_a = torch.rand(n) < 0.5
    x = torch.where(is_a[:, None], MODE_A, MODE_B) + STD * torch.randn(n, 2)
    return x, torch.stack([is_a, ~is_a], dim=-1).float()


def share_near(x: torch.Tensor, mode: torch.Tensor) -> float:
    return ((x - mode).norm(dim=-1) < NEAR).float().mean().item()


class Denoiser(nn.Module):
    """Small MLP on ``concat(x_t, embed(t)[, cond])`` following the suite's model-call convention."""

    def __init__(self, cond_dim: int = 0, hidden: int = 128):
        super().__init__()
        self.embed = SinusoidalEmbedding(16)
        self.net = mlp(2 + 16 + cond_dim, 2, hidden, depth=2, activation=nn.SiLU)

    def forward(self, x, t, cond=None):
        parts = [x, self.embed(t)] if cond is None else [x, self.embed(t), cond]
        return self.net(torch.cat(parts, dim=-1))


def train(diffusion, model, steps, p_cond=None, lr=2e-3):
    """Adam with a cosine decay; with ``p_cond`` the one-hot label is kept w.p. ``p_cond``."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        x, label = mixture(256)
        cond = None if p_cond is None else label * (torch.rand(256, 1) < p_cond)
        loss = diffusion.loss(model, x, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained():
    """An x0-predicting denoiser trained briefly on the unconditional mixture."""
    torch.manual_seed(0)
    diffusion = GaussianDiffusion(
        make_betas("cosine", 50), predict_epsilon=False, clip_denoised=(-1, 1)
    )
    return diffusion, train(diffusion, Denoiser(), steps=1500)


class ExactEpsilon(nn.Module):
    """The optimal noise predictor of the mixture: E[eps | x_t] under the forward process."""

    def __init__(self, betas):
        super().__init__()
        self.alpha_bar = schedule_terms(betas).alphas_cumprod.float()

    def forward(self, x, t, cond=None):
        ab = self.alpha_bar[t].unsqueeze(-1)
        var = ab * STD**2 + 1 - ab
        means = torch.stack([MODE_A, MODE_B]) * ab.sqrt().unsqueeze(-1)  # [..., 2 modes, 2]
        logp = -((x.unsqueeze(-2) - means) ** 2).sum(-1) / (2 * var)
        resp = logp.softmax(dim=-1).unsqueeze(-1)
        eps = (1 - ab).sqrt().unsqueeze(-1) * (x.unsqueeze(-2) - means) / var.unsqueeze(-1)
        return (resp * eps).sum(-2)


@pytest.fixture(scope="module")
def exact():
    betas = make_betas("cosine", 100)
    return GaussianDiffusion(betas, predict_epsilon=True), ExactEpsilon(betas)


# ---------------------------------------------------------------------------- training


def test_loss_is_zero_for_a_perfect_denoiser():
    """The target is the drawn noise (epsilon) or x0; weights multiply elementwise."""
    torch.manual_seed(0)
    diffusion = GaussianDiffusion(make_betas("linear", 10))
    x0 = torch.full((64, 3), 0.5)

    def true_noise(x_t, t, cond):
        sqrt_ab = diffusion.sqrt_ac[t].unsqueeze(-1)
        return (x_t - sqrt_ab * x0) / (1 - sqrt_ab**2).sqrt()

    assert diffusion.loss(true_noise, x0).item() < 1e-9
    x0_model = GaussianDiffusion(make_betas("linear", 10), predict_epsilon=False)
    assert x0_model.loss(lambda x_t, t, c: x0, x0).item() == 0.0
    zeros = x0_model.loss(
        lambda x_t, t, c: torch.zeros_like(x_t), x0, weights=torch.tensor([1.0, 0.0, 2.0])
    )
    assert zeros.item() == pytest.approx(0.25)  # mean of (0.25, 0, 0.5) per row


def test_timesteps_span_the_chain():
    diffusion = GaussianDiffusion(make_betas("cosine", 50))
    assert diffusion.timesteps() == list(range(49, -1, -1))
    steps = diffusion.timesteps(ddim_steps=10)
    assert (
        len(steps) == 10
        and steps[0] == 49
        and steps[-1] == 0
        and steps == sorted(steps, reverse=True)
    )
    with pytest.raises(ValueError):
        diffusion.timesteps(ddim_steps=51)


# ---------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("kwargs", [{}, {"ddim_steps": 25}], ids=["ddpm", "ddim"])
def test_trained_denoiser_recovers_both_modes(trained, kwargs):
    """Each mode holds half the mass; a collapsed or mode-averaging sampler fails the 0.3 bar."""
    diffusion, model = trained
    torch.manual_seed(1)
    x = diffusion.sample(model, (N_SAMPLES, 2), **kwargs)
    assert share_near(x, MODE_A) > 0.3 and share_near(x, MODE_B) > 0.3


@pytest.mark.parametrize("kwargs", [{}, {"ddim_steps": 50}], ids=["ddpm", "ddim"])
def test_exact_denoiser_reproduces_the_mixture(exact, kwargs):
    """With the optimal epsilon, samples have the right modes and weights, and a spread close
    to the data's (a 100-step chain under-disperses by up to ~15%, DDPM's known bias)."""
    diffusion, model = exact
    torch.manual_seed(3)
    x = diffusion.sample(model, (N_SAMPLES, 2), **kwargs)
    for mode in (MODE_A, MODE_B):
        near = (x - mode).norm(dim=-1) < NEAR
        assert 0.42 < near.float().mean().item() < 0.58
        std = x[near].std(dim=0)
        assert (std > 0.075).all() and (std < 0.115).all()


def test_ddim_with_all_steps_and_eta_one_is_ddpm(exact):
    diffusion, model = exact
    torch.manual_seed(4)
    ddpm = diffusion.sample(model, (8, 2))
    torch.manual_seed(4)
    ddim = diffusion.sample(model, (8, 2), ddim_steps=diffusion.T, eta=1.0)
    torch.testing.assert_close(ddim, ddpm, atol=1e-4, rtol=1e-4)


def test_zero_temperature_is_deterministic(exact):
    """Temperature scales the initial and the per-step noise: at 0 the chain is deterministic."""
    diffusion, model = exact
    first, second = (diffusion.sample(model, (8, 2), temperature=0.0) for _ in range(2))
    assert torch.equal(first, second)


def test_any_leading_batch_shape_and_t_per_sample():
    diffusion = GaussianDiffusion(make_betas("vp", 5))
    seen = []

    def model(x, t, cond):
        seen.append(t.shape)
        return torch.zeros_like(x)

    x = diffusion.sample(model, (3, 4, 2), ddim_steps=3)
    assert x.shape == (3, 4, 2) and seen == [(3, 4)] * 3
    traj = GaussianDiffusion(make_betas("vp", 5), event_dims=2).sample(model, (3, 8, 5))
    assert traj.shape == (3, 8, 5) and seen[-1] == (3,)


# ---------------------------------------------------------------------------- hooks


@pytest.mark.parametrize("kwargs", [{}, {"ddim_steps": 10}], ids=["ddpm", "ddim"])
def test_inpainting_holds_constraints_exactly(trained, kwargs):
    """Fixing x[0] = 0.6 leaves it exactly 0.6 and pulls the free coordinate to mode A."""
    diffusion, model = trained
    torch.manual_seed(5)
    mask, values = torch.tensor([True, False]), torch.tensor([0.6, 0.0])
    x = diffusion.sample(model, (N_SAMPLES, 2), inpaint=inpainting(mask, values), **kwargs)
    assert (x[:, 0] == 0.6).all()
    assert share_near(x, MODE_A) > 0.8


@pytest.mark.parametrize("kwargs", [{}, {"ddim_steps": 20}], ids=["ddpm", "ddim"])
def test_classifier_guidance_moves_samples_uphill(exact, kwargs):
    diffusion, model = exact
    guide = ClassifierGuidance(
        value_gradient(lambda x, t: -((x - MODE_A) ** 2).sum(-1)), scale=1.0, n_steps=2
    )
    torch.manual_seed(6)
    plain = diffusion.sample(model, (N_SAMPLES, 2), **kwargs)
    torch.manual_seed(6)
    guided = diffusion.sample(model, (N_SAMPLES, 2), guidance=guide, **kwargs)
    assert share_near(guided, MODE_A) > share_near(plain, MODE_A) + 0.3


def test_classifier_guidance_stops_below_t_stopgrad(exact):
    """Guidance only acts for t >= t_stopgrad: at t_stopgrad = T it changes nothing."""
    diffusion, model = exact
    calls = []

    def grad_fn(x, t):
        calls.append(int(t.flatten()[0]))
        return torch.ones_like(x)

    torch.manual_seed(7)
    plain = diffusion.sample(model, (16, 2))
    torch.manual_seed(7)
    off = diffusion.sample(
        model, (16, 2), guidance=ClassifierGuidance(grad_fn, t_stopgrad=diffusion.T)
    )
    assert torch.equal(plain, off) and not calls
    diffusion.sample(model, (16, 2), guidance=ClassifierGuidance(grad_fn, n_steps=2, t_stopgrad=95))
    assert calls == [t for t in range(99, 94, -1) for _ in range(2)]


def test_classifier_free_guidance_combines_conditions_in_one_call():
    """out = out(empty) + w * sum_i (out(c_i) - out(empty)), one batched denoiser call.

    With x0 prediction and a single DDIM step the sample *is* the combined prediction.
    """
    diffusion = GaussianDiffusion(make_betas("vp", 5), predict_epsilon=False)
    calls = []

    def model(x, t, cond):
        calls.append(x.shape[0])
        return cond.expand_as(x)

    empty, c1, c2 = (torch.full((4, 1), v) for v in (1.0, 2.0, 5.0))
    cfg = ClassifierFreeGuidance([c1, c2], scale=0.5)
    x = diffusion.sample(model, (4, 2), empty, ddim_steps=1, cfg=cfg)
    torch.testing.assert_close(x, torch.full((4, 2), 1.0 + 0.5 * ((2 - 1) + (5 - 1))))
    assert calls == [12]


def test_classifier_free_guidance_yields_the_conditioned_mode():
    torch.manual_seed(8)
    diffusion = GaussianDiffusion(
        make_betas("cosine", 20), predict_epsilon=False, clip_denoised=(-1, 1)
    )
    model = train(diffusion, Denoiser(cond_dim=2, hidden=64), steps=600, p_cond=0.5, lr=3e-3)
    empty = torch.zeros(N_SAMPLES, 2)
    for label, mode in (([1.0, 0.0], MODE_A), ([0.0, 1.0], MODE_B)):
        cond = torch.tensor(label).expand(N_SAMPLES, 2)
        x = diffusion.sample(
            model, (N_SAMPLES, 2), empty, cfg=ClassifierFreeGuidance([cond], scale=1.5)
        )
        assert share_near(x, mode) > 0.9


def test_projection_sees_each_update_and_bounds_the_result(exact):
    diffusion, model = exact
    seen = []

    def clamp(x_prev, x_t, t):
        seen.append(t)
        assert x_prev.shape == x_t.shape == (32, 2)
        return x_prev.clamp(-0.1, 0.1)

    x = diffusion.sample(model, (32, 2), ddim_steps=10, projection=clamp)
    assert seen == diffusion.timesteps(10) and (x.abs() <= 0.1).all()


# ---------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("kwargs", [{}, {"ddim_steps": 3, "eta": 0.5}], ids=["ddpm", "ddim"])
def test_differentiable_sampling_reaches_the_first_layer(kwargs):
    torch.manual_seed(9)
    diffusion = GaussianDiffusion(make_betas("vp", 5), clip_denoised=(-1, 1))
    model = Denoiser(hidden=32)
    first = model.net[0].weight
    x = diffusion.sample(model, (16, 2), differentiable=True, **kwargs)
    x.square().sum().backward()
    assert first.grad is not None and first.grad.abs().sum().item() > 0
    assert not diffusion.sample(model, (16, 2), **kwargs).requires_grad


def test_guided_differentiable_sampling_keeps_the_graph():
    torch.manual_seed(10)
    diffusion = GaussianDiffusion(make_betas("vp", 5))
    model = Denoiser(hidden=32)
    guide = ClassifierGuidance(value_gradient(lambda x, t: -x.square().sum(-1)))
    x = diffusion.sample(model, (16, 2), guidance=guide, differentiable=True)
    x.sum().backward()
    assert model.net[0].weight.grad.abs().sum().item() > 0
    assert math.isfinite(x.sum().item())


def test_warm_start_visits_only_the_steps_below_it_and_keeps_its_mode(exact):
    """Denoised from a MODE_A sample noised to a low step, every sample stays at MODE_A (the
    point of warm-started replanning: the previous plan survives), in ``step + 1`` denoiser
    calls; from pure noise the same sampler splits between both modes."""
    diffusion, model = exact
    seen = []

    def counting(x, t, cond):
        seen.append(int(t.flatten()[0]))
        return model(x, t, cond)

    torch.manual_seed(0)
    warm = WarmStart(MODE_A.expand(N_SAMPLES, 2), step=9)
    x = diffusion.sample(counting, (N_SAMPLES, 2), warm=warm)
    assert seen == list(range(9, -1, -1))
    assert share_near(x, MODE_A) > 0.99
    cold = diffusion.sample(model, (N_SAMPLES, 2))
    assert 0.3 < share_near(cold, MODE_A) < 0.7
    seen.clear()
    diffusion.sample(counting, (4, 2), ddim_steps=10, warm=WarmStart(MODE_A, step=30))
    assert seen == [30, 22, 11, 0]  # the step itself, then the DDIM grid below it
