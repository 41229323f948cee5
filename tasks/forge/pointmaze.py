"""Point-maze forges: Minari's ``D4RL/pointmaze`` protocol and D4RL's maze2d layout of it.

Protocol (minari-dataset-generation-scripts, ``scripts/pointmaze``): gymnasium-robotics
``PointMaze`` with ``continuing_task=True, reset_target=True`` (a new goal is drawn when the ball
gets within 0.45 of the current one), reset once with the forge seed; waypoints from Q-iteration
on the maze grid (50 sweeps, discount 0.99, reward 1 for entering the goal cell, Minari's action
order for tie-breaking); a PD controller ``a = clip(10 (waypoint - pos) - 1 vel + N(0, 0.5^2),
-1, 1)``; a waypoint is passed within 0.1, and intermediate waypoints are cell centres minus
U(0, 0.2) per axis (the first one after a new goal without that jitter), as Minari's controller
does. 1M steps at scale 1.

Departures from Minari's scripts, on purpose:

* episodes end (``timeouts``) when the goal is reached, as Minari's step callback splits them,
  and also after ``max_episode_steps`` steps without reaching it (D4RL's generator does this);
  ``terminals`` are all False (the task continues);
* the controller heads for the goal itself once the next waypoint is the goal cell or the ball is
  already in it (Minari aims at the goal cell's centre first, and from inside the goal cell plans
  a detour through a neighbour cell);
* randomness comes from seeded generators (Minari draws noise from the global ``np.random``);
* the loop steps the env's MuJoCo model through :class:`PointMazeStepper` (bit-identical to
  ``env.step``, checked by the tests; about four times faster).

Note on Minari's published ``D4RL/pointmaze/*-v2``: its script builds ``WaypointController(maze)``
without ``maze_solver``, whose default is DFS, so its waypoints follow depth-first paths, not
shortest ones. With DFS paths our evaluation reproduces its controller scores (umaze 218.7, medium
361.2 vs 361.05, large 462.2 vs 462.26); with Q-iteration, as specified here, the controller scores
218.7 / 424.6 / 555.3, and the forged medium/large datasets take shorter routes than Minari's.

Stored per step: ``infos/goal`` (the goal being pursued), ``infos/qpos``, ``infos/qvel``.
``pointmaze-*`` observations are ``[x, y, vx, vy, goal_x, goal_y]``; the ``observations`` row
after a goal was reached carries the new goal, ``next_observations`` of the reaching step the old
one (as the env reports it). Reference scores: 100 episodes (Minari's protocol, see
:mod:`tasks.forge`) in the evaluation env (a single goal cell, ``reset_target=False``) of the
uniform random policy and of the controller without action noise; they do not depend on the forge
seed or scale and are cached per task beside the forged files.

``maze2d-*-v1``: the same rollouts expressed in D4RL's maze2d layout (frame in :mod:`tasks.envs`):
4-D observations and actions in D4RL's frame, rewards labelled as D4RL's released sparse files are
(``relabel_maze2d_rewards.py``: ``1[|observations[t][:2] - target| <= 0.5]`` for the fixed
evaluation target), ``infos/goal``/``qpos``/``qvel`` in D4RL's frame. D4RL's generator drew goals
in free cells with U(-0.1, 0.1) noise and, on a goal switch, recorded the stale pre-step state as
the next observation; here goals come from gymnasium-robotics (U(-0.25, 0.25) noise) and the
recorded states are continuous.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from functools import cache
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv

from tasks.envs import MAZE_MAPS, make_env, maze2d_frame, maze2d_rewards
from tasks.forge import REFERENCE_SEED, data_root, random_policy
from tasks.progress import progress as progress_bar
from tasks.spec import TaskSpec

STEPS_AT_SCALE_1 = 1_000_000
REF_EPISODES = 100
P_GAIN, D_GAIN = 10.0, -1.0
ACTION_NOISE_STD = 0.5
WAYPOINT_RADIUS = 0.1
SUCCESS_RADIUS = 0.45  # gymnasium-robotics' goal radius
WAYPOINT_JITTER = 0.2
Q_SWEEPS, Q_DISCOUNT = 50, 0.99
# Minari's QIteration action order (row, column deltas); it decides ties between equal paths.
GRID_MOVES = ((0, 1), (0, -1), (-1, 0), (1, 0))


@cache
def greedy_next_cells(layout: tuple[tuple, ...], goal: tuple[int, int]) -> dict:
    """Next cell towards ``goal`` from every free cell, by Q-iteration on the maze grid."""
    n_rows, n_cols = len(layout), len(layout[0])
    free = np.array([[cell != 1 for cell in row] for row in layout])
    states = [(i, j) for i in range(n_rows) for j in range(n_cols)]
    nxt = np.zeros((len(states), len(GRID_MOVES)), dtype=np.int64)
    valid = np.zeros(nxt.shape, dtype=bool)
    for s, (i, j) in enumerate(states):
        for a, (di, dj) in enumerate(GRID_MOVES):
            ni, nj = i + di, j + dj
            inside = 0 <= ni < n_rows and 0 <= nj < n_cols
            nxt[s, a] = ni * n_cols + nj if inside else s
            valid[s, a] = inside and free[ni, nj]
    reward = (nxt == goal[0] * n_cols + goal[1]) & valid
    q = np.zeros(nxt.shape)
    for _ in range(Q_SWEEPS):
        q = reward + Q_DISCOUNT * valid * q.max(axis=1)[nxt]
    best = nxt[np.arange(len(states)), q.argmax(axis=1)]
    return {states[s]: states[best[s]] for s in range(len(states)) if free[states[s]]}


class WaypointController:
    """Minari's waypoint-following PD controller on a gymnasium-robotics maze (module docstring)."""

    def __init__(self, layout: list[list], rng: np.random.Generator):
        self.layout = tuple(tuple(row) for row in layout)
        self.x_center = len(layout[0]) / 2
        self.y_center = len(layout) / 2
        self.rng = rng
        self._goal: np.ndarray | None = None

    def cell(self, xy: np.ndarray) -> tuple[int, int]:
        return (math.floor(self.y_center - xy[1]), math.floor(xy[0] + self.x_center))

    def cell_center(self, cell: tuple[int, int]) -> np.ndarray:
        return np.array([cell[1] + 0.5 - self.x_center, self.y_center - cell[0] - 0.5])

    def __call__(self, state: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """The noiseless action towards ``goal`` from ``state = [x, y, vx, vy]``."""
        if self._goal is None or math.hypot(*(goal - self._goal)) > 1e-3:
            self._plan(state, goal)
        pos, waypoint = state[:2], self._waypoint
        reached = math.hypot(waypoint[0] - pos[0], waypoint[1] - pos[1]) <= WAYPOINT_RADIUS
        if reached and self._target_cell != self._goal_cell:
            self._advance(jitter=True)
        return P_GAIN * (self._waypoint - pos) + D_GAIN * state[2:4]

    def _plan(self, state: np.ndarray, goal: np.ndarray) -> None:
        self._goal = np.array(goal, dtype=np.float64)
        self._goal_cell = self.cell(goal)
        self._next = greedy_next_cells(self.layout, self._goal_cell)
        self._target_cell = self.cell(state)
        self._advance(jitter=False)

    def _advance(self, jitter: bool) -> None:
        if self._target_cell != self._goal_cell:
            self._target_cell = self._next[self._target_cell]
        if self._target_cell == self._goal_cell:
            self._waypoint = self._goal
        else:
            offset = self.rng.uniform(size=2) * WAYPOINT_JITTER if jitter else 0.0
            self._waypoint = self.cell_center(self._target_cell) - offset


def _clip(x: np.ndarray, bound: float) -> np.ndarray:
    """``np.clip(x, -bound, bound)`` for tiny arrays, without ``np.clip``'s overhead."""
    return np.minimum(np.maximum(x, -bound), bound)


class PointMazeStepper:
    """Steps a gymnasium-robotics ``PointMazeEnv`` through its MuJoCo model directly.

    Does what ``PointMazeEnv.step`` does (clip the action, clip the velocity to [-5, 5] and
    ``mj_forward``, ``mj_step``, sparse reward and success within 0.45 of the goal, then
    ``update_goal`` with the env's own RNG) without the per-step dict observations, infos and
    checks, about four times faster; the test suite checks it stays bit-identical to ``env.step``.
    """

    def __init__(self, env: PointMazeEnv):
        self.env = env
        self.model, self.data = env.point_env.model, env.point_env.data

    def state(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel])

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """Advance one step; returns the new ``[x, y, vx, vy]``, the reward and success."""
        data = self.data
        data.qvel[:] = _clip(data.qvel, 5.0)
        mujoco.mj_forward(self.model, data)
        data.ctrl[:] = _clip(action, 1.0)
        mujoco.mj_step(self.model, data)
        state = self.state()
        offset = state[:2] - self.env.goal
        success = bool(math.sqrt(offset.dot(offset)) <= SUCCESS_RADIUS)  # as np.linalg.norm
        if success:
            self.env.update_goal(state[:2])
        return state, float(success), success


