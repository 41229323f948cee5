"""Diffuser: Planning with Diffusion for Flexible Behavior Synthesis
(Janner, Du, Tenenbaum & Levine, ICML 2022, arXiv:2205.09991).

Method: a DDPM over state-action segments of horizon H (a temporal U-Net denoiser) is the model
and the planner at once: planning is sampling with the current state imposed by inpainting at
every denoising step. Reward is maximized by moving each step's sample up the gradient of a value
model of noisy segments and executing the first action of the best of many plans; goals
(Maze2D) are reached by inpainting start and goal and following the plan with a PD controller.

Defaults follow the official code (jannerm/diffuser; ``config/locomotion.py``,
``config/maze2d.py``, ``scripts/plan_guided.py``, ``scripts/plan_maze2d.py``), kept per task
family and dataset in :data:`PAPER` (with SafeDiffuser and TREBI, which extend them, in
:mod:`algorithms.common.diffuser_core`, as are Diffuser's Config fields, networks, losses and
planning pass):
- locomotion (and every other task but the mazes): H = 32, T = 20, U-Net dim 32 with mults
  (1, 2, 4, 8), x0-prediction, cosine schedule, ``action_weight`` 10 on the first action, 64
  candidate plans, guide scale 0.1, t_stopgrad 2, 2 guide steps scaled by the posterior
  variance, a new plan every step; overrides for hopper-medium-expert (scale 1e-4, t_stopgrad 4)
  and halfcheetah (H = 4, mults (1, 4, 8), scale 1e-3, t_stopgrad 4);
- maze: H = 128 / 256 / 384 and T = 64 / 256 / 256 for umaze / medium / large, mults (1, 4, 8),
  ``action_weight`` 1, no value guidance, one plan per episode followed by the controller
  ``a = (wp_pos - pos) + (wp_vel - vel)`` towards the next waypoint (zero velocity past the end);
- Adam 2e-4, batches of 32 with 2-step gradient accumulation (here one batch of 64), EMA decay
  0.995 updated every 10 steps from step 2000; the value model is the U-Net's down path trained
  on the same noisy segments towards the discounted return-to-go of their first step, with the
  discount 0.997 of the released value checkpoints (``values/defaults_H32_T20_d0.997``).
Differences and why:
- states and actions are z-scored with the dataset statistics (the harness gives mean / std) for
  every task; the official maze setting uses a [-1, 1] limits normalizer with ``clip_denoised``;
  no clipping by default here (an x0-predicting model's output needs none; ``clip_denoised``
  clamps z-scores);
- training windows come from the harness's sampler: any start, padded past an episode's end by
  repeating its last step, padding kept in the loss (the official pads locomotion with zeros and
  also trains on it; its maze setting uses unpadded windows of segments cut where the agent
  leaves the target). On mazes a padded step is the point at rest where its episode ended (zero
  velocity and action), so segments that reach their goal stop there. The window's last position
  is inpainted in training and the goal position at H-1 at planning (the official inpaints the
  whole last state, and the goal with zero velocity);
- the value model trains alongside the diffuser in every ``update`` (official: two runs, 1M and
  200k steps); no termination penalty (official -100 on terminal rewards) because the segment
  sampler's returns-to-go carry none;
- plans are ranked by the value of the final sample at step 0 (official: the value seen during
  the last guided step); ``ddim_steps`` samples with DDIM instead of all T steps;
- ``pointmaze-*`` goals come from the observation's goal dims; maze2d's fixed target from D4RL's
  constants (the official reads ``env._target``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.common.contract import DatasetStats, TaskInfo
from algorithms.common.diffuser_core import (
    DIFFUSER_PAPER,
    DiffuserAgent,
    DiffuserConfig,
    resolve_diffuser,
)

PAPER = DIFFUSER_PAPER


@dataclass
class Config(DiffuserConfig):
    """Diffuser's hyperparameters, every field documented in
    :class:`~algorithms.common.diffuser_core.DiffuserConfig` (its safe variants extend them);
    ``None`` fields take :data:`PAPER`'s value for the task."""


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    """``cfg`` with :data:`PAPER`'s values for the task and the controller validated."""
    return resolve_diffuser(cfg, PAPER, info)


# Networks (temporal U-Net, segment value) and losses (:func:`diffusion_loss`, :func:`value_loss`)
# are Diffuser's own but shared with its variants: algorithms.common.diffuser_core.


class Agent(DiffuserAgent):
    """Diffuser following :mod:`algorithms.common.contract`: :class:`DiffuserAgent`'s training,
    planning pass (with no hooks) and open-loop acting; reports its planned barriers."""

    def __init__(
        self,
        cfg: Config,
        info: TaskInfo,
        stats: DatasetStats,
        device: torch.device | str,
        train_steps: int,
    ):
        super().__init__(resolve(cfg, info, stats), info, stats, device)
