"""Evaluation environments whose observations match the datasets' ``observations`` exactly.

``make_env(spec)`` returns a single env with flat float32 observations (dict observations are
flattened in ``spec.obs_keys`` order) under a ``TimeLimit`` of ``spec.max_episode_steps``.
``make_vector_env(spec, n)`` is a ``SyncVectorEnv`` in gymnasium's default ``NEXT_STEP`` autoreset
mode: the step on which an env reports ``terminated | truncated`` returns that episode's true last
observation and ``info`` (so ``info[spec.success_key]``, masked by ``info["_" + key]``, is read
there); the env's following step is a reset that ignores the action and must be masked out by the
caller's done mask.

Registered here at import time: ``diffrl/ToyBandit-v0`` and ``diffrl/Maze2d-v1`` (gymnasium-robotics'
PointMaze ids are registered by importing ``gymnasium_robotics``).

D4RL maze2d on gymnasium-robotics (``Maze2dEnv``). Both simulate the same MuJoCo point (timestep
0.01, gear 100, damping 1, velocity clipped to 5, one frame per step) in the same maze arrays, but
in different frames. D4RL's state ``(a, b)`` is the slide-joint position of a body placed at
(1.2, 1.2) among walls centred at ``(i + 1, j + 1)`` for maze cell (row i, column j), so the centre
of cell (i, j) is D4RL position ``(i - 0.2, j - 0.2)``: ``a`` runs along rows, ``b`` along columns
(e.g. maze2d-large observations span [0.4, 7.2] x [0.4, 10.2]). gymnasium-robotics places cell
(i, j) at ``x = j + 0.5 - W/2, y = H/2 - i - 0.5`` for a map of H rows and W columns. Hence::

    x = b + 0.7 - W/2        y = H/2 - 0.7 - a
    vx = vb                  vy = -va            (actions map like velocities)

``Maze2dEnv`` speaks D4RL's frame: 4-D observation ``(a, b, va, vb)``, D4RL actions, the fixed
target at the maze's ``G`` cell (umaze (1, 1), medium (6, 6), large (7, 9) in D4RL coordinates),
D4RL's start distribution (a uniformly drawn free cell + U(-0.1, 0.1), velocity N(0, 0.1^2)) and
sparse reward ``1[|pos - target| <= 0.5]``; ``info["success"]`` is that same event.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import gymnasium_robotics
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium_robotics.envs.maze import maps
from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv

from tasks.safety import CostWrapper
from tasks.spec import TaskSpec

gym.register_envs(gymnasium_robotics)

MAZE2D_ENV_ID = "diffrl/Maze2d-v1"
TOY_BANDIT_ENV_ID = "diffrl/ToyBandit-v0"
MAZE_MAPS = {"umaze": maps.U_MAZE, "medium": maps.MEDIUM_MAZE, "large": maps.LARGE_MAZE}
MAZE2D_TARGET_CELLS = {"umaze": (1, 1), "medium": (6, 6), "large": (7, 9)}
MAZE2D_SUCCESS_RADIUS = 0.5


class D4RLMazeFrame:
    """Maps positions, velocities and actions between D4RL's maze2d frame and gymnasium-robotics'."""

    def __init__(self, n_rows: int, n_cols: int):
        self.x_offset = n_cols / 2 - 0.7
        self.y_offset = n_rows / 2 - 0.7

    def pos_to_gym(self, pos: np.ndarray) -> np.ndarray:
        pos = np.asarray(pos)
        return np.stack([pos[..., 1] - self.x_offset, self.y_offset - pos[..., 0]], axis=-1)

    def pos_from_gym(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy)
        return np.stack([self.y_offset - xy[..., 1], xy[..., 0] + self.x_offset], axis=-1)

    @staticmethod
    def vec_to_gym(vec: np.ndarray) -> np.ndarray:
        vec = np.asarray(vec)
        return np.stack([vec[..., 1], -vec[..., 0]], axis=-1)

    @staticmethod
    def vec_from_gym(vec: np.ndarray) -> np.ndarray:
        vec = np.asarray(vec)
        return np.stack([-vec[..., 1], vec[..., 0]], axis=-1)

    def state_from_gym(self, obs: np.ndarray) -> np.ndarray:
        """gymnasium-robotics ``[x, y, vx, vy]`` -> D4RL ``[a, b, va, vb]``."""
        obs = np.asarray(obs)
        return np.concatenate(
            [self.pos_from_gym(obs[..., :2]), self.vec_from_gym(obs[..., 2:4])], -1
        )


def maze2d_frame(maze: str) -> D4RLMazeFrame:
    layout = MAZE_MAPS[maze]
    return D4RLMazeFrame(len(layout), len(layout[0]))


def free_cells(layout: list[list]) -> list[tuple[int, int]]:
    """Non-wall cells of a maze map in row-major order (D4RL's sorted reset locations)."""
    return [(i, j) for i, row in enumerate(layout) for j, cell in enumerate(row) if cell != 1]


class Maze2dEnv(gym.Env):
    """D4RL's ``maze2d-*-v1`` evaluation env, simulated by gymnasium-robotics' PointMaze."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array", "human"], "render_fps": 100}

    def __init__(self, maze: str = "umaze", render_mode: str | None = None):
        self.frame = maze2d_frame(maze)
        self.target = np.asarray(MAZE2D_TARGET_CELLS[maze], dtype=np.float64)
        self._cells = np.asarray(free_cells(MAZE_MAPS[maze]), dtype=np.float64)
        self._maze = PointMazeEnv(
            maze_map=MAZE_MAPS[maze],
            render_mode=render_mode,
            continuing_task=True,
            reset_target=False,
        )
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _observe(self, gym_obs: np.ndarray) -> tuple[np.ndarray, dict]:
        state = self.frame.state_from_gym(gym_obs)
        success = bool(np.linalg.norm(state[:2] - self.target) <= MAZE2D_SUCCESS_RADIUS)
        return state.astype(np.float32), {"success": success}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._maze.reset(seed=seed)
        cell = self._cells[self.np_random.integers(len(self._cells))]
        pos = cell + self.np_random.uniform(-0.1, 0.1, size=2)
        vel = self.np_random.normal(size=2) * 0.1
        self._maze.goal = self.frame.pos_to_gym(self.target)
        self._maze.update_target_site_pos()
        self._maze.point_env.set_state(self.frame.pos_to_gym(pos), self.frame.vec_to_gym(vel))
        return self._observe(np.concatenate([self._maze.data.qpos, self._maze.data.qvel]))

    def step(self, action):
        gym_action = self.frame.vec_to_gym(np.clip(action, -1.0, 1.0))
        gym_obs, _, _, _, _ = self._maze.step(gym_action)
        obs, info = self._observe(gym_obs["observation"])
        return obs, float(info["success"]), False, False, info

    def render(self):
        return self._maze.render()

    def close(self):
        self._maze.close()


class FlatFloat32Observation(gym.ObservationWrapper):
    """Concatenates dict observations in ``keys`` order (or passes arrays) as float32."""

    def __init__(self, env: gym.Env, keys: tuple[str, ...]):
        super().__init__(env)
        self.keys = keys
        space = env.observation_space
        if isinstance(space, gym.spaces.Dict):
            dim = sum(int(np.prod(space[k].shape)) for k in keys)
        else:
            dim = int(np.prod(space.shape))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)

    def observation(self, observation):
        if isinstance(observation, dict):
            parts = [np.ravel(observation[k]) for k in self.keys]
            return np.concatenate(parts).astype(np.float32)
        return np.ravel(observation).astype(np.float32)


def flatten_observations(obs, keys: tuple[str, ...]) -> np.ndarray:
    """Batched version of :class:`FlatFloat32Observation`: ``[N, ...]`` arrays or dict of them."""
    if isinstance(obs, dict):
        parts = [np.asarray(obs[k]).reshape(len(obs[k]), -1) for k in keys]
        return np.concatenate(parts, axis=1).astype(np.float32)
    obs = np.asarray(obs)
    return obs.reshape(len(obs), -1).astype(np.float32)


def make_env(spec: TaskSpec) -> gym.Env:
    """One evaluation env of ``spec`` with flat float32 observations in the dataset's layout."""
    env = gym.make(
        spec.env_id,
        max_episode_steps=spec.max_episode_steps,
        disable_env_checker=True,
        **spec.env_kwargs,
    )
    env = FlatFloat32Observation(env, spec.obs_keys)
    return env if spec.safety is None else CostWrapper(env, spec.safety)


def make_vector_env(spec: TaskSpec, n_envs: int) -> gym.vector.VectorEnv:
    """``n_envs`` copies of :func:`make_env` in a ``SyncVectorEnv`` (``NEXT_STEP`` autoreset)."""
    return gym.vector.SyncVectorEnv(
        [lambda: make_env(spec) for _ in range(n_envs)],
        autoreset_mode=AutoresetMode.NEXT_STEP,
    )


def maze2d_from_pointmaze(arrays: dict[str, np.ndarray], maze: str) -> dict[str, np.ndarray]:
    """Minari ``D4RL/pointmaze`` arrays (4-D gymnasium-robotics state) -> D4RL maze2d layout.

    Positions, velocities and actions move to D4RL's frame; rewards are relabelled as D4RL's
    ``relabel_maze2d_rewards.py`` labels its sparse files: ``1[|observations[t][:2] - target| <= 0.5]``
    w.r.t. the fixed evaluation target (Minari's rewards refer to each episode's own goal).
    """
    frame = maze2d_frame(maze)
    out = dict(arrays)
    for key in ("observations", "next_observations"):
        out[key] = frame.state_from_gym(arrays[key]).astype(np.float32)
    out["actions"] = frame.vec_from_gym(arrays["actions"]).astype(np.float32)
    out["rewards"] = maze2d_rewards(out["observations"], maze)
    return out


def maze2d_rewards(observations: np.ndarray, maze: str) -> np.ndarray:
    """D4RL's sparse maze2d relabelling of D4RL-frame observations (see :func:`maze2d_from_pointmaze`)."""
    target = np.asarray(MAZE2D_TARGET_CELLS[maze], dtype=np.float32)
    dist = np.linalg.norm(observations[:, :2] - target, axis=1)
    return (dist <= MAZE2D_SUCCESS_RADIUS).astype(np.float32)


def _register(env_id: str, entry_point: str, max_episode_steps: int | None = None) -> None:
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps)


_register(TOY_BANDIT_ENV_ID, "tasks.toy:BanditEnv", max_episode_steps=1)
_register(MAZE2D_ENV_ID, "tasks.envs:Maze2dEnv")

import tasks.safe_control  # noqa: E402,F401  registers diffrl/SafePendulum-v0 and diffrl/SafeReacher-v0
