"""A 2-D continuous bandit with a bimodal behaviour dataset (after Diffusion-QL's illustration).

Every episode is one step. The behaviour policy picks one of two modes with equal probability and
adds N(0, 0.1^2) noise; the reward is a sum of two Gaussian bumps, 1.0 at ``HIGH_MODE`` and 0.5 at
``LOW_MODE``. The mean action (what an MSE behaviour cloner converges to) sits between the modes
and earns almost nothing, so the task separates expressive policies from unimodal ones and
value-aware ones from pure imitation.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

HIGH_MODE = np.array([0.6, 0.6], dtype=np.float32)
LOW_MODE = np.array([-0.6, -0.6], dtype=np.float32)
MODE_REWARDS = (1.0, 0.5)
REWARD_WIDTH = 0.2
BEHAVIOUR_STD = 0.1
OBS_DIM, ACT_DIM = 1, 2


def bandit_reward(actions: np.ndarray) -> np.ndarray:
    """Reward of each action in ``[..., 2]``: two Gaussian bumps, highest at ``HIGH_MODE``."""
    a = np.asarray(actions, dtype=np.float64)
    bumps = [
        w * np.exp(-np.sum((a - m) ** 2, axis=-1) / (2 * REWARD_WIDTH**2))
        for m, w in zip((HIGH_MODE, LOW_MODE), MODE_REWARDS, strict=True)
    ]
    return (bumps[0] + bumps[1]).astype(np.float32)


def behaviour_actions(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` actions from the bimodal behaviour policy, clipped to the action box."""
    modes = np.where(rng.random(n)[:, None] < 0.5, HIGH_MODE, LOW_MODE)
    noise = rng.normal(0.0, BEHAVIOUR_STD, size=(n, ACT_DIM))
    return np.clip(modes + noise, -1.0, 1.0).astype(np.float32)


def behaviour_dataset(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """D4RL-layout arrays of ``n`` one-step episodes from the behaviour policy."""
    rng = np.random.default_rng(seed)
    actions = behaviour_actions(n, rng)
    obs = np.zeros((n, OBS_DIM), dtype=np.float32)
    return {
        "observations": obs,
        "actions": actions,
        "rewards": bandit_reward(actions),
        "next_observations": obs.copy(),
        "terminals": np.ones(n, dtype=bool),
        "timeouts": np.zeros(n, dtype=bool),
    }


class BanditEnv(gym.Env):
    """One-step episodes: a constant observation, a 2-D action, the bandit reward."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return np.zeros(OBS_DIM, dtype=np.float32), {}

    def step(self, action):
        reward = float(bandit_reward(np.clip(action, -1.0, 1.0)))
        return np.zeros(OBS_DIM, dtype=np.float32), reward, True, False, {}