def collect(
    maze: str, n_steps: int, seed: int, max_episode_steps: int, progress: bool, desc: str
) -> dict[str, np.ndarray]:
    """Controller rollouts in gymnasium-robotics' frame: states, goals, actions, rewards, splits."""
    noise_seq, jitter_seq = np.random.SeedSequence(seed).spawn(2)
    noise = np.random.default_rng(noise_seq).normal(0.0, ACTION_NOISE_STD, size=(n_steps, 2))
    controller = WaypointController(MAZE_MAPS[maze], np.random.default_rng(jitter_seq))
    env = PointMazeEnv(maze_map=MAZE_MAPS[maze], continuing_task=True, reset_target=True)
    env.reset(seed=seed)
    stepper = PointMazeStepper(env)
    states = np.zeros((n_steps + 1, 4))
    goals = np.zeros((n_steps, 2))  # the goal pursued at each step, also in its next observation
    actions, rewards = np.zeros((n_steps, 2)), np.zeros(n_steps)
    timeouts = np.zeros(n_steps, dtype=bool)
    states[0] = stepper.state()
    episode_steps = 0
    with progress_bar(n_steps, desc, "step", enabled=progress) as bar:
        for t in range(n_steps):
            goal = goals[t] = env.goal.copy()
            action = actions[t] = _clip(controller(states[t], goal) + noise[t], 1.0)
            states[t + 1], rewards[t], success = stepper.step(action)
            episode_steps += 1
            timeouts[t] = success or episode_steps >= max_episode_steps
            episode_steps = 0 if timeouts[t] else episode_steps
            if (t + 1) % 1000 == 0:
                bar.update(1000)
        bar.update(n_steps - bar.n)
    env.close()
    return {
        "states": states[:-1],
        "next_states": states[1:],
        "goals": goals,
        "actions": actions,
        "rewards": rewards,
        "timeouts": timeouts,
    }


