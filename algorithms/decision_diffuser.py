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
schedule, low-temperature sampling (the initial noise and every step's noise x 0.5, as the
official ``p_sample_loop`` / ``p_sample``), target return 0.9 (normalized), discount 0.99, Adam
2e-4, batch 32 x 2 accumulation (here one batch of 64), EMA 0.995 (start 2000, every 10), loss
``(diffusion + inverse dynamics) / 2`` with one optimizer. Also the official's: states and
actions through per-dimension empirical CDFs onto [-1, 1] (``CDFNormalizer``) with the predicted
x0 clamped to [-1, 1] (``clip_denoised``); returns-to-go with the termination penalty -100 on the
reward of the step where an episode terminates (the segment sampler adds it, as the agent's
``DataSpec`` declares), divided by the hand-set ``returns_scale``: 400 on hopper (the one value
the official publishes, ``config/locomotion_config.py``, ``analysis/default_inv.py``).
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
- ``returns_scale`` off hopper: the official publishes none ("determined using rewards from the
  dataset"), so ours is the rule that gives hopper's 400, ``min(reward_max / (1 - discount),
  return_max)`` on the task's data (:func:`algorithms.common.planning.returns_scale`; the cap
  serves sparse-reward mazes);
- the CDFs interpolate the dataset's 1001 per-dimension quantiles (``DatasetStats``), where the
  official interpolates every distinct value: the two differ by under 0.002 in normalized units;
- the condition embedding reads ``concat(value * keep, keep)`` per component (the official
  multiplies the embedding by the keep flag); both make "dropped" one fixed input;
- the inverse-dynamics loss skips pairs that reach into an episode's padding;
- on mazes (which the paper does not evaluate) the goal position is inpainted at the last step,
  as in Diffuser; ``pointmaze-*`` goal dims are not diffused;
- at an episode's start the history is the first state repeated; ``replan_every`` > 1 follows
  the plan open-loop between plans (the official plans every step, the default here too);
  ``warm_start`` > 0 denoises each replan from the previous plan, shifted to the present and
  noised to that share of T, and ``ddim_steps`` samples with DDIM (options for speed, off by
  default: the official samples every plan from pure noise with all T steps).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from algorithms.common.contract import Checkpointable, DatasetStats, DataSpec, TaskInfo
