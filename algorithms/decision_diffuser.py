"""Decision Diffuser: Is Conditional Generative Modeling all you need for Decision-Making?
(Ajay, Du, Gupta, Tenenbaum, Jaakkola & Agrawal, ICLR 2023, arXiv:2211.15657).

Method: a DDPM over state-only segments, conditioned on the normalized return-to-go through a
condition embedding that is dropped with probability p during training, so one network is both
the conditional and the unconditional model (classifier-free guidance with weight w, several
conditions composable as ``eps(empty) + w * sum_i (eps(y_i) - eps(empty))``); the last k
observed states are inpainted, and an inverse-dynamics MLP turns planned state pairs into actions.

Defaults follow the official code (anuragajay/decision-diffuser, ``config/locomotion_config.py``,
``diffuser/models/diffusion.py`` ``GaussianInvDynDiffusion``, ``scripts/evaluate_inv_parallel.py``),
the one that produced the released numbers: :data:`PAPER` holds its values. Shared by code and
paper: condition dropout 0.25, epsilon prediction, U-Net dim 128 with mults (1, 4, 8), cosine
schedule, low-temperature sampling (noise x 0.5), target return 0.9 (normalized), discount 0.99,
Adam 2e-4, batch 32 x 2 accumulation (here one batch of 64), EMA 0.995 (start 2000, every 10),
loss ``(diffusion + inverse dynamics) / 2`` with one optimizer.
Where the paper differs from the code we follow the code, by choice; the paper's values (marked
(*): our reading of its appendix, not re-checked against the PDF here) are one override each:
- diffusion steps: code 200, paper 100 (*) (``algo.n_diffusion_steps=100``); horizon 100 in both;
- guidance weight w: code 1.2; the paper tunes it per task, 1.6 as its value (*)
  (``algo.guidance_scale=1.6``);
- history: code conditions on the current state only (k = 1; see the repository's issue #3,
  "Where is the code for history conditioning proposed in the paper?"); the paper conditions on a
  context of past states, k = 20 (*) (``algo.history=20``);
- inverse dynamics: code 2 x 256 ReLU, paper 2 x 512 (*) (``algo.inv_hidden=512``).
Differences from the official code and why:
- returns are scaled by ``min(reward_max / (1 - discount), return_max)`` (see
  :func:`algorithms.common.planning.returns_scale`), which reproduces the hand-set
  ``returns_scale`` of D4RL locomotion (400 / 550 / 1200) and works for sparse-reward mazes; no
  termination penalty (the segment sampler's returns carry none);
- z-scoring with the dataset statistics instead of the CDF normalizer; the predicted x0 is
  clamped to +-5 z-scores where the official clamps its [-1, 1] CDF range: with the cosine
  schedule's last beta of 0.999, an unclamped epsilon model's first steps blow up;
- the initial noise is N(0, I) (the shared sampler's); the official also scales it by 0.5;
- the condition embedding reads ``concat(value * keep, keep)`` per component (the official
  multiplies the embedding by the keep flag); both make "dropped" one fixed input;
- the inverse-dynamics loss skips pairs that reach into an episode's padding;
- on mazes (which the paper does not evaluate) the goal position is inpainted at the last step,
  as in Diffuser; ``pointmaze-*`` goal dims are not diffused;
- at an episode's start the history is the first state repeated; ``replan_every`` > 1 follows
  the plan open-loop between plans (the official plans every step, the default here too).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from algorithms.common.contract import Checkpointable, DatasetStats, DataSpec, TaskInfo
from algorithms.common.defaults import PaperDefaults, Settings, fill
from algorithms.common.diffusion import GaussianDiffusion
from algorithms.common.nets import EMA
from algorithms.common.planning import (
    MAZE_POSITION,
    Constraints,
    InverseDynamics,
    Normalizer,
    OpenLoopPlans,
    StateHistory,
    StateLayout,
    act_by_inverse_dynamics,
    clip_range,
    condition,
    dropped,
    guided,
    returns_scale,
    with_inpainting,
)
from algorithms.common.schedules import make_betas
from algorithms.common.unet import TemporalUnet

PAPER = PaperDefaults(
    families={
        "default": Settings(
            "official code, config/locomotion_config.py (the paper's values: module docstring)",
            {
                "horizon": 100,
                "n_diffusion_steps": 200,
                "guidance_scale": 1.2,
                "history": 1,
                "inv_hidden": 256,
            },
        )
    }
)


@dataclass
class Config:
    """Decision Diffuser's hyperparameters; ``None`` fields take :data:`PAPER`'s value."""

    horizon: int | None = None  # planned segment length H (states)
    n_diffusion_steps: int | None = None  # diffusion steps T of the cosine schedule
    guidance_scale: float | None = None  # classifier-free guidance weight w
    history: int | None = None  # observed states k inpainted at the plan's start (1 <= k < H)
    inv_hidden: int | None = None  # hidden width of the 2-layer inverse-dynamics MLP
    dim: int = 128  # base channel width of the temporal U-Net
    dim_mults: tuple[int, ...] = (1, 4, 8)  # U-Net channel multipliers per resolution
    condition_dropout: float = 0.25  # probability of dropping the return condition in training
    target_return: float = 0.9  # normalized return planned for at acting time (official test_ret)
    returns_scale: float | None = None  # returns-to-go divisor; None: from the dataset (docstring)
    discount: float = 0.99  # discount of the returns-to-go conditioned on
    temperature: float = 0.5  # scale of the sampler's per-step noise (low-temperature sampling)
    lr: float = 2e-4  # Adam learning rate of the U-Net and inverse dynamics together
    batch_size: int = 64  # segments per update (the official 32 x 2 accumulation steps)
    ema_decay: float = 0.995  # decay of the U-Net's EMA copy, which plans
    ema_start: int = 2000  # updates before the EMA starts averaging
    ema_every: int = 10  # updates between EMA updates
    clip_denoised: float | None = 5.0  # clamp predicted x0 to +-this (z-scores); None: no clamp
    ddim_steps: int | None = None  # sampler steps at acting time; None: all T DDPM steps
    ddim_eta: float = 0.0  # DDIM noise (0: deterministic) when ddim_steps is set
    replan_every: int = 1  # env steps between plans (0: once per episode), open-loop between


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with :data:`PAPER`'s values and the dataset's returns scale filled in."""
    out = dataclasses.replace(fill(cfg, PAPER, info), dim_mults=tuple(cfg.dim_mults))
    if out.returns_scale is None:
        out = dataclasses.replace(out, returns_scale=returns_scale(stats, out.discount))
    if not 1 <= out.history < out.horizon:
        raise ValueError(
            f"algo.history={out.history} is not valid; valid: 1 to algo.horizon - 1 = "
            f"{out.horizon - 1}"
        )
    return out


