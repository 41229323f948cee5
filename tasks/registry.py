"""The task registry: every task id the suite knows, as a :class:`~tasks.spec.TaskSpec`.

Families:

* D4RL locomotion ``{hopper,halfcheetah,walker2d}-{level}-v2``, evaluated in gymnasium's
  ``*-v5`` MuJoCo envs (same observation layout as D4RL's ``-v2``) with D4RL's reference returns.
* D4RL ``maze2d-{umaze,medium,large}-v1``, evaluated in ``diffrl/Maze2d-v1`` (see
  :mod:`tasks.envs`): gymnasium-robotics' PointMaze in D4RL's coordinate frame, with D4RL's fixed
  target, start distribution and sparse reward.
* ``pointmaze-{umaze,medium,large}``: Minari's goal-conditioned point mazes (the protocol of
  ``D4RL/pointmaze/*-v2``), forged locally; observation ``[x, y, vx, vy, goal_x, goal_y]``.
* ``toy-bandit``: the 2-D bandit of :mod:`tasks.toy`.
* ``mpe-{spread,tag,world}-{expert,medium,medium-replay,random}``: OMAR's cooperative navigation
  (three agents), predator-prey and world (three predators, one scripted prey), multi-agent: a
  port of OMAR's particle world (not ``mpe2``, whose actions and rewards differ), data forged by
  OMAR's MATD3 protocol.
* ``mamujoco-halfcheetah-2x3-{good,medium,poor}``: MaMuJoCo's two-agent HalfCheetah
  (gymnasium-robotics ``mamujoco_v1``), multi-agent, at OG-MARL's levels, forged by our protocol
  from the suite's HalfCheetah SAC checkpoints (:mod:`tasks.forge.mamujoco`).
* Safe tasks (:mod:`tasks.safety`), each on another task's dataset with costs added:
  ``velocity-{hopper,walker2d,halfcheetah}-{medium,medium-replay,medium-expert}-v2`` (TREBI: cost
  ``|x-velocity|``, budget on the 0.997-discounted cost, TREBI's ``MAX_COST_THRESHOLD`` as the
  reference for D4RL files); ``ceiling-{hopper,walker2d}-{medium,medium-expert}-v2`` (SafeDiffuser:
  torso height under a ceiling); ``obstacles-maze2d-large-v1`` / ``obstacles-pointmaze-large``
  (SafeDiffuser's circle and super-ellipse); ``obstacles-pointmaze-umaze`` (ours: one disc in the
  U's bend, a cheap task for tests); and ``safe-pendulum`` / ``safe-reacher``, forged by TREBI's
  protocol (a SAC replay buffer) on Saute RL's safe pendulum and reacher.

Sources: D4RL file names follow D4RL's download URLs (``gym_mujoco_v2/hopper_medium_replay-v2.hdf5``,
``maze2d/maze2d-umaze-sparse-v1.hdf5``); Minari ids are given where Minari publishes an equivalent
dataset (Minari's ``mujoco/*`` datasets only have ``medium`` and ``expert`` levels of these three).
"""

from __future__ import annotations

import dataclasses

from tasks.d4rl_envs import WALKER2D_D4RL
from tasks.safety import Ceiling, Safety, SuperEllipse
from tasks.spec import TaskSpec, UnknownTaskError

LOCOMOTION_LEVELS = ("random", "medium", "medium-replay", "medium-expert", "expert")
MINARI_LOCOMOTION_LEVELS = ("medium", "expert")

# The env that collects and evaluates each env's levels (in the dynamics of D4RL's data, see
# tasks.d4rl_envs) and D4RL's REF_MIN_SCORE / REF_MAX_SCORE (d4rl/infos.py).
LOCOMOTION = {
    "hopper": ("Hopper-v5", -20.272305, 3234.3),
    "halfcheetah": ("HalfCheetah-v5", -280.178953, 12135.0),
    "walker2d": (WALKER2D_D4RL, 1.629008, 4592.3),
}
MAZE2D = {
    "umaze": (300, 23.85, 161.86),
    "medium": (600, 13.13, 277.39),
    "large": (800, 6.7, 273.99),
}

