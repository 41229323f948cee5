"""The safe control envs of TREBI's toy tasks: ``diffrl/SafePendulum-v0`` and ``diffrl/SafeReacher-v0``.

Registered with gymnasium when this module is imported (``tasks.envs`` imports it). Neither env
terminates; the time limit (200 and 50 steps) comes from the registration or ``gym.make``. Costs
are not computed here: :mod:`tasks.safety` defines them from observations (``pendulum_cost``,
``reacher_cost``) and :class:`tasks.safety.CostWrapper` puts them on ``info["cost"]``.

* ``diffrl/SafePendulum-v0``: gymnasium's ``Pendulum-v1`` unchanged (dynamics, reward, reset,
  observation ``[cos theta, sin theta, theta_dot]`` with ``theta = 0`` upright), the convention of
  Saute RL's safe pendulum that TREBI uses (same g, m, l, dt, speed and torque limits, the same
  training reset theta ~ U(-pi, pi), theta_dot ~ U(-1, 1), reward costs on the pre-step state).
  Departures from Saute's ``PendulumEnv`` (``saute/envs/pendulum.py``): its reward is normalised,
  ``(17 - c) / 17`` for ``Pendulum-v1``'s cost ``c`` (here ``-c``); its action ``a`` is a torque
  ``2a`` clipped to [-2, 2] (here the action is the torque in [-2, 2]); it advances theta with
  the new velocity before clipping it to +-8 (here after, as gymnasium does).
* ``diffrl/SafeReacher-v0``: :class:`SafeReacherEnv`, gymnasium's ``Reacher-v5`` with TREBI's
  fixed target (``CustomReacherEnv`` in ``diffuser/environments/reacher.py``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv

SAFE_PENDULUM_ENV_ID = "diffrl/SafePendulum-v0"
SAFE_REACHER_ENV_ID = "diffrl/SafeReacher-v0"
REACHER_TARGET = np.array([1.0, 1.0, 0.01])  # TREBI's target (x, y, z); z is the arm's plane
# Where the target body (a visual marker on slide joints limited to +-0.27) is parked: on the
# diagonal towards the real target, outside the arm's reach of 0.21.
REACHER_MARKER = np.array([0.2, 0.2])


class SafeReacherEnv(ReacherEnv):
    """``Reacher-v5`` reaching for TREBI's fixed target (1, 1), outside the arm's reach.

    Reward ``-||fingertip - (1, 1, 0.01)|| - sum(a^2)`` on the fingertip after the step, with
    TREBI's target z offset 0.01 included; the planar arm's fingertip always has z = 0.01, so it
    equals ``-||fingertip_xy - (1, 1)|| - sum(a^2)``. Observation in ``Reacher-v5``'s 10-dim layout
    ``[cos q (2), sin q (2), target xy (2), qvel (2), fingertip xy - target xy (2)]`` with the target
    entries (1, 1), so ``tasks.safety.reacher_fingertip`` reads the fingertip from it. The reset
    draws the arm as ``Reacher-v5`` does (q ~ U(-0.1, 0.1), qvel ~ U(-0.005, 0.005)).

    Departures from TREBI's ``CustomReacherEnv`` (old ``gym`` ``Reacher-v2``): its reward measures
    the fingertip before the step (gymnasium's v5 fixed that to after the step, kept here); its
    observation had 11 dims (the z of fingertip - target, always 0, is dropped as v5 does); it
    set the target body's slide joints to (1, 1), past their limits of +-0.27, while here the body
    is a parked marker and the target is a constant of the reward and observation.
    """

    def _get_rew(self, action: np.ndarray) -> tuple[float, dict[str, float]]:
        reward_dist = -float(np.linalg.norm(self.get_body_com("fingertip") - REACHER_TARGET))
        reward_ctrl = -float(np.square(action).sum())
        return reward_dist + reward_ctrl, {"reward_dist": reward_dist, "reward_ctrl": reward_ctrl}

    def _get_obs(self) -> np.ndarray:
        theta = self.data.qpos.flatten()[:2]
        fingertip = self.get_body_com("fingertip")[:2]
        return np.concatenate(
            [
                np.cos(theta),
                np.sin(theta),
                REACHER_TARGET[:2],
                self.data.qvel.flatten()[:2],
                fingertip - REACHER_TARGET[:2],
            ]
        )

    def reset_model(self) -> np.ndarray:
        qpos = self.np_random.uniform(low=-0.1, high=0.1, size=self.model.nq) + self.init_qpos
        qpos[-2:] = REACHER_MARKER
        qvel = self.init_qvel + self.np_random.uniform(low=-0.005, high=0.005, size=self.model.nv)
        qvel[-2:] = 0
        self.set_state(qpos, qvel)
        return self._get_obs()


def _register(env_id: str, entry_point: str, max_episode_steps: int, **kwargs: Any) -> None:
    if env_id not in gym.registry:
        gym.register(
            id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps, kwargs=kwargs
        )


_register(SAFE_PENDULUM_ENV_ID, "gymnasium.envs.classic_control.pendulum:PendulumEnv", 200)
_register(SAFE_REACHER_ENV_ID, "tasks.safe_control:SafeReacherEnv", 50)
