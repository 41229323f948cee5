"""Forge of the toy bandit: ``tasks.toy.behaviour_dataset``, 10,000 one-step episodes at scale 1.

Reference scores (Minari's protocol, 100 episodes from ``reset(seed=123)``): min = the uniform
random policy, max = the oracle that always plays ``HIGH_MODE``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.envs import make_env
from tasks.forge import random_policy, reference_return
from tasks.spec import TaskSpec
from tasks.toy import HIGH_MODE, behaviour_dataset

EPISODES_AT_SCALE_1 = 10_000
REF_EPISODES = 100


def forge_bandit(
    spec: TaskSpec, scale: float, seed: int, progress: bool
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The behaviour dataset and its reference scores; ``progress`` is moot (it takes ms)."""
    n = max(1, round(EPISODES_AT_SCALE_1 * scale))
    arrays = behaviour_dataset(n, seed=seed)
    env = make_env(spec)
    try:
        ref_min = reference_return(env, random_policy(env), REF_EPISODES)
        ref_max = reference_return(env, lambda obs: HIGH_MODE, REF_EPISODES)
    finally:
        env.close()
    params = {"episodes": n, "behaviour": "bimodal, N(0, 0.1^2) around each mode"}
    return arrays, {"params": params, "ref_min_score": ref_min, "ref_max_score": ref_max}
