"""DiffStitch: Boosting Offline Reinforcement Learning with Diffusion-based Trajectory Stitching
(Li, Shan, Zhu, Long & Zhang, ICML 2024, arXiv:2402.02439). A dataset transform, not an agent
(:class:`algorithms.common.contract.DatasetTransform`): ``augment=diffstitch`` with any ``algo=``.

Method: a return-conditioned diffusion model over state windows, trained with random inpainting
masks, dreams a continuation of a low-return window, finds where it comes close to the start of
a high-return window (cosine similarity) and inpaints the states between the two; inverse dynamics
gives the actions, a learned dynamics and reward ensemble rejects inconsistent stitches, and a
stitch is kept only when the return it leads to beats the source's own.

Official code followed: guangheli12/DiffStitch (commit 084c222): ``scripts/batch_stitch.py``
(window selection, the generation loop and its limit), ``scripts/buffer_utils.py``
(``augment_trajectories_new``: dream, stitch point, stitch, inverse dynamics, dynamics check,
return backup; ``OptimalBuffer``), ``detail_configs/*.py`` (per-dataset settings, :data:`PAPER`),
``diffuser/datasets/sequence.py`` (``CondSequenceDataset``: the training masks),
``diffuser/models/diffusion.py`` (``GaussianInvDynDiffusion``: loss on the generated entries only,
0.5-temperature sampling, classifier-free guidance), ``scripts/mopo/`` (``utils_trans.py``,
``models/transition_model.py``, ``models/ensemble_dynamics.py``, ``algo/mopo.py``: the 7-member
ensemble, 5 elites, swish 4 x 200, Gaussian NLL with learned log-variance bounds, per-layer weight
decay, 20% hold-out with early stopping, the termination rules).

The pipeline, step by step (official names in brackets):
- sources: the ``source_share`` (30%) highest return-to-go starts of windows with more than
  ``horizon`` steps left in their episode (``get_bad_traj``, ``top_k``); targets: the
  ``target_share`` (2%) highest return-to-go windows (``OptimalBuffer``, ``number_optimum``);
- dream: the first ``dream_len`` states of a source window inpainted, the rest sampled at the
  target return (``test_ret``);
- stitch point: among ``target_batch`` (512) random targets, those whose first state has cosine
  similarity >= ``similarity`` with a dreamed state at positions [``stitch_low``,
  ``stitch_high``); one of them at random; the stitch point is the position most similar to its
  first state (``dreamer_similarity``, ``stitch_L``, ``stitch_R``);
- stitch: source states before ``dream_len`` and the target's states from the stitch point on
  inpainted, the states between sampled; actions ``f(s_t, s_t+1)`` by inverse dynamics;
- checks: each stitched transition through a random elite of the ensemble (its mean); rejected
  when the predicted episode ends (the MOPO termination rules) or when the squared distance
  between the stitched and the predicted next state, in normalized units, exceeds ``deviation``
  (``dynamics_deviate``); rewards are the ensemble's;
- return backup: the target's return-to-go backed up through the stitch's rewards must not fall
  below the source's return-to-go, else the stitch is dropped;
- until ``generate_limit`` (2M) accepted transitions, scaled by the run's augmentation budget.

How augmented and original data are mixed: the official repository has no training-side code
(it writes the stitched transitions to a pickle), and the parts of the paper we could read do not
give a ratio; the harness appends the accepted transitions to the original data as separate
episodes and agents sample uniformly over the union (every transition equally likely).

Departures from the official code, and why:
- windows are counted as shares of the dataset (``target_share`` 0.02, ``source_share`` 0.30:
  the official configs' own comments on their absolute ``number_optimum`` / ``top_k``), so forged
  data at any ``data.scale`` selects alike;
- the return backup uses the chosen target's return-to-go; the official indexes the whole
  sorted target buffer with the choice's position in the list of close targets
  (``expert_buffer.info[chosen_index]``), an unrelated, mostly lower, return (a bug); the
  source's return-to-go is read at the
  stitch's first state (the official reads it at the window's start: the same at ``dream_len`` 1);
- the stitch's first state and last next state are written as the exact source and target states
  (the official unnormalizes its CDF-normalized inpainted copies, which round-trip inexactly);
- the segment sampler pads past an episode's end by repeating its last state (the official pads
  with zeros), as in :mod:`algorithms.decision_diffuser`; the return condition and termination
  penalty are the harness's ``returns_to_go`` with ``terminal_reward`` -100, the same quantity;
  the inverse-dynamics loss skips pairs that reach into the padding (the official fits them too);
- the CDF normalizer interpolates the dataset's 1001 quantiles (official: every distinct value);
- the dynamics ensemble holds out a random 20% of the transitions (official: the buffer's last
  20%, in file order) and is batched as one network with per-member weights; its inputs are
  z-scored with the training split's statistics as the official's ``StandardNormalizer``;
  MOPO's cap of 800k ensemble updates is not applied (the patience rule stops far earlier);
- termination rules: MOPO's for hopper, walker2d, halfcheetah (hopper's ``|s[1:]| < 100`` taken
  with the absolute value the official's ``np.abs(x < 100)`` meant); other tasks have no rule, so
  only the deviation check applies there;
- the generation loop stops also after ``max_rounds`` rounds (official: 300000 iterations), scaled
  by the budget like the training length and the limit, so a tiny budget ends;
- the diffusion model trains for ``train_steps`` x budget updates (official 1M), batch 64 in one
  step (official 32 x 2 accumulation).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
from scipy.signal import lfilter
from torch import Tensor, nn

from algorithms.common.contract import Augmented, DatasetStats, DataSpec, TaskInfo
from algorithms.common.defaults import PaperDefaults, Settings, fill
from algorithms.common.diffusion import GaussianDiffusion
from algorithms.common.nets import EMA
from algorithms.common.planning import (
    NORMALIZERS,
    InverseDynamics,
    StateLayout,
    clip_range,
    condition,
    dropped,
    guided,
    make_normalizer,
    returns_scale,
    with_inpainting,
)
from algorithms.common.schedules import make_betas
from algorithms.common.unet import TemporalUnet

_CONFIG = "guangheli12/DiffStitch detail_configs/{}.py"
# Per dataset, from its detail config: test_ret, dynamics_deviate, dreamer_similarity and
# returns_scale (the diffusion model's returns divisor).
_DATASETS = {
    "hopper-medium-replay-v2": (0.85, 0.8, 0.9, 400.0),
    "hopper-medium-v2": (0.9, 1.5, 0.8, 400.0),
    "hopper-medium-expert-v2": (0.9, 1.0, 0.8, 400.0),
    "halfcheetah-medium-replay-v2": (0.35, 1.0, 0.9, 400.0),
    "halfcheetah-medium-v2": (0.5, 1.5, 0.9, 1200.0),
    "halfcheetah-medium-expert-v2": (0.92, 1.5, 0.9, 400.0),
    "walker2d-medium-v2": (0.92, 1.2, 0.9, 400.0),
    "walker2d-medium-expert-v2": (0.8, 1.2, 0.9, 400.0),
}
_KEYS = ("target_return", "deviation", "similarity", "returns_scale")
PAPER = PaperDefaults(
    families={
        # Tasks without a config take the template's stitching settings (every config copies
        # hopper_medium_replay_v2.py) and the returns scale of the data (planning.returns_scale).
        "default": Settings(
            _CONFIG.format("hopper_medium_replay_v2") + " (the template of every config)",
            {"target_return": 0.85, "deviation": 0.8, "similarity": 0.9},
        )
    },
    datasets={
        task: Settings(_CONFIG.format(task.replace("-", "_")), dict(zip(_KEYS, v, strict=True)))
        for task, v in _DATASETS.items()
    },
)


def hopper_done(s: np.ndarray) -> np.ndarray:
    """MOPO's hopper rule (``StaticFnsHopper``): fallen, tilted or diverged next states."""
    healthy = np.isfinite(s).all(-1) & (np.abs(s[:, 1:]) < 100).all(-1)
    return ~(healthy & (s[:, 0] > 0.7) & (np.abs(s[:, 1]) < 0.2))


