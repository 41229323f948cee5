"""Environments for the online phase: action chunks, a vector env of them, and env snapshots.

An online agent decides a chunk of ``act_steps`` actions at once (DPPO's action chunks; 1 for a
per-step policy). :class:`ActionChunk` executes a chunk as one step of the wrapped env: the
actions run in order until the chunk ends or the episode does (the rest of the chunk is dropped),
the rewards of the executed steps are summed, and ``info["steps"]`` says how many ran (DPPO's
``MultiStep`` wrapper with ``reset_within_step``, whose reset the harness does).

:func:`make_online_vector_env` puts ``n_envs`` chunked copies of :func:`tasks.envs.make_env` in a
gymnasium vector env with autoreset disabled: the caller resets the environments whose episode
ended (``reset(options={"reset_mask": ended})``), so every step of every env is a real decision.

A killed online run resumes with its environments as they were: :func:`snapshot_env` keeps an
env as bytes (the pickled wrapper stack, whose counters such as the time limit's travel with
it, plus the base env's random generator and, for MuJoCo envs, which gymnasium rebuilds from
their constructor arguments when unpickled, the full simulator state) and :func:`restore_env`
rebuilds it. An env that cannot be pickled raises :class:`SnapshotError`; the harness then
resumes with freshly seeded resets (see :mod:`bench.online`).
"""

from __future__ import annotations

import functools
import pickle
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from tasks.envs import make_env
from tasks.spec import TaskSpec


class SnapshotError(RuntimeError):
    """The environment cannot be saved for a bit-exact resume."""


class ActionChunk(gym.Wrapper):
    """One step executes up to ``act_steps`` actions (``[act_steps, *action_shape]``); see the
    module docstring."""

    def __init__(self, env: gym.Env, act_steps: int):
        super().__init__(env)
        self.act_steps = act_steps
        space = env.action_space
        low = np.broadcast_to(space.low, (act_steps, *space.shape))
        high = np.broadcast_to(space.high, (act_steps, *space.shape))
        self.action_space = gym.spaces.Box(low, high, dtype=space.dtype)

    def step(self, action: np.ndarray):
        total, info, steps = 0.0, {}, 0
        terminated = truncated = False
        for act in action:
            obs, reward, terminated, truncated, info = self.env.step(act)
            total += float(reward)
            steps += 1
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, {**info, "steps": steps}


def make_online_vector_env(
    spec: TaskSpec, n_envs: int, act_steps: int, asynchronous: bool = False
) -> gym.vector.VectorEnv:
    """``n_envs`` :class:`ActionChunk` copies of ``make_env(spec)``, autoreset disabled, in a
    ``SyncVectorEnv`` (or an ``AsyncVectorEnv``: one process per env)."""
    return vector_env([functools.partial(_chunked, spec, act_steps)] * n_envs, asynchronous)


def restore_vector_env(snapshots: list[bytes]) -> gym.vector.VectorEnv:
    """The ``SyncVectorEnv`` of :func:`make_online_vector_env` rebuilt from env snapshots."""
    return vector_env([functools.partial(restore_env, s) for s in snapshots], False)


def vector_env(env_fns: list, asynchronous: bool) -> gym.vector.VectorEnv:
    cls = gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv
    return cls(env_fns, autoreset_mode=AutoresetMode.DISABLED)


def _chunked(spec: TaskSpec, act_steps: int) -> gym.Env:
    return ActionChunk(make_env(spec), act_steps)


def snapshot_env(env: gym.Env) -> bytes:
    """``env`` (its wrappers, random generator and simulator state) as bytes."""
    base = env.unwrapped
    try:
        wrappers = pickle.dumps(env)
    except Exception as e:  # an env holding a handle (a window, a socket) cannot be pickled
        raise SnapshotError(f"{type(base).__name__} cannot be pickled: {e}") from e
    state: dict[str, Any] = {"env": wrappers, "rng": base.np_random}
    if _is_mujoco(base):
        state["mujoco"] = _mujoco_state(base)
    return pickle.dumps(state)


def restore_env(snapshot: bytes) -> gym.Env:
    """The env :func:`snapshot_env` saved, in the same state."""
    state = pickle.loads(snapshot)
    env = pickle.loads(state["env"])
    base = env.unwrapped
    base.np_random = state["rng"]
    if "mujoco" in state:
        _set_mujoco_state(base, state["mujoco"])
    return env


def _is_mujoco(env: gym.Env) -> bool:
    return hasattr(env, "model") and hasattr(env, "data") and hasattr(env, "set_state")


def _mujoco_state(env: gym.Env) -> np.ndarray:
    """MuJoCo's full physics state (time, qpos, qvel, actuators, warm start, ...)."""
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    out = np.empty(mujoco.mj_stateSize(env.model, spec))
    mujoco.mj_getState(env.model, env.data, out, spec)
    return out


def _set_mujoco_state(env: gym.Env, state: np.ndarray) -> None:
    import mujoco

    mujoco.mj_setState(env.model, env.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(env.model, env.data)