from algorithms.common.defaults import Official, PaperDefaults, Settings, check_choice, fill
from algorithms.common.diffusion import GaussianDiffusion, WarmStart
from algorithms.common.nets import EMA
from algorithms.common.planning import (
    MAZE_POSITION,
    NORMALIZERS,
    Constraints,
    InverseDynamics,
    OpenLoopPlans,
    StateHistory,
    StateLayout,
    act_by_inverse_dynamics,
    check_warm_start,
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

_CONFIG = "anuragajay/decision-diffuser code/config/locomotion_config.py"
PAPER = PaperDefaults(
    families={
        "default": Settings(
            f"{_CONFIG} (the paper's values: module docstring)",
            {
                "horizon": 100,
                "n_diffusion_steps": 200,
                "guidance_scale": 1.2,
                "history": 1,
                "inv_hidden": 256,
                "termination_penalty": -100.0,
            },
        )
    },
    datasets={
        f"hopper-{level}-v2": Settings(
            f"{_CONFIG} returns_scale; code/analysis/default_inv.py", {"returns_scale": 400.0}
        )
        for level in ("random", "medium", "medium-replay", "medium-expert", "expert")
    },
)
CLIP_OF_NORMALIZER = {"cdf": 1.0, "limits": 1.0, "gaussian": 5.0}


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
    returns_scale: float | None = None  # returns-to-go divisor (hopper 400; else from the data)
    termination_penalty: float | None = None  # added to terminal rewards of the returns-to-go
    discount: float = 0.99  # discount of the returns-to-go conditioned on
    normalizer: str = "cdf"  # states and actions: cdf (official), limits or gaussian (z-scores)
    temperature: float = 0.5  # scale of the sampler's initial and per-step noise (official 0.5)
    lr: float = 2e-4  # Adam learning rate of the U-Net and inverse dynamics together
    batch_size: int = 64  # segments per update (the official 32 x 2 accumulation steps)
    ema_decay: float = 0.995  # decay of the U-Net's EMA copy, which plans
    ema_start: int = 2000  # updates before the EMA starts averaging
    ema_every: int = 10  # updates between EMA updates
    clip_denoised: float | None = None  # clamp predicted x0 to +-this; None: the normalizer's
    # range (1 for cdf and limits, 5 z-scores for gaussian)
    ddim_steps: int | None = None  # sampler steps at acting time; None: all T DDPM steps
    ddim_eta: float = 0.0  # DDIM noise (0: deterministic) when ddim_steps is set
    replan_every: int = 1  # env steps between plans (0: once per episode), open-loop between
    warm_start: float = 0.0  # replans denoise the last plan from this share of T (0: pure noise)


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with :data:`PAPER`'s values, the dataset's returns scale where none is hand-set
    and the normalizer's clamp filled in."""
    check_choice("normalizer", cfg.normalizer, NORMALIZERS)
    out = dataclasses.replace(fill(cfg, PAPER, info), dim_mults=tuple(cfg.dim_mults))
    if out.returns_scale is None:
        out = dataclasses.replace(out, returns_scale=returns_scale(stats, out.discount))
    if out.clip_denoised is None:
        out = dataclasses.replace(out, clip_denoised=CLIP_OF_NORMALIZER[out.normalizer])
    check_warm_start(out.warm_start)
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
        self.norm = make_normalizer(cfg.normalizer, stats, self.layout, self.device)
        self.data_spec = DataSpec(
            kind="segments",
            batch_size=cfg.batch_size,
            horizon=cfg.horizon,
            discount=cfg.discount,
            terminal_reward=cfg.termination_penalty,
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

    def plan(
        self,
        history: Tensor,
        goal: Tensor | None,
        returns: Sequence[Tensor],
        warm: WarmStart | None = None,
    ) -> Tensor:
        """Normalized state plans ``[n, H, S]`` from histories ``[n, k, S]``.

        ``returns``: one ``[n, 1]`` normalized target return per guided condition, composed;
        ``warm``: the previous plans to start from (a cold plan from noise when None).
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
            warm=warm,
        )

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions ``[n_envs, act_dim]``: plans for all due envs in one pass, inverse dynamics."""
        return act_by_inverse_dynamics(
            obs,
            lambda history, goal, target, warm: self.plan(history, goal, [target], warm),
            layout=self.layout,
            norm=self.norm,
            plans=self.plans,
            inverse=self.inverse,
            info=self.info,
            target_return=self.cfg.target_return,
            history=self.history,
            warm_start=self.cfg.warm_start,
            n_diffusion_steps=self.cfg.n_diffusion_steps,
        )

    def reset(self, done: np.ndarray | None = None) -> None:
        """Clear histories and plans of the environments flagged in ``done`` (all when None)."""
        self.history.reset(done)
        self.plans.reset(done)


# ---------------------------------------------------------------------------------- fidelity

REPO = "anuragajay/decision-diffuser"
CONFIG = f"{REPO} code/config/locomotion_config.py"
MODEL = f"{REPO} code/diffuser/models/diffusion.py (GaussianInvDynDiffusion)"
# budget=paper: the final checkpoint evaluated on num_eval parallel episodes.
PAPER_BUDGET = PaperDefaults(
    families={
        "default": Settings(
            f"{CONFIG} (n_train_steps 1e6), code/scripts/evaluate_inv_parallel.py (num_eval 10, "
            "the final checkpoint)",
            {"train_steps": 1_000_000, "eval_every": 1_000_000, "eval_episodes": 10},
        )
    }
)
FIDELITY_TASKS = ("hopper-medium-v2",)
FIDELITY = (
    Official("horizon", 100, CONFIG),
    Official("n_diffusion_steps", 200, CONFIG),
    Official("dim", 128, CONFIG),
    Official("dim_mults", (1, 4, 8), CONFIG),
    Official("condition_dropout", 0.25, CONFIG),
    Official("guidance_scale", 1.2, f"{CONFIG} (condition_guidance_w)"),
    Official("target_return", 0.9, f"{CONFIG} (test_ret)"),
    Official("returns_scale", 400.0, f"{CONFIG}; code/analysis/default_inv.py"),
    Official("termination_penalty", -100.0, CONFIG),
    Official("discount", 0.99, CONFIG),
    Official("history", 1, f"{REPO} code/scripts/evaluate_inv_parallel.py (conditions {{0: s}})"),
    Official("inv_hidden", 256, f"{CONFIG} (hidden_dim)"),
    Official("normalizer", "cdf", f"{CONFIG} (CDFNormalizer)"),
    Official("clip_denoised", 1.0, f"{CONFIG} (clip_denoised=True: x0 clamped to [-1, 1])"),
    Official("temperature", 0.5, f"{MODEL} (p_sample_loop, p_sample: 0.5 * randn)"),
    Official("lr", 2e-4, f"{CONFIG} (learning_rate)"),
    Official("batch_size", 64, f"{CONFIG}: batch_size 32 x gradient_accumulate_every 2"),
    Official("ema_decay", 0.995, CONFIG),
    Official("ema_start", 2000, f"{REPO} code/diffuser/utils/training.py (step_start_ema)"),
    Official("ema_every", 10, f"{REPO} code/diffuser/utils/training.py (update_ema_every)"),
    Official("ddim_steps", None, f"{MODEL} (all T DDPM steps)"),
    Official("replan_every", 1, f"{REPO} code/scripts/evaluate_inv_parallel.py (a plan a step)"),
    Official(
        "noise schedule and parameterization",
        "cosine; epsilon prediction; no loss on the inpainted first state",
        f"{MODEL} (get_loss_weights, predict_epsilon=True)",
    ),
    Official(
        "training loss",
        "(diffusion MSE + inverse-dynamics MSE) / 2, one Adam for both",
        f"{MODEL} (loss)",
    ),
    Official(
        "CDF normalizer",
        "per dimension, interp1d over every distinct value of the data",
        f"{REPO} code/diffuser/datasets/normalization.py (CDFNormalizer1d)",
        "the agent sees dataset statistics, not the data: the 1001 quantiles give the CDF "
        "within 0.002 in normalized units",
        ours="per dimension, linear between the dataset's 1001 quantiles",
    ),
    Official(
        "return condition embedding",
        "an MLP of the return, times a Bernoulli(1 - 0.25) keep flag, beside the step embedding",
        f"{REPO} code/diffuser/models/temporal.py (TemporalUnet returns_mlp)",
        "both make a dropped condition one fixed input; ours also drops composed conditions "
        "one by one",
        ours="an MLP of concat(return * keep, keep)",
    ),
    Official(
        "inverse-dynamics loss",
        "MSE on every consecutive pair of the window, padding included",
        MODEL,
        "padding is not data: the sampler repeats an episode's last state there",
        ours="MSE on the pairs whose both steps are real",
    ),
    Official(
        "acting step",
        "a = f(s_t, plan[1]) with the plan's first state inpainted as s_t",
        f"{REPO} code/scripts/evaluate_inv_parallel.py",
    ),
)
