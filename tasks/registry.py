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

Sources: D4RL file names follow D4RL's download URLs (``gym_mujoco_v2/hopper_medium_replay-v2.hdf5``,
``maze2d/maze2d-umaze-sparse-v1.hdf5``); Minari ids are given where Minari publishes an equivalent
dataset (Minari's ``mujoco/*`` datasets only have ``medium`` and ``expert`` levels of these three).
"""

from __future__ import annotations

from tasks.spec import TaskSpec, UnknownTaskError

LOCOMOTION_LEVELS = ("random", "medium", "medium-replay", "medium-expert", "expert")
MINARI_LOCOMOTION_LEVELS = ("medium", "expert")

# D4RL's REF_MIN_SCORE / REF_MAX_SCORE (d4rl/infos.py).
LOCOMOTION = {
    "hopper": ("Hopper-v5", -20.272305, 3234.3),
    "halfcheetah": ("HalfCheetah-v5", -280.178953, 12135.0),
    "walker2d": ("Walker2d-v5", 1.629008, 4592.3),
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


_TASKS: dict[str, TaskSpec] = {
    spec.task_id: spec
    for spec in _locomotion_specs() + _maze2d_specs() + _pointmaze_specs() + _toy_specs()
}


def list_tasks() -> list[str]:
    """All registered task ids, sorted."""
    return sorted(_TASKS)


def get_task(task_id: str) -> TaskSpec:
    """The spec of ``task_id``; raises :class:`UnknownTaskError` listing the valid ids."""
    try:
        return _TASKS[task_id]
    except KeyError:
        raise UnknownTaskError(task_id, list_tasks()) from None