G = "g"
# Minari's evaluation maps for the point mazes (minari-dataset-generation-scripts,
# scripts/pointmaze/create_pointmaze_dataset.py, EVAL_ENV_MAPS): the training layout with one
# goal cell, which is also D4RL's maze2d goal cell.
POINTMAZE_EVAL_MAPS = {
    "umaze": [
        [1, 1, 1, 1, 1],
        [1, G, 0, 0, 1],
        [1, 1, 1, 0, 1],
        [1, 0, 0, 0, 1],
        [1, 1, 1, 1, 1],
    ],
    "medium": [
        [1, 1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 1, 1, 0, 0, 1],
        [1, 0, 0, 1, 0, 0, 0, 1],
        [1, 1, 0, 0, 0, 1, 1, 1],
        [1, 0, 0, 1, 0, 0, 0, 1],
        [1, 0, 1, 0, 0, 1, 0, 1],
        [1, 0, 0, 0, 1, 0, G, 1],
        [1, 1, 1, 1, 1, 1, 1, 1],
    ],
    "large": [
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
        [1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1],
        [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
        [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1],
        [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1],
        [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1],
        [1, 0, 0, 1, 0, 0, 0, 1, 0, G, 0, 1],
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    ],
}
POINTMAZE_ENV_IDS = {
    "umaze": "PointMaze_UMaze-v3",
    "medium": "PointMaze_Medium-v3",
    "large": "PointMaze_Large-v3",
}


def _locomotion_specs() -> list[TaskSpec]:
    specs = []
    for env, (env_id, ref_min, ref_max) in LOCOMOTION.items():
        for level in LOCOMOTION_LEVELS:
            minari_id = f"mujoco/{env}/{level}-v0" if level in MINARI_LOCOMOTION_LEVELS else None
            specs.append(
                TaskSpec(
                    task_id=f"{env}-{level}-v2",
                    kind="locomotion",
                    env_id=env_id,
                    max_episode_steps=1000,
                    ref_min_score=ref_min,
                    ref_max_score=ref_max,
                    d4rl_file=f"{env}_{level.replace('-', '_')}-v2.hdf5",
                    minari_id=minari_id,
                    forge="locomotion",
                    forge_params={"env": env, "level": level},
                )
            )
    return specs


def _maze2d_specs() -> list[TaskSpec]:
    return [
        TaskSpec(
            task_id=f"maze2d-{maze}-v1",
            kind="maze",
            env_id="diffrl/Maze2d-v1",
            env_kwargs={"maze": maze},
            max_episode_steps=steps,
            obs_keys=("observation",),
            ref_min_score=ref_min,
            ref_max_score=ref_max,
            d4rl_file=f"maze2d-{maze}-sparse-v1.hdf5",
            minari_id=f"D4RL/pointmaze/{maze}-v2",
            forge="maze2d",
            forge_params={"maze": maze},
            cheap_forge=True,
            success_key="success",
        )
        for maze, (steps, ref_min, ref_max) in MAZE2D.items()
    ]


def _pointmaze_specs() -> list[TaskSpec]:
    return [
        TaskSpec(
            task_id=f"pointmaze-{maze}",
            kind="maze",
            env_id=POINTMAZE_ENV_IDS[maze],
            env_kwargs={
                "maze_map": POINTMAZE_EVAL_MAPS[maze],
                "continuing_task": True,
                "reset_target": False,
            },
            max_episode_steps=MAZE2D[maze][0],
            obs_keys=("observation", "desired_goal"),
            minari_id=f"D4RL/pointmaze/{maze}-v2",
            forge="pointmaze",
            forge_params={"maze": maze},
            cheap_forge=True,
            goal_dims=(4, 5),
            success_key="success",
        )
        for maze in POINTMAZE_ENV_IDS
    ]


def _toy_specs() -> list[TaskSpec]:
    return [
        TaskSpec(
            task_id="toy-bandit",
            kind="toy",
            env_id="diffrl/ToyBandit-v0",
            max_episode_steps=1,
            forge="bandit",
            cheap_forge=True,
        )
    ]


# TREBI's MAX_COST_THRESHOLD (``cost.py``): the reference cost of the D4RL datasets.
TREBI_MAX_COST = {
    "hopper-medium-v2": 129.940,
    "walker2d-medium-v2": 159.512,
    "halfcheetah-medium-v2": 414.008,
    "hopper-medium-replay-v2": 139.884,
    "walker2d-medium-replay-v2": 160.251,
    "halfcheetah-medium-replay-v2": 384.375,
    "hopper-medium-expert-v2": 168.918,
    "walker2d-medium-expert-v2": 234.076,
    "halfcheetah-medium-expert-v2": 730.746,
}
TREBI_COST_DISCOUNT = 0.997  # config/locomotion.py: discount, with test_cost_with_discount=True

# SafeDiffuser's maze2d-large obstacles (diffuser/models/diffusion.py, ``invariance``), D4RL frame:
# a unit circle at (4.5, 5.3) and a unit super-ellipse (power 4) at (1.5, 4.8).
MAZE2D_LARGE_OBSTACLES = (
    SuperEllipse(dims=(0, 1), center=(4.5, 5.3), radii=(1.0, 1.0), power=2),
    SuperEllipse(dims=(0, 1), center=(1.5, 4.8), radii=(1.0, 1.0), power=4),
)
# The same obstacles in gymnasium-robotics' frame of the large map (x = b - 5.3, y = 3.8 - a).
POINTMAZE_LARGE_OBSTACLES = (
    SuperEllipse(dims=(0, 1), center=(0.0, -0.7), radii=(1.0, 1.0), power=2),
    SuperEllipse(dims=(0, 1), center=(-0.5, 2.3), radii=(1.0, 1.0), power=4),
)
# Ours: a disc of radius 0.3 at the centre of the U-maze's bend cell (row 2, column 3).
POINTMAZE_UMAZE_OBSTACLES = (SuperEllipse(dims=(0, 1), center=(1.0, 0.0), radii=(0.3, 0.3)),)
# Torso height (observation dim 0 = rootz) ceilings: SafeDiffuser's own, public in its
# ``locomotion`` branch (diffuser/models/diffusion.py: ``invariance_hopper`` height 1.5,
# ``invariance`` (walker2d) 1.3). Its "complex" specification (``invariance_*cpx``: 1.6 / 1.4 with
# a -0.1 term on the z-velocity) is written in its dataset's normalized coordinates; not a task.
TORSO_CEILING = {"hopper": 1.5, "walker2d": 1.3}


def _derived(base: TaskSpec, task_id: str, safety: Safety) -> TaskSpec:
    return dataclasses.replace(base, task_id=task_id, safety=safety, dataset_task=base.task_id)


def _safe_specs(base: dict[str, TaskSpec]) -> list[TaskSpec]:
    specs = []
    for data_id, reference in TREBI_MAX_COST.items():
        env = data_id.split("-")[0]
        safety = Safety(
            cost="velocity",
            reference_cost=reference,
            cost_discount=TREBI_COST_DISCOUNT,
            env=env,
        )
        specs.append(_derived(base[data_id], f"velocity-{data_id}", safety))
    for env, limit in TORSO_CEILING.items():
        for level in ("medium", "medium-expert"):
            safety = Safety(cost="barrier", budget=0.0, barriers=(Ceiling(dim=0, limit=limit),))
            data_id = f"{env}-{level}-v2"
            specs.append(_derived(base[data_id], f"ceiling-{data_id}", safety))
    for data_id, obstacles in (
        ("maze2d-large-v1", MAZE2D_LARGE_OBSTACLES),
        ("pointmaze-large", POINTMAZE_LARGE_OBSTACLES),
        ("pointmaze-umaze", POINTMAZE_UMAZE_OBSTACLES),
    ):
        safety = Safety(cost="barrier", budget=0.0, barriers=obstacles)
        specs.append(_derived(base[data_id], f"obstacles-{data_id}", safety))
    specs += [
        TaskSpec(
            task_id="safe-pendulum",
            kind="safe",
            env_id="diffrl/SafePendulum-v0",
            max_episode_steps=200,
            forge="safe_control",
            forge_params={"system": "pendulum"},
            cheap_forge=True,  # minutes at the quick budget's scale (tasks.forge.safe_control)
            safety=Safety(cost="pendulum-band"),
        ),
        TaskSpec(
            task_id="safe-reacher",
            kind="safe",
            env_id="diffrl/SafeReacher-v0",
            max_episode_steps=50,
            forge="safe_control",
            forge_params={"system": "reacher"},
            cheap_forge=True,  # minutes at the quick budget's scale (tasks.forge.safe_control)
            safety=Safety(cost="reacher-region"),
        ),
    ]
    return specs


MPE_LEVELS = ("expert", "medium", "medium-replay", "random")


def _multiagent_specs() -> list[TaskSpec]:
    """OMAR's MPE scenarios (``mpe-{spread,tag,world}-*``): a faithful port of OMAR's fork of
    the particle environments (:mod:`tasks.multiagent`; PettingZoo's ``mpe2`` differs in action
    space and rewards, see there), data forged by OMAR's protocol (:mod:`tasks.forge.multiagent`)."""
    return [
        TaskSpec(
            task_id=f"mpe-{scenario}-{level}",
            kind="multi-agent",
            env_id=f"diffrl/mpe-{scenario}",  # tasks.multiagent.ParticleEnvs, not a gymnasium id
            env_kwargs={"scenario": scenario},
            max_episode_steps=25,
            forge="mpe",
            forge_params={"scenario": scenario, "level": level},
            # forged on first use: minutes at the quick budget's scale 0.1 (4000 MATD3 episodes);
            # scale 1 trains 40000 (about 40 min on one loaded core, estimated; cached per scale)
            cheap_forge=True,
        )
        for scenario in ("spread", "tag", "world")
        for level in MPE_LEVELS
    ]


MAMUJOCO_LEVELS = ("good", "medium", "poor")


def _mamujoco_specs() -> list[TaskSpec]:
    """MaMuJoCo HalfCheetah 2x3 (gymnasium-robotics ``mamujoco_v1``, :mod:`tasks.mamujoco`) at
    OG-MARL's levels, forged by our closest protocol (:mod:`tasks.forge.mamujoco`)."""
    return [
        TaskSpec(
            task_id=f"mamujoco-halfcheetah-2x3-{level}",
            kind="multi-agent",
            env_id="diffrl/mamujoco-HalfCheetah-2x3",  # tasks.mamujoco.MaMuJoCoEnvs
            env_kwargs={"scenario": "HalfCheetah", "agent_conf": "2x3"},
            max_episode_steps=1000,
            forge="mamujoco",
            forge_params={"level": level},
            # forged on first use from the committed SAC checkpoints: a few seconds per 10k
            # steps plus 1-2 min of reference episodes (2 x 100 x 1000 steps) on one loaded
            # core; scale 1 (1M steps) a few minutes more
            cheap_forge=True,
        )
        for level in MAMUJOCO_LEVELS
    ]


_BASE: dict[str, TaskSpec] = {
    spec.task_id: spec
    for spec in _locomotion_specs()
    + _maze2d_specs()
    + _pointmaze_specs()
    + _toy_specs()
    + _multiagent_specs()
    + _mamujoco_specs()
}
_TASKS: dict[str, TaskSpec] = {**_BASE, **{s.task_id: s for s in _safe_specs(_BASE)}}


def list_tasks() -> list[str]:
    """All registered task ids, sorted."""
    return sorted(_TASKS)


def get_task(task_id: str) -> TaskSpec:
    """The spec of ``task_id``; raises :class:`UnknownTaskError` listing the valid ids."""
    try:
        return _TASKS[task_id]
    except KeyError:
        raise UnknownTaskError(task_id, list_tasks()) from None
