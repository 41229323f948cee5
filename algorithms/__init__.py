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
