"""gymnasium MuJoCo locomotion in the dynamics of D4RL's data.

D4RL's ``*-v2`` locomotion datasets were collected with mujoco-py on ``Hopper-v3``,
``HalfCheetah-v3`` and ``Walker2d-v3``. Their gymnasium successors ``*-v5`` run on current MuJoCo
with the same observation layout, and for Hopper and HalfCheetah the same model files. Walker2d's
is not: ``Walker2d-v5`` gives the right foot the left foot's friction (1.9 instead of 0.9), so a
policy slides less and needs more force than in D4RL's data. gymnasium ships the old model
(``walker2d.xml``); :data:`WALKER2D_D4RL` is ``Walker2d-v5`` on it, the environment that collects
the forged walker2d levels and evaluates every walker2d task id.

What remains different from v3, on purpose and small: v5 pays Hopper's and Walker2d's
``healthy_reward`` (1) only on healthy steps, so the step on which an episode falls earns 1 less
than in D4RL's data; nothing else in the dynamics or rewards changed (gymnasium's v5 changelog).
Registered on import (``tasks/__init__.py`` imports this module), so worker processes have it.
"""

from __future__ import annotations

import gymnasium as gym

WALKER2D_D4RL = "diffrl/Walker2dD4RL-v5"

if WALKER2D_D4RL not in gym.registry:
    gym.register(
        id=WALKER2D_D4RL,
        entry_point="gymnasium.envs.mujoco.walker2d_v5:Walker2dEnv",
        max_episode_steps=1000,
        kwargs={"xml_file": "walker2d.xml"},  # v2-v4 feet: friction 1.9 (left), 0.9 (right)
    )