# ---------------------------------------------------------------------------------- losses


def diffusion_loss(
    model: TemporalUnet,
    diffusion: GaussianDiffusion,
    states: Tensor,
    returns: Tensor,
    cons: Constraints,
    dropout: float,
) -> Tensor:
    """Noise-prediction loss on normalized state segments ``[B, H, S]``, conditioned on their
    normalized return ``[B, 1]`` (dropped with probability ``dropout``, so one network is also
    the unconditional model); the constrained entries (history, maze goal) are inpainted in the
    noisy input and carry no loss."""
    return diffusion.loss(
        with_inpainting(model, cons.hook()), states, dropped(returns, dropout), cons.free()
    )


# ---------------------------------------------------------------------------------- agent


class Agent(Checkpointable):
    """Decision Diffuser following :mod:`algorithms.common.contract` (no LR schedule:
    ``train_steps`` unused)."""

    state_attrs = ("model", "inverse", "ema", "optimizer", "step")

    def __init__(
        self,
        cfg: Config,
        info: TaskInfo,
        stats: DatasetStats,
        device: torch.device | str,
        train_steps: int,
    ):
        self.cfg = cfg = resolve(cfg, info, stats)
        self.info, self.device = info, torch.device(device)
        self.layout = StateLayout.from_info(info)
        self.norm = Normalizer(stats, self.layout, self.device)
        self.data_spec = DataSpec(
            kind="segments", batch_size=cfg.batch_size, horizon=cfg.horizon, discount=cfg.discount
        )
        s_dim = self.layout.state_dim
        self.model = TemporalUnet(s_dim, cfg.dim, cfg.dim_mults, cond_dim=1).to(self.device)
        self.inverse = InverseDynamics(s_dim, info.act_dim, cfg.inv_hidden).to(self.device)
        params = [*self.model.parameters(), *self.inverse.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr)
        self.ema = EMA(self.model, decay=cfg.ema_decay, start=cfg.ema_start, every=cfg.ema_every)
        self.diffusion = GaussianDiffusion(
            make_betas("cosine", cfg.n_diffusion_steps),
            predict_epsilon=True,
            clip_denoised=clip_range(cfg.clip_denoised),
            event_dims=2,
        ).to(self.device)
        self.history = StateHistory(cfg.history)
        self.plans = OpenLoopPlans(cfg.replan_every)
        self.step = 0

    def constraints(self, shape: tuple, history: Tensor, goal: Tensor | None) -> Constraints:
        """The ``k`` history states first; for mazes the goal position last (normalized)."""
        cons = Constraints(shape, self.device).fix(slice(0, self.cfg.history), slice(None), history)
        if goal is not None:
            cons.fix(-1, MAZE_POSITION, goal)
        return cons

    def update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One step on ``(diffusion loss + inverse-dynamics loss) / 2`` and the EMA."""
        cfg, k = self.cfg, self.cfg.history
        states = self.norm.states(self.layout.segment_states(batch["observations"], batch["mask"]))
        goal = states[:, -1, list(MAZE_POSITION)] if self.layout.is_maze else None
        cons = self.constraints(states.shape, states[:, :k], goal)
        returns = batch["returns_to_go"][:, k - 1 : k] / cfg.returns_scale
        plan_loss = diffusion_loss(
            self.model, self.diffusion, states, returns, cons, cfg.condition_dropout
        )
        actions = self.norm.actions(batch["actions"])
        inverse_loss = self.inverse.loss(states, actions, batch["mask"])
        self.optimizer.zero_grad(set_to_none=True)
        (0.5 * (plan_loss + inverse_loss)).backward()
        self.optimizer.step()
        self.ema.update(self.model)
        self.step += 1
        return {"diffusion_loss": plan_loss.detach(), "inverse_loss": inverse_loss.detach()}

    def plan(self, history: Tensor, goal: Tensor | None, returns: Sequence[Tensor]) -> Tensor:
        """Normalized state plans ``[n, H, S]`` from histories ``[n, k, S]``.

        ``returns``: one ``[n, 1]`` normalized target return per guided condition, composed.
        """
        cfg, n = self.cfg, len(history)
        shape = (n, cfg.horizon, self.layout.state_dim)
        base, cfg_guide = guided([condition(r) for r in returns], cfg.guidance_scale)
        return self.diffusion.sample(
            self.ema.model,
            shape,
            base,
            ddim_steps=cfg.ddim_steps,
            eta=cfg.ddim_eta,
            temperature=cfg.temperature,
            cfg=cfg_guide,
            inpaint=self.constraints(shape, history, goal).hook(),
        )

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[n_envs, act_dim]``: plans for all due envs in one pass, inverse dynamics."""
        return act_by_inverse_dynamics(
            obs,
            lambda history, goal, target: self.plan(history, goal, [target]),
            layout=self.layout,
            norm=self.norm,
            plans=self.plans,
            inverse=self.inverse,
            info=self.info,
            target_return=self.cfg.target_return,
            history=self.history,
        )

    def reset(self, done: np.ndarray | None = None) -> None:
        """Clear histories and plans of the environments flagged in ``done`` (all when None)."""
        self.history.reset(done)
        self.plans.reset(done)
