"""Forges: build a task's dataset locally by a published protocol (DESIGN section 4).

``forge(spec, scale, seed)`` dispatches on ``spec.forge`` to a protocol function
``(spec, scale, seed, progress) -> (arrays, attrs)`` and writes the result in D4RL's HDF5 layout
under ``$DIFFRL_DATA_DIR`` (default ``~/.cache/diffrl-bench/forged``), one file per
(task, scale, seed). A forged file is reused until ``force=True``. The write is atomic, so an
interrupted forge leaves no file at the final path (only a ``.tmp`` that is deleted on errors) and
simply runs again next time; forges are fast enough (see each protocol) that finer-grained
resumption is not implemented. Every protocol is deterministic for a seed.

Reference scores follow Minari's ``get_average_reference_score``: one ``reset(seed=123)`` of the
evaluation env, then consecutive episodes with unseeded resets; the random policy samples the
action space seeded with 123.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from tasks.hdf5 import build_lock, write_d4rl_hdf5
from tasks.spec import TaskSpec

PROTOCOLS = {
    "pointmaze": "tasks.forge.pointmaze:forge_pointmaze",
    "maze2d": "tasks.forge.pointmaze:forge_maze2d",
    "bandit": "tasks.forge.bandit:forge_bandit",
    "locomotion": "tasks.forge.locomotion:forge_locomotion",
    "safe_control": "tasks.forge.safe_control:forge_safe_control",
    "mpe": "tasks.forge.multiagent:forge_mpe",
    "mamujoco": "tasks.forge.mamujoco:forge_mamujoco",
}
NOT_YET: dict[str, str] = {}
REFERENCE_SEED = 123
VERSIONED_PACKAGES = ("numpy", "gymnasium", "gymnasium-robotics", "mujoco")


class ForgeNotAvailableError(RuntimeError):
    """The task has no forge protocol, or its protocol is not implemented yet."""


def data_root() -> Path:
    """Root of forged datasets: ``$DIFFRL_DATA_DIR`` or ``~/.cache/diffrl-bench/forged``."""
    default = Path.home() / ".cache" / "diffrl-bench" / "forged"
    return Path(os.environ.get("DIFFRL_DATA_DIR", default)).expanduser()


def forged_path(spec: TaskSpec, scale: float = 1.0, seed: int = 0) -> Path:
    """Where the dataset of ``spec`` forged at ``scale`` with ``seed`` lives (a safe task derived
    from another task shares that task's file). A locomotion level's name also carries the tag
    of the behaviour policies that collect it, so a retrained policy never reads a stale file."""
    name = f"scale{float(scale):g}-seed{int(seed)}"
    if spec.forge == "locomotion":
        from tasks.forge.locomotion import data_tag, policies_shipped

        if policies_shipped(spec):
            name += f"-{data_tag(spec)}"
    if spec.forge == "mamujoco":  # named by the SAC checkpoints it rolls out
        from tasks.forge.mamujoco import data_tag

        name += f"-{data_tag(spec)}"
    if spec.forge == "mpe":  # versioned by its reference scores
        from tasks.forge.multiagent import DATA_TAG

        name += f"-{DATA_TAG}"
    return data_root() / spec.data_id / f"{name}.hdf5"


def forge_available(spec: TaskSpec) -> bool:
    return spec.forge in PROTOCOLS


def forges_on_first_use(spec: TaskSpec) -> bool:
    """Whether a missing dataset of ``spec`` is forged automatically: cheap forges, and
    locomotion levels whose behaviour policies are shipped (collection then takes minutes; a level
    that needs SAC training first stays an explicit ``bench.forge`` step)."""
    if spec.cheap_forge:
        return True
    if spec.forge == "locomotion":
        from tasks.forge.locomotion import policies_shipped

        return policies_shipped(spec)
    return False


def forge(
    spec: TaskSpec, scale: float = 1.0, seed: int = 0, force: bool = False, progress: bool = True
) -> Path:
    """Forge ``spec``'s dataset (or reuse the one already forged) and return its path."""
    path = forged_path(spec, scale, seed)
    if path.exists() and not force:
        return path
    protocol = _protocol(spec)
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    with build_lock(path):
        if path.exists() and not force:  # forged by a concurrent run while this one waited
            return path
        return _forge_to(path, protocol, spec, scale, seed, progress)


def _forge_to(
    path: Path, protocol: Callable, spec: TaskSpec, scale: float, seed: int, progress: bool
) -> Path:
    """Run ``protocol`` and write its dataset to ``path`` with the forge's header."""
    start = time.perf_counter()
    arrays, attrs = protocol(spec, float(scale), int(seed), progress)
    seconds = time.perf_counter() - start
    if progress:
        n = len(arrays["observations"])
        print(
            f"forged {spec.task_id}: {n:,} transitions in {seconds:.1f} s (with reference scores)"
        )
    header = {
        "task_id": spec.data_id,
        "protocol": spec.forge,
        "scale": float(scale),
        "seed": int(seed),
        "versions": _versions(),
    }
    return write_d4rl_hdf5(path, arrays, {**header, **attrs})


def _protocol(spec: TaskSpec) -> Callable[..., tuple[dict[str, np.ndarray], dict[str, Any]]]:
    if spec.forge in NOT_YET:
        raise ForgeNotAvailableError(f"{spec.task_id}: {NOT_YET[spec.forge]}")
    if spec.forge not in PROTOCOLS:
        raise ForgeNotAvailableError(f"{spec.task_id} has no forge protocol")
    module, name = PROTOCOLS[spec.forge].split(":")
    return getattr(importlib.import_module(module), name)


def _versions() -> dict[str, str]:
    out = {}
    for package in VERSIONED_PACKAGES:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "absent"
    return out


def random_policy(env: gym.Env, seed: int = REFERENCE_SEED) -> Callable[[np.ndarray], np.ndarray]:
    """Minari's reference random policy: the env's action space sampled with ``seed``."""
    env.action_space.seed(seed)
    return lambda obs: env.action_space.sample()


def reference_return(
    env: gym.Env, policy: Callable[[np.ndarray], np.ndarray], episodes: int = 100
) -> float:
    """Mean return of ``policy`` over ``episodes`` consecutive episodes after ``reset(seed=123)``."""
    returns = []
    obs, _ = env.reset(seed=REFERENCE_SEED)
    for _ in range(episodes):
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        obs, _ = env.reset()
    return float(np.mean(returns))
