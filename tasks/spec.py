"""Task and dataset types shared by the registry, the data sources, the forges and the harness."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tasks.safety import Safety

REQUIRED_FIELDS = (
    "observations",
    "actions",
    "rewards",
    "terminals",
    "timeouts",
    "next_observations",
)


class UnknownTaskError(KeyError):
    def __init__(self, task_id: str, valid: list[str]):
        super().__init__(task_id)
        self.valid = valid

    def __str__(self) -> str:
        return f"unknown task {self.args[0]!r}; valid: {', '.join(self.valid)}"


class DatasetNotFoundError(FileNotFoundError):
    """No dataset for a task under the requested source; the message says how to get one."""


class DatasetFormatError(ValueError):
    """A dataset file exists but is malformed (missing keys, ragged lengths, NaN, truncated)."""


@dataclass(frozen=True)
class TaskSpec:
    """Everything the suite knows about one task id.

    ``env_id``/``env_kwargs`` build the gymnasium environment that evaluates the task (for D4RL ids,
    their gymnasium successor); ``obs_keys`` flattens dict observations in that order.
    ``ref_min_score``/``ref_max_score`` are D4RL's constants where they exist; ``None`` means they
    come from the dataset (Minari's protocol, computed when the dataset is forged).
    """

    task_id: str
    kind: str  # "locomotion" | "maze" | "toy" | "safe" | "multi-agent"
    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    max_episode_steps: int = 1000
    obs_keys: tuple[str, ...] = ()
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    d4rl_file: str | None = None  # file name under $D4RL_DATASET_DIR
    minari_id: str | None = None
    forge: str | None = None  # forge protocol name in tasks.forge
    forge_params: dict[str, Any] = field(default_factory=dict)
    cheap_forge: bool = False  # forged automatically on first use
    goal_dims: tuple[int, ...] = ()
    success_key: str | None = None  # info key that marks success (mazes)
    safety: Safety | None = None  # cost signal, budget and state constraints of a safe task
    dataset_task: str | None = None  # a safe task shares this task's dataset (costs added)

    @property
    def data_id(self) -> str:
        """The task id whose dataset this task trains on."""
        return self.dataset_task or self.task_id


@dataclass(frozen=True)
class Provenance:
    """Where a dataset came from; stored in every run record."""

    source: str  # "d4rl" | "minari" | "forged" | "synthetic"
    path: str
    sha256: str
    n_transitions: int
    n_episodes: int
    protocol: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "path": self.path,
            "sha256": self.sha256,
            "n_transitions": self.n_transitions,
            "n_episodes": self.n_episodes,
            "protocol": self.protocol,
            "params": dict(self.params),
        }


@dataclass
class Dataset:
    """D4RL-layout arrays (float32 / bool), their provenance and the reference scores to use."""

    arrays: dict[str, np.ndarray]
    provenance: Provenance
    ref_min_score: float
    ref_max_score: float

    def __len__(self) -> int:
        return len(self.arrays["observations"])

    def episode_ends(self) -> np.ndarray:
        """Indices (exclusive) where episodes end: terminals, timeouts and the final step."""
        done = self.arrays["terminals"].astype(bool) | self.arrays["timeouts"].astype(bool)
        done[-1] = True
        return np.flatnonzero(done) + 1


def normalized_score(ret: float | np.ndarray, ref_min: float, ref_max: float):
    """D4RL normalization: 100 * (R - R_random) / (R_expert - R_random)."""
    return 100.0 * (np.asarray(ret, dtype=np.float64) - ref_min) / (ref_max - ref_min)
