"""Conventions shared by the offline actor-critics (IQL, IDQL, Diffusion-QL): task families,
reward normalization and the cosine learning-rate decay of their official code."""

from __future__ import annotations

import math
from collections.abc import Callable

from algorithms.common.contract import DatasetStats, TaskInfo

REWARD_NORMS = ("returns", "minus_one", "none")


def task_family(info: TaskInfo) -> str:
    """``antmaze`` (told apart from point mazes by its id), else the task's kind."""
    return "antmaze" if "antmaze" in info.data_id else info.kind


def default_reward_norm(info: TaskInfo) -> str:
    """IQL's convention: locomotion rewards scaled by the return range, antmaze rewards minus 1."""
    return {"antmaze": "minus_one", "locomotion": "returns"}.get(task_family(info), "none")


def reward_transform(mode: str, stats: DatasetStats) -> tuple[float, float]:
    """``(scale, shift)`` so that the critic trains on ``scale * r + shift``.

    ``returns`` scales by ``1000 / (max - min episode return)`` as IQL's ``train_offline.py``;
    ``minus_one`` shifts antmaze's sparse rewards to -1 / 0.
    """
    if mode == "returns":
        return 1000.0 / max(stats.return_max - stats.return_min, 1e-6), 0.0
    if mode == "minus_one":
        return 1.0, -1.0
    if mode == "none":
        return 1.0, 0.0
    raise ValueError(f"unknown reward_norm {mode!r}; valid: auto, {', '.join(REWARD_NORMS)}")


def cosine_decay(max_steps: int) -> Callable[[int], float]:
    """LR multiplier ``0.5 * (1 + cos(pi * t / T))`` for ``LambdaLR``; 0 from step ``T`` on."""
    horizon = max(max_steps, 1)

    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, horizon) / horizon))

    return factor
