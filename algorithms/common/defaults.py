"""Published settings as data: one shape for every algorithm's paper defaults.

Each algorithm keeps its paper's (or official code's) per-task values in one :class:`PaperDefaults`:
settings per task family, then per-dataset overrides on top, every entry with its source. A
Config field left ``None`` means "the paper's value"; :func:`fill` replaces every such field with
the most specific value that applies to the task, from general to specific:

``families["default"]`` < ``families[<family>]`` < ``families[<family>-<variant>]`` <
``datasets[<dataset id>]``

where the family chain comes from :func:`family_chain` (e.g. ``("maze", "maze-umaze")`` for the
D4RL/Minari point maze ``pointmaze-umaze``). A field the chain leaves ``None`` stays ``None``
(the algorithm documents what that means, e.g. "all DDPM steps").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from algorithms.common.contract import TaskInfo

C = TypeVar("C")
MAZE_SIZES = ("umaze", "medium", "large")


@dataclass(frozen=True)
class Settings:
    """Values of some Config fields and where they were published."""

    source: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class PaperDefaults:
    """An algorithm's published settings: per task family, then per dataset id."""

    families: Mapping[str, Settings]
    datasets: Mapping[str, Settings] = field(default_factory=dict)

    def for_task(self, info: TaskInfo) -> dict[str, Any]:
        """The merged values that apply to ``info`` (general to specific)."""
        merged: dict[str, Any] = {}
        for key in ("default", *family_chain(info)):
            if key in self.families:
                merged.update(self.families[key].values)
        if info.data_id in self.datasets:
            merged.update(self.datasets[info.data_id].values)
        return merged

    def sources(self, info: TaskInfo) -> list[str]:
        """The sources of the entries that apply to ``info`` (for headers and the record)."""
        keys = [k for k in ("default", *family_chain(info)) if k in self.families]
        out = [self.families[k].source for k in keys]
        if info.data_id in self.datasets:
            out.append(self.datasets[info.data_id].source)
        return list(dict.fromkeys(out))

    def extend(
        self,
        families: Mapping[str, Settings] | None = None,
        datasets: Mapping[str, Settings] | None = None,
    ) -> PaperDefaults:
        """These settings with a derived algorithm's laid over them (e.g. TREBI's over
        Diffuser's): an entry for a key already present adds its values to that entry's (its own
        winning where both set a field) and its source after the entry's; a new key is added."""
        return PaperDefaults(
            _layered(self.families, families or {}), _layered(self.datasets, datasets or {})
        )


def _layered(base: Mapping[str, Settings], extra: Mapping[str, Settings]) -> dict[str, Settings]:
    out = dict(base)
    for key, settings in extra.items():
        if key in out:
            old = out[key]
            settings = Settings(
                f"{old.source}; {settings.source}", {**old.values, **settings.values}
            )
        out[key] = settings
    return out


def family_chain(info: TaskInfo) -> tuple[str, ...]:
    """Task families of ``info`` from general to specific: ``locomotion``, ``antmaze``,
    ``maze`` then ``maze-<size>``, ``toy``, ``safe`` (the safe control tasks). Safe variants of a
    dataset (``velocity-hopper-...``) share their base dataset's family."""
    if "antmaze" in info.data_id:
        return ("antmaze",)
    if info.kind == "maze":
        size = next((s for s in MAZE_SIZES if s in info.data_id), "medium")
        return ("maze", f"maze-{size}")
    return (info.kind,)


def fill(cfg: C, paper: PaperDefaults, info: TaskInfo) -> C:
    """``cfg`` with every ``None`` field that ``paper`` sets for ``info`` filled in."""
    values = paper.for_task(info)
    names = {f.name for f in dataclasses.fields(cfg)}
    unknown = set(values) - names
    if unknown:
        raise KeyError(f"paper defaults name fields the Config lacks: {sorted(unknown)}")
    filled = {k: v for k, v in values.items() if getattr(cfg, k) is None}
    return dataclasses.replace(cfg, **filled)


def check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the knob ``algo.<name>`` and its valid values."""
    if value not in valid:
        raise ValueError(f"algo.{name}={value!r} is not valid; valid: {', '.join(valid)}")


@dataclass(frozen=True)
class Official:
    """One setting that decides results, as the official code has it, for the fidelity report
    (``python -m bench.fidelity``).

    ``setting`` is a Config field (its resolved value on the report's reference task is "ours")
    or, for what no field holds (a normalizer, a loss form), a short name with ``ours`` saying
    what this code does. ``departure`` is ``None`` where ours is the official behaviour, else
    why it departs (or which option restores the official one).
    """

    setting: str
    value: Any  # the official value (or a short description of the official behaviour)
    source: str  # repository and file (commit where versions differ)
    departure: str | None = None
    ours: str | None = None  # for settings that are not Config fields
