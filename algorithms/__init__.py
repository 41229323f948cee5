"""Algorithms, one module each; see :mod:`algorithms.common.contract` for the agent contract."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

# name -> module; the order is the leaderboard's column order.
ALGORITHMS: dict[str, str] = {
    "bc": "algorithms.bc",
    "iql": "algorithms.iql",
    "td3bc": "algorithms.td3bc",
    "idql": "algorithms.idql",
    "diffusion_ql": "algorithms.diffusion_ql",
    "diffuser": "algorithms.diffuser",
    "decision_diffuser": "algorithms.decision_diffuser",
    "hdmi": "algorithms.hdmi",
    "safediffuser": "algorithms.safediffuser",
    "trebi": "algorithms.trebi",
    "dppo": "algorithms.dppo",
    "gaussian_ppo": "algorithms.gaussian_ppo",
    "drwr": "algorithms.drwr",
    "dawr": "algorithms.dawr",
    "madiff": "algorithms.madiff",
    "ma_bc": "algorithms.ma_bc",
    "ma_td3bc": "algorithms.ma_td3bc",
}


# Dataset transforms (``augment=<name>``): not agents, so apart from ALGORITHMS; contract:
# :class:`algorithms.common.contract.DatasetTransform`.
AUGMENTATIONS: dict[str, str] = {
    "diffstitch": "algorithms.diffstitch",
    "synther": "algorithms.synther",
}


class UnknownAlgorithmError(KeyError):
    def __str__(self) -> str:
        return f"unknown algorithm {self.args[0]!r}; valid: {', '.join(available())}"


def available() -> list[str]:
    """Names of the algorithms whose module is present in this installation."""
    return [n for n, m in ALGORITHMS.items() if importlib.util.find_spec(m) is not None]


def load(name: str) -> ModuleType:
    """Import ``algorithms.<name>``; raises :class:`UnknownAlgorithmError` listing valid names."""
    if name not in available():
        raise UnknownAlgorithmError(name)
    return importlib.import_module(ALGORITHMS[name])


class UnknownAugmentationError(KeyError):
    def __str__(self) -> str:
        return f"unknown augmentation {self.args[0]!r}; valid: none, {', '.join(augmentations())}"


def augmentations() -> list[str]:
    """Names of the dataset transforms whose module is present in this installation."""
    return [n for n, m in AUGMENTATIONS.items() if importlib.util.find_spec(m) is not None]


def load_augmentation(name: str) -> ModuleType:
    """Import a dataset transform's module; raises :class:`UnknownAugmentationError` listing the
    valid names."""
    if name not in augmentations():
        raise UnknownAugmentationError(name)
    return importlib.import_module(AUGMENTATIONS[name])
