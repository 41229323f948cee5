"""Discrete-time Gaussian diffusion shared by every diffusion algorithm in the suite.

One :class:`GaussianDiffusion` holds a noise schedule and the parametrization of the denoiser;
it trains any denoiser with :meth:`GaussianDiffusion.loss` and samples with DDPM ancestral
steps or DDIM (:meth:`GaussianDiffusion.sample`). The denoiser is passed per call, so the same
process trains a live network and samples from its EMA copy.

Model-call convention (every denoiser in the suite follows it)::

    model(x_t, t, cond) -> out
      x_t   float [*batch, *event]   noisy sample; ``event`` is the last ``event_dims`` axes:
                                     [act_dim] for a policy, [horizon, transition_dim] for a planner
      t     int64 [*batch]           diffusion step in 0..T-1 (0 is the least noisy)
      cond  anything the algorithm conditions on (a tensor or a dict of tensors whose leading axes
            are ``batch``, or None); passed through untouched
      out   float [*batch, *event]   predicted noise (``predict_epsilon=True``) or clean sample x_0

Sampling hooks, all optional, in the order they act within one denoising step ``t -> t_prev``:

* ``guidance`` (:class:`ClassifierGuidance`): ``n_steps`` times, ``x_t += scale * var * grad``
  where ``grad = grad_fn(x_t, t)`` is the gradient of a value w.r.t. ``x_t`` (Diffuser's
  ``n_step_guided_p_sample``); skipped for ``t < t_stopgrad``; ``inpaint`` after each move.
* ``cfg`` (:class:`ClassifierFreeGuidance`): the denoiser runs once on the base condition
  ``cond`` (the "empty" one) and once per guided condition ``c_i``, batched into a single call;
  ``out = out(cond) + scale * sum_i (out(c_i) - out(cond))`` (Decision Diffuser, composed).
* ``clip_denoised``: the predicted ``x_0`` is clamped to a range before the update.
* ``projection(x_prev, x_t, t) -> x_prev``: edits the step's result, e.g. SafeDiffuser's
  projection of the update ``x_prev - x_t`` onto a QP's feasible set, or IDQL's clamp.
* ``inpaint(x) -> x``: overwrites fixed entries (Diffuser's ``apply_conditioning``); also applied
  to the initial noise, so constrained entries equal their constraints exactly at the end.

Hooks must be out-of-place so that ``differentiable=True`` sampling (Diffusion-QL backpropagates
its Q loss through the chain) keeps its graph. Guidance gradients enter as constants (no
second-order terms). Do not call a guided sampler under ``torch.inference_mode``: the guide needs
autograd; ``differentiable=False`` already samples without building a graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from algorithms.common.schedules import schedule_terms

Denoiser = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
GradFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ClassifierGuidance:
    """Gradient guidance as in Diffuser: move ``x_t`` uphill on a value before each step.

    ``grad_fn(x_t, t)`` returns d value / d x_t (see :func:`value_gradient`). With
    ``scale_by_variance`` the move is scaled by the step's posterior variance (Diffuser's
    ``scale_grad_by_std``, which in fact multiplies by the variance).
    """

    grad_fn: GradFn
    scale: float = 0.1
    n_steps: int = 1
    t_stopgrad: int = 0
    scale_by_variance: bool = True


@dataclass(frozen=True)
class ClassifierFreeGuidance:
    """Guided conditions ``conds`` (each shaped like the base ``cond``) and the weight ``scale``."""

    conds: Sequence[Any]
    scale: float = 1.0


def value_gradient(value_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> GradFn:
    """Turn ``value_fn(x, t) -> values [*batch]`` into ``grad_fn(x, t) -> d sum(values) / dx``."""

    def grad_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(value_fn(x, t).sum(), x)
        return grad

    return grad_fn


def inpainting(mask: torch.Tensor, values: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Inpainting hook: entries where ``mask`` is True take ``values`` (both broadcast to x)."""
    return lambda x: torch.where(mask, values.to(x.dtype), x)


def _cat_conds(conds: Sequence[Any]) -> Any:
    """Concatenate conditions along axis 0: tensors, or dicts of tensors with the same keys."""
    first = conds[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(conds), dim=0)
    if isinstance(first, dict):
        return {k: _cat_conds([c[k] for c in conds]) for k in first}
    raise TypeError(f"classifier-free guidance needs tensor or dict conditions, got {type(first)}")