def walker2d_done(s: np.ndarray) -> np.ndarray:
    """MOPO's walker2d rule (``StaticFnsWalker2d``): torso height or angle out of range."""
    return ~((s[:, 0] > 0.8) & (s[:, 0] < 2.0) & (s[:, 1] > -1.0) & (s[:, 1] < 1.0))


def never_done(s: np.ndarray) -> np.ndarray:
    """MOPO's halfcheetah rule (``StaticFnsCheetah``): it never terminates."""
    return np.zeros(len(s), dtype=bool)


# The termination rules of scripts/mopo/utils_trans.py: next states [N, S] -> done [N].
TERMINATION: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "hopper": hopper_done,
    "walker2d": walker2d_done,
    "halfcheetah": never_done,
}


@dataclass
class Config:
    """DiffStitch's settings; ``None`` fields take :data:`PAPER`'s value for the dataset."""

    # -- the state-window diffusion model (detail_configs/*.py, GaussianInvDynDiffusion)
    horizon: int = 100  # states per window the model generates
    n_diffusion_steps: int = 100  # diffusion steps T of the cosine schedule
    dim: int = 128  # base channel width of the temporal U-Net
    dim_mults: tuple[int, ...] = (1, 4, 8)  # U-Net channel multipliers per resolution
    condition_dropout: float = 0.25  # probability of dropping the return condition in training
    guidance_scale: float = 1.2  # classifier-free guidance weight w (condition_guidance_w)
    returns_scale: float | None = None  # returns-to-go divisor (None off the configs: the data's)
    termination_penalty: float = -100.0  # added to terminal rewards of the returns-to-go
    discount: float = 0.99  # discount of every return-to-go (windows, backup)
    inv_hidden: int = 256  # hidden width of the 2-layer inverse-dynamics MLP (hidden_dim)
    normalizer: str = "cdf"  # states and actions: cdf (official), limits or gaussian
    temperature: float = 0.5  # scale of the sampler's initial and per-step noise
    lr: float = 2e-4  # Adam learning rate of the U-Net and inverse dynamics together
    batch_size: int = 64  # windows per update (official 32 x 2 accumulation steps)
    ema_decay: float = 0.995  # decay of the U-Net's EMA copy, which samples
    ema_start: int = 2000  # updates before the EMA starts averaging
    ema_every: int = 10  # updates between EMA updates
    train_steps: int = 1_000_000  # diffusion-model updates at budget 1 (n_train_steps)
    ddim_steps: int | None = None  # sampler steps; None: all T DDPM steps (official)
    # -- stitching (scripts/batch_stitch.py, scripts/buffer_utils.py)
    target_return: float | None = None  # normalized return the dream and stitch aim at (test_ret)
    dream_len: int = 1  # source states inpainted at the window's start
    stitch_low: int = 10  # first position searched for the stitch point (stitch_L)
    stitch_high: int = 40  # end (exclusive) of the positions searched (stitch_R)
    similarity: float | None = None  # least cosine similarity at the stitch (dreamer_similarity)
    deviation: float | None = None  # largest squared normalized state error (dynamics_deviate)
    source_share: float = 0.3  # share of the data's window starts that are sources (top_k)
    target_share: float = 0.02  # share of the data's windows that are targets (number_optimum)
    stitch_batch: int = 64  # stitches attempted per round, sampled in one batch (stitch_batch)
    target_batch: int = 512  # random targets searched per stitch (sample_optim_batch)
    generate_limit: int = 2_000_000  # accepted transitions at budget 1 (generate_limit)
    max_rounds: int = 300_000  # rounds at budget 1 before giving up (the official loop bound)
    # -- the dynamics and reward ensemble (scripts/mopo)
    ensemble_size: int = 7  # members of the dynamics ensemble
    n_elites: int = 5  # members with the lowest hold-out error that predict
    dynamics_hidden: int = 200  # hidden width of each member
    dynamics_depth: int = 4  # hidden layers of each member (swish)
    dynamics_lr: float = 1e-3  # Adam learning rate of the ensemble
    dynamics_batch: int = 256  # transitions per ensemble update (model_batch_size)
    holdout_ratio: float = 0.2  # share of transitions held out to pick elites and stop
    dynamics_patience: int = 5  # epochs without a 1% hold-out improvement before stopping
    dynamics_max_epochs: int | None = None  # cap on ensemble epochs (None: patience alone)
    weight_decay: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)  # L2 per layer


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with :data:`PAPER`'s values and the data's returns scale filled in, checked."""
    if cfg.normalizer not in NORMALIZERS:
        raise ValueError(
            f"augment.normalizer={cfg.normalizer!r} is not valid; valid: {', '.join(NORMALIZERS)}"
        )
    out = dataclasses.replace(
        fill(cfg, PAPER, info),
        dim_mults=tuple(cfg.dim_mults),
        weight_decay=tuple(cfg.weight_decay),
    )
    if out.returns_scale is None:
        out = dataclasses.replace(out, returns_scale=returns_scale(stats, out.discount))
    if not 1 <= out.dream_len < out.stitch_low < out.stitch_high <= out.horizon:
        raise ValueError(
            f"augment.dream_len={out.dream_len}, augment.stitch_low={out.stitch_low}, "
            f"augment.stitch_high={out.stitch_high} are not valid; valid: 1 <= dream_len < "
            f"stitch_low < stitch_high <= horizon ({out.horizon})"
        )
    if len(out.weight_decay) != out.dynamics_depth + 1:
        raise ValueError(
            f"augment.weight_decay has {len(out.weight_decay)} values; valid: one per layer, "
            f"dynamics_depth + 1 = {out.dynamics_depth + 1}"
        )
    if not 1 <= out.n_elites <= out.ensemble_size:
        raise ValueError(
            f"augment.n_elites={out.n_elites} is not valid; valid: 1..augment.ensemble_size"
        )
    for name in ("source_share", "target_share"):
        if not 0 < getattr(out, name) <= 1:
            raise ValueError(f"augment.{name}={getattr(out, name)} is not valid; valid: (0, 1]")
    return out


def scaled(count: int, budget: float) -> int:
    """A length of the paper's schedule scaled by the augmentation budget (at least 1)."""
    return max(1, math.ceil(count * budget))