def forge_pointmaze(
    spec: TaskSpec, scale: float, seed: int, progress: bool
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Minari's point-maze protocol, 6-D goal-conditioned observations (module docstring)."""
    maze = spec.forge_params["maze"]
    n_steps = max(1, round(STEPS_AT_SCALE_1 * scale))
    roll = collect(maze, n_steps, seed, spec.max_episode_steps, progress, f"forge {spec.task_id}")
    f32 = np.float32
    arrays = {
        "observations": np.concatenate([roll["states"], roll["goals"]], axis=1).astype(f32),
        "actions": roll["actions"].astype(f32),
        "rewards": roll["rewards"].astype(f32),
        "terminals": np.zeros(n_steps, dtype=bool),
        "timeouts": roll["timeouts"],
        "next_observations": np.concatenate([roll["next_states"], roll["goals"]], 1).astype(f32),
        "infos/goal": roll["goals"].astype(f32),
        "infos/qpos": roll["states"][:, :2].astype(f32),
        "infos/qvel": roll["states"][:, 2:].astype(f32),
    }
    ref_min, ref_max = pointmaze_reference_scores(spec)
    refs = {"ref_min_score": ref_min, "ref_max_score": ref_max}
    return arrays, {"params": _params(maze, n_steps, spec), **refs}


def forge_maze2d(
    spec: TaskSpec, scale: float, seed: int, progress: bool
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The point-maze rollouts in D4RL's maze2d layout (module docstring)."""
    maze = spec.forge_params["maze"]
    n_steps = max(1, round(STEPS_AT_SCALE_1 * scale))
    roll = collect(maze, n_steps, seed, spec.max_episode_steps, progress, f"forge {spec.task_id}")
    frame = maze2d_frame(maze)
    f32 = np.float32
    observations = frame.state_from_gym(roll["states"]).astype(f32)
    arrays = {
        "observations": observations,
        "actions": frame.vec_from_gym(roll["actions"]).astype(f32),
        "rewards": maze2d_rewards(observations, maze),
        "terminals": np.zeros(n_steps, dtype=bool),
        "timeouts": roll["timeouts"],
        "next_observations": frame.state_from_gym(roll["next_states"]).astype(f32),
        "infos/goal": frame.pos_from_gym(roll["goals"]).astype(f32),
        "infos/qpos": observations[:, :2],
        "infos/qvel": observations[:, 2:],
    }
    return arrays, {"params": _params(maze, n_steps, spec)}


def _params(maze: str, n_steps: int, spec: TaskSpec) -> dict[str, Any]:
    return {
        "maze": maze,
        "steps": n_steps,
        "max_episode_steps": spec.max_episode_steps,
        "p_gain": P_GAIN,
        "d_gain": D_GAIN,
        "action_noise_std": ACTION_NOISE_STD,
        "planner": f"Q-iteration ({Q_SWEEPS} sweeps, discount {Q_DISCOUNT})",
    }


def pointmaze_reference_scores(spec: TaskSpec) -> tuple[float, float]:
    """(random, controller) mean returns in ``spec``'s evaluation env, cached per task."""
    cache_file = data_root() / spec.task_id / f"reference-scores-{REF_EPISODES}ep.json"
    if cache_file.exists():
        cached = json.loads(cache_file.read_text())
        return cached["ref_min_score"], cached["ref_max_score"]
    env = make_env(spec)
    try:
        ref_min = maze_reference_return(spec, env, random_policy(env), REF_EPISODES)
        controller = WaypointController(spec.env_kwargs["maze_map"], np.random.default_rng(123))
        ref_max = maze_reference_return(
            spec, env, lambda o: controller(o[:4], o[4:6]), REF_EPISODES
        )
    finally:
        env.close()
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"ref_min_score": ref_min, "ref_max_score": ref_max}))
    tmp.replace(cache_file)
    return ref_min, ref_max


def maze_reference_return(
    spec: TaskSpec, env: gym.Env, policy: Callable[[np.ndarray], np.ndarray], episodes: int
) -> float:
    """:func:`tasks.forge.reference_return` on a ``make_env(spec)`` point maze, stepped by
    :class:`PointMazeStepper` (same observations and rewards, checked by the tests)."""
    maze_env = env.unwrapped
    stepper = PointMazeStepper(maze_env)
    returns = []
    obs, _ = env.reset(seed=REFERENCE_SEED)
    for _ in range(episodes):
        total = 0.0
        for _ in range(spec.max_episode_steps):
            state, reward, _ = stepper.step(policy(obs))
            obs = np.concatenate([state, maze_env.goal]).astype(np.float32)
            total += reward
        returns.append(total)
        obs, _ = env.reset()
    return float(np.mean(returns))
