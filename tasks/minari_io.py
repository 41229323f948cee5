"""Read a local Minari dataset through minari's own API into D4RL-layout arrays.

Per episode of N steps Minari stores N + 1 observations, N actions/rewards/terminations/
truncations. They map to D4RL's layout as: ``observations = obs[:-1]``,
``next_observations = obs[1:]``, ``terminals = terminations``, ``timeouts = truncations``; dict
observations are flattened in ``obs_keys`` order. An episode that ends with neither flag (data
collection stopped mid-episode) gets ``timeouts`` on its last step so episode boundaries survive.
Minari ``infos`` are not carried over. Nothing is ever downloaded here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tasks.envs import flatten_observations


def minari_dataset_dir(dataset_id: str) -> Path:
    """Where minari keeps ``dataset_id`` locally (honours ``$MINARI_DATASETS_PATH``)."""
    from minari.storage.datasets_root_dir import get_dataset_path

    return Path(get_dataset_path(dataset_id)) / "data"


def minari_dataset_exists(dataset_id: str) -> bool:
    return (minari_dataset_dir(dataset_id) / "metadata.json").exists()


def read_minari(
    dataset_id: str, obs_keys: tuple[str, ...]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """D4RL-layout arrays and the metadata of the local Minari dataset ``dataset_id``."""
    import minari

    dataset = minari.load_dataset(dataset_id, download=False)
    episodes = [_episode_arrays(ep, obs_keys) for ep in dataset.iterate_episodes()]
    arrays = {k: np.concatenate([ep[k] for ep in episodes]) for k in episodes[0]}
    return arrays, dict(dataset.storage.metadata)


def _episode_arrays(episode, obs_keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    obs = flatten_observations(episode.observations, obs_keys)
    terminals = np.asarray(episode.terminations, dtype=bool)
    timeouts = np.asarray(episode.truncations, dtype=bool).copy()
    timeouts[-1] |= not terminals[-1]
    actions = np.asarray(episode.actions, dtype=np.float32)
    return {
        "observations": obs[:-1],
        "actions": actions.reshape(len(actions), -1),
        "rewards": np.asarray(episode.rewards, dtype=np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
        "next_observations": obs[1:],
    }