@dataclass(frozen=True)
class WarmStart:
    """Sampling that starts from ``x0`` noised to diffusion step ``step`` (``q(x_step | x0)``)
    and denoises from there, visiting only the sampler's steps below it.

    A planner that replans passes its previous plan, shifted to the present, so that each new
    plan costs a fraction ``step / T`` of a cold one (the warm-started replanning of issue 17;
    an option, never a default: the official planners sample every plan from pure noise).
    ``x0`` broadcasts against the sample's shape (e.g. ``[n, 1, H, C]`` for ``P`` candidates).
    """

    x0: torch.Tensor
    step: int

    def steps(self, visited: list[int]) -> list[int]:
        """The descending steps a warm-started sampler visits: ``step`` itself, then those of
        ``visited`` below it."""
        return [self.step, *(i for i in visited if i < self.step)]


class GaussianDiffusion(nn.Module):
    """A noise schedule plus the denoiser's parametrization; see the module docstring.

    ``predict_epsilon``: the denoiser predicts the noise (else ``x_0``). ``clip_denoised``: range
    the predicted ``x_0`` is clamped to while sampling (None: no clamp). ``variance``: DDPM's
    ancestral noise, ``"posterior"`` (beta tilde; Diffuser, Diffusion-QL) or ``"beta"`` (IDQL's
    sampler). ``event_dims``: trailing axes of one sample; the rest are batch axes.
    """

    def __init__(
        self,
        betas: torch.Tensor,
        *,
        predict_epsilon: bool = True,
        clip_denoised: tuple[float, float] | None = None,
        variance: Literal["posterior", "beta"] = "posterior",
        event_dims: int = 1,
    ):
        super().__init__()
        if variance not in ("posterior", "beta"):
            raise ValueError(f"variance must be 'posterior' or 'beta', got {variance!r}")
        terms = schedule_terms(betas)
        self.T = len(betas)
        self.predict_epsilon = predict_epsilon
        self.clip_denoised = clip_denoised
        self.event_dims = event_dims
        ac = terms.alphas_cumprod
        # Training indexes per-sample steps on the device; sampling uses host floats (no syncs).
        self.register_buffer("sqrt_ac", ac.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_1m_ac", (1 - ac).sqrt().float(), persistent=False)
        self._ac = ac.tolist()
        self._coef1 = terms.posterior_mean_coef1.tolist()
        self._coef2 = terms.posterior_mean_coef2.tolist()
        noise_var = terms.posterior_variance if variance == "posterior" else terms.betas
        self._sigma = noise_var.sqrt().tolist()
        # Guidance at the last step scales by the clipped posterior variance (Diffuser's choice).
        self._last_guide_var = terms.posterior_log_variance_clipped[0].exp().item()

    # ------------------------------------------------------------------ training

    def _per_sample(self, coef: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return coef[t].view(*t.shape, *(1,) * self.event_dims)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x_0)`` with the given noise; ``t`` is int64 ``[*batch]``."""
        return self._per_sample(self.sqrt_ac, t) * x0 + self._per_sample(self.sqrt_1m_ac, t) * noise

    def loss(
        self,
        model: Denoiser,
        x0: torch.Tensor,
        cond: Any = None,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean squared error of the denoiser at a uniformly drawn step per sample.

        The target is the noise (``predict_epsilon``) or ``x0``. ``weights`` broadcasts against
        ``x0``: per element (Diffuser's ``action_weight`` on the first action), per sample
        (``[B, 1]``) or a padding mask.
        """
        batch_shape = x0.shape[: x0.dim() - self.event_dims]
        t = torch.randint(0, self.T, batch_shape, device=x0.device)
        noise = torch.randn_like(x0)
        out = model(self.q_sample(x0, t, noise), t, cond)
        err = (out - (noise if self.predict_epsilon else x0)) ** 2
        return (err if weights is None else err * weights).mean()

    # ------------------------------------------------------------------ sampling

    def timesteps(self, ddim_steps: int | None = None) -> list[int]:
        """Descending steps a sampler visits: all ``T`` (DDPM) or ``ddim_steps`` spread evenly."""
        if ddim_steps is None:
            return list(range(self.T - 1, -1, -1))
        if not 1 <= ddim_steps <= self.T:
            raise ValueError(f"ddim_steps must be in [1, {self.T}], got {ddim_steps}")
        grid = torch.linspace(0, self.T - 1, ddim_steps, dtype=torch.float64).round().long()
        return sorted(set(grid.tolist()), reverse=True)

    def predict_x0(self, x_t: torch.Tensor, i: int, out: torch.Tensor) -> torch.Tensor:
        """The denoiser's estimate of ``x_0`` at step ``i``, clamped if ``clip_denoised``."""
        if self.predict_epsilon:
            ac = self._ac[i]
            x0 = x_t / math.sqrt(ac) - math.sqrt(1 / ac - 1) * out
        else:
            x0 = out
        return x0 if self.clip_denoised is None else x0.clamp(*self.clip_denoised)

    def _jump_variance(self, i: int, j: int) -> float:
        """Variance of ``q(x_j | x_i, x_0)`` for ``j < i`` (beta tilde when ``j = i - 1``)."""
        ac_i, ac_j = self._ac[i], self._ac[j] if j >= 0 else 1.0
        return (1 - ac_j) / (1 - ac_i) * (1 - ac_i / ac_j)

    def _denoise(
        self,
        model: Denoiser,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: Any,
        cfg: ClassifierFreeGuidance | None,
    ) -> torch.Tensor:
        if cfg is None or not cfg.conds:
            return model(x, t, cond)
        n = len(cfg.conds) + 1
        out = model(torch.cat([x] * n), torch.cat([t] * n), _cat_conds([cond, *cfg.conds]))
        base, *guided = out.chunk(n)
        return base + cfg.scale * sum(o - base for o in guided)

    def _guide(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        variance: float,
        guidance: ClassifierGuidance,
        inpaint: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> torch.Tensor:
        step = guidance.scale * (variance if guidance.scale_by_variance else 1.0)
        for _ in range(guidance.n_steps):
            x = x + step * guidance.grad_fn(x.detach(), t)
            if inpaint is not None:
                x = inpaint(x)
        return x

    def _ddpm_step(
        self, x: torch.Tensor, x0: torch.Tensor, i: int, temperature: float
    ) -> torch.Tensor:
        mean = self._coef1[i] * x0 + self._coef2[i] * x
        if i == 0:
            return mean
        return mean + (temperature * self._sigma[i]) * torch.randn_like(x)

    def _ddim_step(
        self, x: torch.Tensor, x0: torch.Tensor, i: int, j: int, eta: float, temperature: float
    ) -> torch.Tensor:
        ac_i, ac_j = self._ac[i], self._ac[j] if j >= 0 else 1.0
        eps = (x - math.sqrt(ac_i) * x0) / math.sqrt(1 - ac_i)
        sigma = eta * math.sqrt(self._jump_variance(i, j)) if j >= 0 else 0.0
        x_prev = math.sqrt(ac_j) * x0 + math.sqrt(max(1 - ac_j - sigma**2, 0.0)) * eps
        if sigma == 0.0:
            return x_prev
        return x_prev + (temperature * sigma) * torch.randn_like(x)

    def sample(
        self,
        model: Denoiser,
        shape: Sequence[int],
        cond: Any = None,
        *,
        ddim_steps: int | None = None,
        eta: float = 0.0,
        temperature: float = 1.0,
        guidance: ClassifierGuidance | None = None,
        cfg: ClassifierFreeGuidance | None = None,
        projection: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None = None,
        inpaint: Callable[[torch.Tensor], torch.Tensor] | None = None,
        differentiable: bool = False,
        warm: WarmStart | None = None,
    ) -> torch.Tensor:
        """Denoise ``temperature * N(0, I)`` noise of ``shape`` (``[*batch, *event]``) to step 0.

        ``ddim_steps=None``: DDPM ancestral sampling over all ``T`` steps; otherwise DDIM over
        ``ddim_steps`` evenly spread steps with stochasticity ``eta`` (0: deterministic, 1: DDPM's
        posterior noise). ``temperature`` scales the initial noise and the noise added at each step
        (Decision Diffuser's 0.5; IDQL's ``ddpm_temperature`` scales only the latter, the same at
        its default 1). ``differentiable`` keeps the autograd graph through the whole chain.
        ``warm`` starts from a given sample noised to an intermediate step instead of from pure
        noise (:class:`WarmStart`). Hooks: see the module docstring.
        """
        device = self.sqrt_ac.device
        shape = tuple(shape)
        batch_shape = shape[: len(shape) - self.event_dims]
        steps = self.timesteps(ddim_steps)
        with torch.set_grad_enabled(differentiable):
            x = temperature * torch.randn(shape, device=device)
            if warm is not None:
                steps = warm.steps(steps)
                x = self.q_sample(
                    warm.x0.expand(shape), torch.full(batch_shape, steps[0], device=device), x
                )
            if inpaint is not None:
                x = inpaint(x)
            for k, i in enumerate(steps):
                j = steps[k + 1] if k + 1 < len(steps) else -1
                t = torch.full(batch_shape, i, dtype=torch.long, device=device)
                if guidance is not None and i >= guidance.t_stopgrad:
                    variance = self._jump_variance(i, j) if j >= 0 else self._last_guide_var
                    x = self._guide(x, t, variance, guidance, inpaint)
                x0 = self.predict_x0(x, i, self._denoise(model, x, t, cond, cfg))
                if ddim_steps is None:
                    x_prev = self._ddpm_step(x, x0, i, temperature)
                else:
                    x_prev = self._ddim_step(x, x0, i, j, eta, temperature)
                if projection is not None:
                    x_prev = projection(x_prev, x, i)
                if inpaint is not None:
                    x_prev = inpaint(x_prev)
                x = x_prev
        return x