# ------------------------------------------------------------------------------------------ windows


def episode_bounds(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Start and (exclusive) end index of every episode: terminals, timeouts, the last row."""
    done = arrays["terminals"].astype(bool) | arrays["timeouts"].astype(bool)
    done[-1] = True
    ends = np.flatnonzero(done) + 1
    return np.r_[0, ends[:-1]], ends


def returns_to_go(rewards: np.ndarray, starts: np.ndarray, ends: np.ndarray, gamma: float):
    """Discounted return from every step to its episode's end (float64)."""
    out = np.empty(len(rewards), dtype=np.float64)
    for a, b in zip(starts, ends, strict=True):
        out[a:b] = lfilter([1.0], [1.0, -gamma], rewards[a:b][::-1].astype(np.float64))[::-1]
    return out


@dataclass(frozen=True)
class Windows:
    """Window starts (global row indices) with the return-to-go from each, best last."""

    starts: np.ndarray
    returns: np.ndarray


def top_windows(arrays: dict[str, np.ndarray], horizon: int, gamma: float, share: float) -> Windows:
    """The ``share`` of the data's rows with the highest return-to-go among the starts with more
    than ``horizon`` steps left in their episode (``get_bad_traj`` / ``OptimalBuffer``)."""
    starts, ends = episode_bounds(arrays)
    rtg = returns_to_go(arrays["rewards"], starts, ends, gamma)
    left = np.repeat(ends, ends - starts) - np.arange(len(rtg))
    candidates = np.flatnonzero(left > horizon)
    if len(candidates) == 0:
        raise ValueError(
            f"no episode has more than augment.horizon={horizon} steps; DiffStitch needs longer "
            "episodes (or a shorter horizon)"
        )
    count = min(len(candidates), max(1, round(share * len(rtg))))
    order = np.argsort(rtg[candidates], kind="stable")[-count:]
    chosen = candidates[order]
    return Windows(chosen, rtg[chosen])


# ---------------------------------------------------------------------------------- diffusion model


def random_block_mask(batch: int, horizon: int, generator: torch.Generator | None = None):
    """Known steps ``[B, H]`` of ``CondSequenceDataset``: the first state and one random block
    ``[s, e]`` with ``s`` uniform in ``[1, H - 2]`` and ``e`` uniform in ``[s, H - 2]``."""
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(batch, 2, device=device, generator=generator)
    s = 1 + (u[:, 0] * (horizon - 2)).long()
    e = s + (u[:, 1] * (horizon - 1 - s)).long()
    steps = torch.arange(horizon, device=device)
    known = (steps >= s[:, None]) & (steps <= e[:, None])
    known[:, 0] = True
    return known


def stitch_diffusion_loss(
    model: TemporalUnet,
    diffusion: GaussianDiffusion,
    states: Tensor,
    known: Tensor,
    returns: Tensor,
    dropout: float,
) -> Tensor:
    """Noise-prediction loss on normalized windows ``[B, H, S]`` whose ``known`` steps ``[B, H]``
    are inpainted in the noisy input and carry no loss; the return ``[B, 1]`` is dropped with
    probability ``dropout`` (classifier-free guidance)."""
    mask = known[..., None].expand_as(states)
    hook = lambda x: torch.where(mask, states, x)  # noqa: E731
    return diffusion.loss(
        with_inpainting(model, hook), states, dropped(returns, dropout), (~mask).float()
    )


class Stitcher(nn.Module):
    """The U-Net, its EMA copy and the inverse dynamics; samples windows with inpainting."""

    def __init__(self, cfg: Config, obs_dim: int, act_dim: int, device: torch.device):
        super().__init__()
        self.cfg = cfg
        self.model = TemporalUnet(obs_dim, cfg.dim, cfg.dim_mults, cond_dim=1).to(device)
        self.inverse = InverseDynamics(obs_dim, act_dim, cfg.inv_hidden).to(device)
        self.ema = EMA(self.model, decay=cfg.ema_decay, start=cfg.ema_start, every=cfg.ema_every)
        self.diffusion = GaussianDiffusion(
            make_betas("cosine", cfg.n_diffusion_steps),
            predict_epsilon=True,
            clip_denoised=clip_range(1.0),
            event_dims=2,
        ).to(device)

    def sample(self, known: Tensor, values: Tensor) -> Tensor:
        """Windows ``[B, H, S]`` with ``values`` at the ``known`` steps ``[B, H]``, the rest
        sampled at the target return with classifier-free guidance."""
        cfg = self.cfg
        target = torch.full((len(values), 1), cfg.target_return, device=values.device)
        base, guide = guided([condition(target)], cfg.guidance_scale)
        mask = known[..., None].expand_as(values)
        return self.diffusion.sample(
            self.ema.model,
            values.shape,
            base,
            ddim_steps=cfg.ddim_steps,
            temperature=cfg.temperature,
            cfg=guide,
            inpaint=lambda x: torch.where(mask, values, x),
        )


def train_stitcher(stitcher: Stitcher, norm, sampler, steps: int) -> dict[str, float]:
    """``steps`` updates of ``(diffusion loss + inverse-dynamics loss) / 2`` with random block
    masks; returns the last losses."""
    cfg = stitcher.cfg
    params = [*stitcher.model.parameters(), *stitcher.inverse.parameters()]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    losses = (torch.zeros(()), torch.zeros(()))
    every = max(1, steps // REPORTS_PER_TRAINING)
    for step in range(1, steps + 1):
        batch = sampler.sample()
        states = norm.states(batch["observations"])
        known = random_block_mask(len(states), cfg.horizon).to(states.device)
        returns = batch["returns_to_go"][:, :1] / cfg.returns_scale
        plan_loss = stitch_diffusion_loss(
            stitcher.model, stitcher.diffusion, states, known, returns, cfg.condition_dropout
        )
        inverse_loss = stitcher.inverse.loss(states, norm.actions(batch["actions"]), batch["mask"])
        optimizer.zero_grad(set_to_none=True)
        (0.5 * (plan_loss + inverse_loss)).backward()
        optimizer.step()
        stitcher.ema.update(stitcher.model)
        losses = (plan_loss.detach(), inverse_loss.detach())
        if step % every == 0:
            report(
                f"update {step:,}/{steps:,}: diffusion loss {float(losses[0]):.4f}, "
                f"inverse loss {float(losses[1]):.4f}"
            )
    return {"diffusion_loss": float(losses[0]), "inverse_loss": float(losses[1])}


# -------------------------------------------------------------------------------- dynamics ensemble


class EnsembleLinear(nn.Module):
    """``E`` independent linear layers applied at once: ``[E, N, in] -> [E, N, out]``."""

    def __init__(self, members: int, d_in: int, d_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(members, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, d_out).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class DynamicsEnsemble(nn.Module):
    """MOPO's ensemble: each member maps z-scored ``(s, a)`` to a Gaussian over ``(s' - s, r)``
    with a log-variance softly bounded by learned ``max_logvar`` / ``min_logvar``."""

    def __init__(self, cfg: Config, obs_dim: int, act_dim: int):
        super().__init__()
        widths = [obs_dim + act_dim, *[cfg.dynamics_hidden] * cfg.dynamics_depth]
        self.out_dim = obs_dim + 1
        self.layers = nn.ModuleList(
            EnsembleLinear(cfg.ensemble_size, a, b) for a, b in pairwise(widths)
        )
        self.head = EnsembleLinear(cfg.ensemble_size, widths[-1], 2 * self.out_dim)
        self.max_logvar = nn.Parameter(torch.full((1, self.out_dim), 0.5))
        self.min_logvar = nn.Parameter(torch.full((1, self.out_dim), -10.0))
        for name in ("in_mean", "in_std"):
            self.register_buffer(name, torch.zeros(obs_dim + act_dim))
        self.register_buffer("elites", torch.arange(cfg.n_elites))
        self.decay = cfg.weight_decay

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance ``[E, N, S + 1]`` for raw inputs ``[N or E x N, S + A]``."""
        h = (x - self.in_mean) / self.in_std
        h = h.expand(len(self.head.weight), *h.shape[-2:]) if h.dim() == 2 else h
        for layer in self.layers:
            h = nn.functional.silu(layer(h))
        mean, logvar = self.head(h).chunk(2, dim=-1)
        logvar = self.max_logvar - nn.functional.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + nn.functional.softplus(logvar - self.min_logvar)
        return mean, logvar

    def decay_loss(self) -> Tensor:
        weights = [layer.weight for layer in (*self.layers, self.head)]
        return sum(c * (w**2).sum() for c, w in zip(self.decay, weights, strict=True))

    @torch.no_grad()
    def predict(
        self, obs: Tensor, act: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Next states and rewards: the mean of one random elite per row (``deterministic``)."""
        mean, _ = self(torch.cat([obs, act], dim=-1))
        pick = self.elites[
            torch.randint(len(self.elites), (len(obs),), device=obs.device, generator=generator)
        ]
        out = mean[pick, torch.arange(len(obs), device=obs.device)]
        return obs + out[:, :-1], out[:, -1]


def dynamics_nll_loss(model: DynamicsEnsemble, inputs: Tensor, targets: Tensor) -> Tensor:
    """MOPO's training loss: per member the Gaussian NLL terms (mse / var + mean log-var), summed
    over members, plus the log-variance bound penalty and the weight decay."""
    mean, logvar = model(inputs)
    mse = (((mean - targets) ** 2) * torch.exp(-logvar)).mean(dim=(1, 2)).sum()
    var = logvar.mean(dim=(1, 2)).sum()
    bounds = 0.01 * model.max_logvar.sum() - 0.01 * model.min_logvar.sum()
    return mse + var + bounds + model.decay_loss()


@torch.no_grad()
def holdout_mse(model: DynamicsEnsemble, inputs: Tensor, targets: Tensor) -> Tensor:
    """Each member's mean squared error on the hold-out set ``[E]``."""
    mse = torch.zeros(len(model.head.weight), device=inputs.device)
    for i in range(0, len(inputs), 10_000):
        mean, _ = model(inputs[i : i + 10_000])
        mse += ((mean - targets[i : i + 10_000]) ** 2).sum(dim=(1, 2))
    return mse / (len(inputs) * targets.shape[-1])


def train_dynamics(
    cfg: Config, arrays: dict[str, np.ndarray], device: torch.device, rng: np.random.Generator
) -> tuple[DynamicsEnsemble, dict[str, float]]:
    """Fit the ensemble as MOPO's ``learn_dynamics``: hold out ``holdout_ratio``, train epochs of
    shuffled batches until no member improved its hold-out error by 1% for ``dynamics_patience``
    epochs, keep each member's best weights, elites by hold-out error."""
    obs, act = arrays["observations"], arrays["actions"]
    inputs = torch.as_tensor(np.concatenate([obs, act], axis=-1), device=device)
    targets = np.concatenate([arrays["next_observations"] - obs, arrays["rewards"][:, None]], -1)
    targets = torch.as_tensor(targets, dtype=torch.float32, device=device)
    perm = torch.as_tensor(rng.permutation(len(inputs)), device=device)
    n_hold = max(1, int(len(inputs) * cfg.holdout_ratio))
    hold, train = perm[:n_hold], perm[n_hold:]
    model = DynamicsEnsemble(cfg, obs.shape[-1], act.shape[-1]).to(device)
    model.in_mean.copy_(inputs[train].mean(0))
    model.in_std.copy_(inputs[train].std(0).clamp(min=1e-12))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.dynamics_lr)
    best = holdout_mse(model, inputs[hold], targets[hold])
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    epoch = since_best = 0
    while since_best < cfg.dynamics_patience and epoch != cfg.dynamics_max_epochs:
        order = train[torch.as_tensor(rng.permutation(len(train)), device=device)]
        for i in range(0, len(order), cfg.dynamics_batch):
            idx = order[i : i + cfg.dynamics_batch]
            loss = dynamics_nll_loss(model, inputs[idx], targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        epoch += 1
        mse = holdout_mse(model, inputs[hold], targets[hold])
        better = (best - mse) / best > 0.01
        since_best = 0 if bool(better.any()) else since_best + 1
        best = torch.where(better, mse, best)
        keep_member_weights(snapshot, model.state_dict(), better)
    model.load_state_dict(snapshot)
    mse = holdout_mse(model, inputs[hold], targets[hold])
    model.elites.copy_(torch.argsort(mse)[: cfg.n_elites])
    return model, {"dynamics_epochs": epoch, "dynamics_holdout_mse": float(mse.min())}


def keep_member_weights(snapshot: dict, current: dict, better: Tensor) -> None:
    """Copy into ``snapshot`` the per-member weights of members flagged ``better`` (MOPO's
    per-member best snapshots); shared tensors (bounds, input statistics) follow the model."""
    for key, value in current.items():
        if value.dim() == 3 and len(value) == len(better):
            snapshot[key] = torch.where(better[:, None, None], value, snapshot[key])
        else:
            snapshot[key] = value.clone()


# ---------------------------------------------------------------------------------------- stitching


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of every row of ``a [B, P, S]`` with every row of ``b [B, M, S]``."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    return a @ b.transpose(1, 2)


@dataclass
class Round:
    """One batch of stitch attempts: what each attempt found and where."""

    source: np.ndarray  # [B] global row of each source window's first state
    target: np.ndarray  # [B] global row of the chosen target window's first state (-1: none)
    target_rtg: np.ndarray  # [B] return-to-go of the chosen target window
    point: np.ndarray  # [B] stitch point: window position where the target's states begin


def choose_targets(
    dreams: Tensor,
    targets: Windows,
    target_states: Tensor,
    cfg: Config,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each dream ``[B, H, S]`` (normalized): ``target_batch`` random targets, those whose
    first state (normalized ``target_states [n_targets, S]``) is ``similarity``-close to a dreamed
    state in [``stitch_low``, ``stitch_high``), one at random, and the position most similar to
    it. Returns target indices (-1: none close), their rows' positions and the stitch points."""
    n, m = len(dreams), min(cfg.target_batch, len(targets.starts))
    picks = np.stack([rng.choice(len(targets.starts), m, replace=False) for _ in range(n)])
    firsts = target_states[torch.as_tensor(picks, device=dreams.device)]  # [B, M, S]
    sim = cosine(dreams[:, cfg.stitch_low : cfg.stitch_high], firsts).cpu().numpy()  # [B, P, M]
    close = (sim >= cfg.similarity).any(axis=1)  # [B, M]
    chosen = np.full(n, -1)
    point = np.zeros(n, dtype=np.int64)
    for b in np.flatnonzero(close.any(axis=1)):
        j = rng.choice(np.flatnonzero(close[b]))
        chosen[b] = picks[b, j]
        point[b] = cfg.stitch_low + int(np.argmax(sim[b, :, j]))
    return chosen, picks, point


def data_target_rate(
    cfg: Config,
    obs: np.ndarray,
    sources: Windows,
    targets: Windows,
    target_states: Tensor,
    norm,
    rng: np.random.Generator,
    n: int = 1024,
) -> float:
    """The share of ``n`` random source windows whose own continuation in the data finds a
    target by :func:`choose_targets`' rule: the rate a perfect dream would reach. Beside the
    dreams' rate it tells an undertrained model (dreams far below it) from a threshold the data
    cannot meet (both low)."""
    pick = rng.integers(len(sources.starts), size=n)
    real = torch.as_tensor(window_states(obs, sources.starts[pick], cfg.horizon))
    chosen, _, _ = choose_targets(
        norm.states(real.to(target_states.device)), targets, target_states, cfg, rng
    )
    return float(np.mean(chosen >= 0))


def window_states(obs: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
    """The ``horizon`` raw states from each start ``[B, H, S]`` (windows lie inside episodes)."""
    return obs[starts[:, None] + np.arange(horizon)]


def stitch_round(
    cfg: Config,
    stitcher: Stitcher,
    norm,
    arrays: dict[str, np.ndarray],
    sources: Windows,
    targets: Windows,
    target_states: Tensor,
    rng: np.random.Generator,
    device: torch.device,
) -> tuple[Round, Tensor, Tensor]:
    """Dream from ``stitch_batch`` random sources, pick a target and stitch point for each, and
    inpaint the stitches. Returns the round and the raw stitched windows ``[B, H, S]`` with their
    normalized copies."""
    h, k = cfg.horizon, cfg.dream_len
    pick = rng.integers(len(sources.starts), size=cfg.stitch_batch)
    src = sources.starts[pick]
    obs = arrays["observations"]
    src_raw = torch.as_tensor(window_states(obs, src, h), device=device)
    src_norm = norm.states(src_raw)
    known = torch.zeros(len(src), h, dtype=torch.bool, device=device)
    known[:, :k] = True
    dreams = stitcher.sample(known, torch.where(known[..., None], src_norm, 0.0))
    chosen, _, point = choose_targets(dreams, targets, target_states, cfg, rng)
    found = chosen >= 0
    tgt = np.where(found, targets.starts[np.maximum(chosen, 0)], 0)
    tgt_raw = torch.as_tensor(window_states(obs, tgt, h), device=device)
    # the target's states shifted so that its first state sits at the stitch point
    steps = np.arange(h)
    shift = np.clip(steps[None] - point[:, None], 0, h - 1)
    rows = torch.arange(len(tgt), device=device)[:, None]
    tgt_raw = tgt_raw[rows, torch.as_tensor(shift, device=device)]
    tail = torch.as_tensor(steps[None] >= np.where(found, point, h)[:, None], device=device)
    known = known | tail
    raw = torch.where(known[..., None], torch.where(tail[..., None], tgt_raw, src_raw), 0.0)
    stitched = stitcher.sample(known, torch.where(known[..., None], norm.states(raw), 0.0))
    stitched_raw = torch.where(known[..., None], raw, norm.unstates(stitched))
    rnd = Round(src, np.where(found, tgt, -1), np.where(found, targets.returns[chosen], 0.0), point)
    return rnd, stitched_raw, stitched


@dataclass
class Checked:
    """The verdict on each attempt of a round and the transitions of the accepted ones."""

    status: np.ndarray  # [B]: "no_target", "terminated", "deviated", "worse" or "accepted"
    pieces: list[dict[str, np.ndarray]]  # each accepted stitch's transitions, D4RL layout
    generated: int  # transitions of the attempts that found a target (before any check)


def check_stitches(
    cfg: Config,
    rnd: Round,
    raw: Tensor,
    normed: Tensor,
    stitcher: Stitcher,
    norm,
    dynamics: DynamicsEnsemble,
    source_rtg: np.ndarray,
    terminates: Callable[[np.ndarray], np.ndarray] | None,
    generator: torch.Generator,
) -> Checked:
    """Actions by inverse dynamics, then the dynamics check, termination and return backup
    (``augment_trajectories_new``). Transition ``i`` of a stitch goes from position ``i - 1`` to
    ``i`` for ``i`` in ``[dream_len, point]``."""
    b, h, s = raw.shape
    with torch.no_grad():
        actions = norm.unactions(stitcher.inverse(normed[:, :-1], normed[:, 1:]))  # [B, H-1, A]
        prev, nxt = raw[:, :-1].reshape(-1, s), raw[:, 1:].reshape(-1, s)
        pred, reward = dynamics.predict(prev, actions.reshape(b * (h - 1), -1), generator)
        error = ((norm.states(nxt) - norm.states(pred)) ** 2).sum(-1).view(b, h - 1)
    pred_np = pred.view(b, h - 1, s).cpu().numpy()
    error, reward = error.cpu().numpy(), reward.view(b, h - 1).cpu().numpy()
    raw_np, act_np = raw.cpu().numpy(), actions.cpu().numpy()
    status = np.full(b, "no_target", dtype=object)
    pieces, generated = [], 0
    for j in np.flatnonzero(rnd.target >= 0):
        steps = slice(cfg.dream_len - 1, int(rnd.point[j]))  # transition rows (from position)
        generated += steps.stop - steps.start
        if terminates is not None and terminates(pred_np[j, steps]).any():
            status[j] = "terminated"
            continue
        if (error[j, steps] > cfg.deviation).any():
            status[j] = "deviated"
            continue
        backed = rnd.target_rtg[j]
        for r in reward[j, steps][::-1]:
            backed = backed * cfg.discount + float(r)
        if source_rtg[j] > backed:
            status[j] = "worse"
            continue
        status[j] = "accepted"
        pieces.append(piece(raw_np[j], act_np[j], reward[j], steps, backed, source_rtg[j]))
    return Checked(status, pieces, generated)


def piece(raw, actions, rewards, steps: slice, backed: float, source_rtg: float) -> dict:
    """One accepted stitch as D4RL-layout transitions, its last step flagged ``timeouts``."""
    n = steps.stop - steps.start
    timeouts = np.zeros(n, dtype=bool)
    timeouts[-1] = True
    return {
        "observations": raw[steps].astype(np.float32),
        "actions": actions[steps].astype(np.float32),
        "rewards": rewards[steps].astype(np.float32),
        "next_observations": raw[steps.start + 1 : steps.stop + 1].astype(np.float32),
        "terminals": np.zeros(n, dtype=bool),
        "timeouts": timeouts,
        "backed_up_return": np.full(n, backed, dtype=np.float32),
        "source_return": np.full(n, source_rtg, dtype=np.float32),
    }


# ------------------------------------------------------------------------------------ the transform


REPORT_EVERY = 10  # stitch rounds between progress lines
REPORTS_PER_TRAINING = 10  # progress lines over the diffusion model's training


def report(line: str) -> None:
    """A progress line on stderr (the stage can run for hours at the paper's budget)."""
    print(f"[diffstitch] {line}", file=sys.stderr, flush=True)


def termination_rule(info: TaskInfo) -> Callable[[np.ndarray], np.ndarray] | None:
    """MOPO's termination rule for the task's environment, if it has one."""
    return next((f for env, f in TERMINATION.items() if info.data_id.startswith(env)), None)


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
    """DiffStitch's pipeline (module docstring) on ``arrays``; see the contract's
    :class:`~algorithms.common.contract.DatasetTransform`."""
    cfg = resolve(cfg, info, stats)
    device = torch.device(device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    layout = StateLayout(tuple(range(info.obs_dim)))
    norm = make_normalizer(cfg.normalizer, stats, layout, device)
    spec = DataSpec(
        kind="segments",
        batch_size=cfg.batch_size,
        horizon=cfg.horizon,
        discount=cfg.discount,
        terminal_reward=cfg.termination_penalty,
    )
    stitcher = Stitcher(cfg, info.obs_dim, info.act_dim, device)
    steps = scaled(cfg.train_steps, budget)
    report(f"training the diffusion model and inverse dynamics ({steps:,} updates)")
    losses = train_stitcher(stitcher, norm, sampler(spec, seed), steps)
    report(f"training the dynamics ensemble ({cfg.ensemble_size} members): {losses}")
    dynamics, dyn_stats = train_dynamics(cfg, arrays, device, rng)
    report(f"stitching: {dyn_stats}")
    sources = top_windows(arrays, cfg.horizon, cfg.discount, cfg.source_share)
    targets = top_windows(arrays, cfg.horizon, cfg.discount, cfg.target_share)
    target_states = norm.states(
        torch.as_tensor(arrays["observations"][targets.starts], device=device)
    )
    reachable = data_target_rate(
        cfg,
        arrays["observations"],
        sources,
        targets,
        target_states,
        norm,
        np.random.default_rng([seed, 1]),  # its own stream: the stitches' draws stay as they were
    )
    report(f"{reachable:.1%} of source windows reach a target along the data's own states")
    starts, ends = episode_bounds(arrays)
    rtg = returns_to_go(arrays["rewards"], starts, ends, cfg.discount)
    limit, rounds = scaled(cfg.generate_limit, budget), scaled(cfg.max_rounds, budget)
    terminates = termination_rule(info)
    pieces, counts, generated, accepted, done = [], {}, 0, 0, 0
    while accepted < limit and done < rounds:
        rnd, raw, normed = stitch_round(
            cfg, stitcher, norm, arrays, sources, targets, target_states, rng, device
        )
        first = rnd.source + cfg.dream_len - 1
        checked = check_stitches(
            cfg, rnd, raw, normed, stitcher, norm, dynamics, rtg[first], terminates, generator
        )
        for verdict in checked.status:
            counts[verdict] = counts.get(verdict, 0) + 1
        pieces += checked.pieces
        generated += checked.generated
        accepted += sum(len(p["rewards"]) for p in checked.pieces)
        done += 1
        if done % REPORT_EVERY == 0:
            report(f"round {done:,}: {accepted:,}/{limit:,} accepted, attempts {counts}")
    return Augmented(
        arrays=concat_pieces(pieces, info),
        generated=generated,
        accepted=accepted,
        checkpoints={
            "diffusion": stitcher.model.state_dict(),
            "diffusion_ema": stitcher.ema.model.state_dict(),
            "inverse_dynamics": stitcher.inverse.state_dict(),
            "dynamics_ensemble": dynamics.state_dict(),
        },
        stats={
            "rounds": done,
            "attempts": counts,
            "source_windows": len(sources.starts),
            "target_windows": len(targets.starts),
            "data_target_rate": reachable,
            "dream_target_rate": 1 - counts.get("no_target", 0) / max(1, sum(counts.values())),
            **losses,
            **dyn_stats,
        },
    )


def concat_pieces(pieces: list[dict[str, np.ndarray]], info: TaskInfo) -> dict[str, np.ndarray]:
    """The accepted stitches one after another (empty arrays of the right widths when none)."""
    if pieces:
        return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}
    widths = {"observations": info.obs_dim, "next_observations": info.obs_dim}
    widths["actions"] = info.act_dim
    out = {k: np.zeros((0, w), dtype=np.float32) for k, w in widths.items()}
    for key in ("rewards", "backed_up_return", "source_return"):
        out[key] = np.zeros(0, dtype=np.float32)
    out["terminals"] = out["timeouts"] = np.zeros(0, dtype=bool)
    return out
