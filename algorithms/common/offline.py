"""Conventions shared by the offline actor-critics (IQL, IDQL, Diffusion-QL): the reward
transforms of their official code and its cosine learning-rate decays."""

from __future__ import annotations

import math
from collections.abc import Callable

from algorithms.common.contract import DatasetStats
from algorithms.common.defaults import check_choice

REWARD_NORMS = ("returns", "minus_one", "cql_antmaze", "none")


def reward_transform(mode: str, stats: DatasetStats) -> tuple[float, float]:
    """``(scale, shift)`` so that the critic trains on ``scale * r + shift``.

    ``returns`` scales by ``1000 / (max - min episode return)`` as IQL's ``train_offline.py``
    (Diffusion-QL's ``iql_locomotion``); ``minus_one`` shifts antmaze's sparse rewards to -1 / 0
    (IQL's antmaze rule, Diffusion-QL's ``iql_antmaze``); ``cql_antmaze`` is ``(r - 0.5) * 4``
    (Diffusion-QL's antmaze rule, from CQL); ``none`` leaves them unchanged.
    """
    check_choice("reward_norm", mode, REWARD_NORMS)
    if mode == "returns":
        return 1000.0 / max(stats.return_max - stats.return_min, 1e-6), 0.0
    if mode == "minus_one":
        return 1.0, -1.0
    if mode == "cql_antmaze":
        return 4.0, -2.0
    return 1.0, 0.0


def cosine_decay(train_steps: int) -> Callable[[int], float]:
    """LR multiplier ``0.5 * (1 + cos(pi * t / T))`` for ``LambdaLR``, ``T = train_steps``; 0
    from step ``T`` on."""
    horizon = max(train_steps, 1)

    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, horizon) / horizon))

    return factor


def stepped_cosine(t_max: int, every: int) -> Callable[[int], float]:
    """LR multiplier of ``CosineAnnealingLR(T_max=t_max)`` stepped once every ``every`` updates
    (``0.5 * (1 + cos(pi * (step // every) / t_max))``), for ``LambdaLR``: Diffusion-QL's
    official schedule, whose scheduler steps once per ``train()`` call of 50 epochs."""

    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * (step // every) / t_max))

    return factor
