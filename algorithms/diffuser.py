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
  (1, 2, 4, 8), x0-prediction, cosine schedule, ``action_weight`` 10 on the first action,
  z-scored states and actions (``GaussianNormalizer``), no clamp of the predicted x0, 64
  candidate plans, guide scale 0.1, t_stopgrad 2, 2 guide steps scaled by the posterior
  variance, a new plan every step; the value model's targets carry the termination penalty -100
  on the reward of the step where an episode terminates (the segment sampler adds it, as the
  agent's ``DataSpec`` declares); overrides for hopper-medium-expert (scale 1e-4, t_stopgrad 4)
  and halfcheetah (H = 4, mults (1, 4, 8), linear attention in the U-Net, scale 1e-3,
  t_stopgrad 4);
- maze: H = 128 / 256 / 384 and T = 64 / 256 / 256 for umaze / medium / large, mults (1, 4, 8),
  ``action_weight`` 1, states and actions mapped from the data's limits onto [-1, 1]
  (``LimitsNormalizer``) with the predicted x0 clamped to [-1, 1] (``clip_denoised``), training
  windows that lie whole in one episode (``use_padding=False``) over the episodes
  ``maze2d_set_terminals`` cuts (one ends wherever the point leaves the target's 0.5 radius),
  the window's first and last states inpainted (``GoalDataset``), no value guidance, one plan per
  episode with the start and the goal at rest ``[target, 0, 0]`` inpainted, followed by the
  controller ``a = (wp_pos - pos) + (wp_vel - vel)`` towards the next waypoint (zero velocity
  past the end); the official trains 2M steps here (``budget=paper``);
- Adam 2e-4, batches of 32 with 2-step gradient accumulation (here one batch of 64), EMA decay
  0.995 updated every 10 steps from step 2000; the value model is the U-Net's down path trained
  on the same noisy segments towards the discounted return-to-go of their first step, with the
  discount 0.997 of the released value checkpoints (``values/defaults_H32_T20_d0.997``).
Differences and why:
- locomotion training windows come from the harness's sampler: any start, padded past an
  episode's end by repeating its last step (the official pads with zeros), padding kept in the
  loss as the official's;
- maze2d episodes: the dataset's own episode ends are kept where the position jumps (a true
  restart; the official's D4RL stream has none and drops them all);
- ``pointmaze-*`` (not in the official code, whose cut needs maze2d's one fixed target) keep the
  dataset's episodes, windows padded past an episode's end with the point at rest where it
  ended (at its goal): cut at each episode's own goal, whole windows would cover only the
  trips longer than H (6% of the forged umaze's steps at H = 128);
- the value model trains alongside the diffuser in every ``update`` (official: two runs, 1M and
  200k steps);
- plans are ranked by the value of the final sample at step 0 (official: the value seen during
  the last guided step); ``ddim_steps`` samples with DDIM instead of all T steps; with
  ``warm_start`` > 0 a replan starts from the plan being followed, shifted to the present and
  noised to that share of T (options for speed, off by default: the official samples every
  plan from pure noise with all T steps);
- maze2d's fixed target comes from D4RL's constants (the official reads ``env._target``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algorithms.common.contract import DatasetStats, TaskInfo
from algorithms.common.defaults import Official, PaperDefaults, Settings
from algorithms.common.diffuser_core import (
    DIFFUSER_PAPER,
    DiffuserAgent,
    DiffuserConfig,
    diffuser_fidelity,
    fidelity_rows,
    resolve_diffuser,
    value_fidelity,
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


# ---------------------------------------------------------------------------------- fidelity

REPO = "jannerm/diffuser"
LOCOMOTION = f"{REPO} config/locomotion.py ('diffusion', 'values', 'plan')"
MAZE = f"{REPO} branch maze2d config/maze2d.py, scripts/plan_maze2d.py"
# budget=paper: plans are made once, from the final checkpoint. Locomotion's 150 episodes are the
# official launcher's 3 x 50 trials per dataset; plan_maze2d.py runs one episode per call and no
# launcher gives Maze2D's count, so budget=paper is refused there.
PAPER_BUDGET = PaperDefaults(
    families={
        "locomotion": Settings(
            f"{REPO} config/locomotion.py ('diffusion': n_train_steps 1e6), slurm/plan.sh "
            "(n_trials=50 for start in 0 50 100)",
            {"train_steps": 1_000_000, "eval_every": 1_000_000, "eval_episodes": 150},
        ),
        "maze": Settings(
            f"{REPO} branch maze2d config/maze2d.py (n_train_steps 2e6)",
            {"train_steps": 2_000_000, "eval_every": 2_000_000},
        ),
    }
)
FIDELITY_TASKS = ("hopper-medium-v2", "halfcheetah-medium-v2", "maze2d-umaze-v1")
_LOCOMOTION_VALUES = {
    "horizon": 32,
    "n_diffusion_steps": 20,
    "dim_mults": (1, 2, 4, 8),
    "attention": False,
    "action_weight": 10.0,
    "guided": True,
    "discount": 0.997,
    "n_candidates": 64,
    "guide_scale": 0.1,
    "t_stopgrad": 2,
    "replan_every": 1,
    "controller": "actions",
    "normalizer": "gaussian",
    "clip_denoised": False,
    "termination_penalty": -100.0,
    "padding": True,
    "goal_exit_radius": 0.0,
}
FIDELITY = (
    *diffuser_fidelity(REPO),
    *fidelity_rows("hopper-medium-v2", LOCOMOTION, _LOCOMOTION_VALUES),
    *value_fidelity(REPO, "hopper-medium-v2"),
    *fidelity_rows(
        "halfcheetah-medium-v2",
        f"{LOCOMOTION}, halfcheetah_medium_v2",
        {
            **_LOCOMOTION_VALUES,
            "horizon": 4,
            "dim_mults": (1, 4, 8),
            "attention": True,
            "guide_scale": 0.001,
            "t_stopgrad": 4,
        },
    ),
    *value_fidelity(REPO, "halfcheetah-medium-v2"),
    *fidelity_rows(
        "maze2d-umaze-v1",
        f"{MAZE} (maze2d_umaze_v1 over the base)",
        {
            "horizon": 128,
            "n_diffusion_steps": 64,
            "dim_mults": (1, 4, 8),
            "attention": False,
            "action_weight": 1.0,
            "guided": False,
            "n_candidates": 1,
            "replan_every": 0,
            "controller": "pd",
            "normalizer": "limits",
            "clip_denoised": True,
            "padding": False,
            "goal_exit_radius": 0.5,
        },
    ),
    Official("termination_penalty", 0.0, f"{MAZE} (None: no penalty)", task="maze2d-umaze-v1"),
    Official(
        "episodes of the training windows",
        "the stream cut where the point leaves the target's 0.5 radius; the dataset's own "
        "episode ends dropped",
        f"{REPO} branch maze2d diffuser/datasets/preprocessing.py (maze2d_set_terminals)",
        "a true restart (the position jumps) must end an episode; D4RL's stream has none",
        ours="the same cuts; the dataset's ends kept where the position jumps",
        task="maze2d-umaze-v1",
    ),
    Official(
        "goal condition",
        "the window's whole last state in training (GoalDataset); [target, 0, 0] at H - 1 when "
        "planning, once per episode",
        f"{REPO} branch maze2d diffuser/datasets/sequence.py, scripts/plan_maze2d.py",
        task="maze2d-umaze-v1",
    ),
)
