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
from typing import Any, Protocol, TypeVar

from algorithms.common.contract import TaskInfo

C = TypeVar("C")
MAZE_SIZES = ("umaze", "medium", "large")


class TaskKey(Protocol):
    """What picks a task's paper settings: its kind and the id of its data. A
    :class:`TaskInfo` is one; so is the harness's task spec (``budget=paper`` reads an
    algorithm's published budget before any data or environment is loaded)."""

    @property
    def kind(self) -> str: ...

    @property
    def data_id(self) -> str: ...


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

    def for_task(self, info: TaskKey) -> dict[str, Any]:
        """The merged values that apply to ``info`` (general to specific)."""
        merged: dict[str, Any] = {}
        for key in ("default", *family_chain(info)):
            if key in self.families:
                merged.update(self.families[key].values)
        if info.data_id in self.datasets:
            merged.update(self.datasets[info.data_id].values)
        return merged

    def sources(self, info: TaskKey) -> list[str]:
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


def family_chain(info: TaskKey) -> tuple[str, ...]:
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
    """One setting that decides results, as the official code has it: a row of the fidelity
    report (``python -m bench.fidelity`` writes ``reports/fidelity.md``).

    **Module convention.** An algorithm module that is reported defines

    * ``FIDELITY_TASKS: tuple[str, ...]``: the reference task ids (registry ids, e.g.
      ``"hopper-medium-v2"``) on which the report resolves the Config (``resolve`` with the
      task's :class:`TaskInfo` and placeholder :class:`DatasetStats`); one table per task;
    * ``FIDELITY: tuple[Official, ...]``: the rows. A row with ``task=None`` appears in every
      reference task's table; one with ``task="<id>"`` only in that task's (use it where the
      official value differs per task, e.g. Diffuser on Maze2D vs locomotion);
    * ``PAPER_BUDGET``: a :class:`PaperDefaults` whose values are :data:`BUDGET_KEYS` (the
      published training length, evaluation interval and episodes, each entry with its source);
      ``budget=paper`` runs it (:func:`paper_budget`) and the report adds its three rows
      ("training steps", "evaluation interval (steps)", "evaluation episodes") to every table,
      so ``FIDELITY`` does not repeat them.

    A module without ``FIDELITY`` is listed in the report as not reported yet.

    **A row.** ``setting`` is either a Config field, whose resolved value on the task is "ours"
    (leave ``ours`` ``None``), or, for what no field holds (a normalizer, a loss form, the
    evaluation protocol), a short phrase with a space in it (``"observation normalization"``)
    whose ``ours`` describes this code's behaviour, or stays ``None`` where it is the official
    one.
    ``value`` is the official value: for a Config field, comparable with ``==`` to the resolved
    value (e.g. ``3e-4``, ``"vp"``, ``None``); otherwise a short description. ``source`` names the
    official repository and file (and the commit where versions differ). ``departure`` is
    ``None`` exactly where ours is the official behaviour; otherwise it says why we depart, or
    which option restores the official behaviour. The report's tests enforce: a Config field
    whose resolved value differs from ``value`` has a departure, and one that equals it has
    none (a field whose value comes from the dataset statistics is not compared); a described
    setting has ``ours`` exactly when it has a departure; each setting appears once per task.
    """

    setting: str
    value: Any  # the official value (or a short description of the official behaviour)
    source: str  # repository and file (commit where versions differ)
    departure: str | None = None  # why ours differs (None: ours is the official behaviour)
    ours: str | None = None  # described settings only: what this code does, where it departs
    task: str | None = None  # a reference task id: the row belongs to that task's table only


# Keys of an algorithm's ``PAPER_BUDGET`` (a :class:`PaperDefaults` whose values are these).
BUDGET_KEYS = ("train_steps", "eval_every", "eval_episodes")


def paper_budget(budget: PaperDefaults, task: TaskKey) -> dict[str, int]:
    """The published budget of an algorithm on ``task`` (``budget=paper``): ``train_steps``
    (gradient steps), ``eval_every`` (steps between evaluations) and ``eval_episodes`` (episodes
    per evaluation), from the module's ``PAPER_BUDGET`` (one :class:`PaperDefaults`: per family,
    then per dataset id, each with its source). A family may leave a key out where the official
    code does not publish it (a planner whose script runs one episode per call); ``budget=paper``
    is then refused on that task. Raises ``KeyError`` naming a missing or unknown key."""
    values = budget.for_task(task)
    unknown = set(values) - set(BUDGET_KEYS)
    if unknown:
        raise KeyError(f"a PAPER_BUDGET sets {sorted(unknown)}; valid keys: {list(BUDGET_KEYS)}")
    missing = [k for k in BUDGET_KEYS if k not in values]
    if missing:
        raise KeyError(f"no published {', '.join(missing)} for {task.data_id}")
    return {k: int(values[k]) for k in BUDGET_KEYS}
