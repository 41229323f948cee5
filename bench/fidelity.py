"""``python -m bench.fidelity``: ``reports/fidelity.md``, every algorithm's settings beside the
official code's, generated from the code itself.

Each algorithm module lists the settings that decide its results as ``FIDELITY`` rows
(:class:`~algorithms.common.defaults.Official`) on its ``FIDELITY_TASKS`` (the format is
documented there). For every reference task the report resolves the module's ``Config`` with the
module's own ``resolve`` (the task's real shapes, placeholder dataset statistics) and prints one
table: setting | ours | official | source | departure. A resolved value that depends on the
dataset statistics (found by resolving twice on different placeholders) is shown as "from the
dataset". Three rows per task come from the module's ``PAPER_BUDGET`` and the budget presets:
training steps, evaluation interval and evaluation episodes under ``budget=standard`` and
``budget=paper``. A module without ``FIDELITY`` is listed as not reported yet.

:func:`problems` is what the tests enforce: a Config field whose resolved value differs from the
official one without a departure reason, a departure on a value that is the official one, a
described setting whose ``ours`` and departure disagree, a setting named twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from omegaconf import OmegaConf

import algorithms
from algorithms.common.contract import DatasetStats, TaskInfo
from algorithms.common.defaults import Official
from bench.multiagent import multiagent_env_info
from bench.run import env_task_info
from tasks.envs import make_env
from tasks.registry import get_task

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "reports" / "fidelity.md"
BUDGET_DIR = Path(__file__).resolve().parent / "conf" / "budget"
FROM_DATA = "from the dataset"
# Budget rows: (setting, key of PAPER_BUDGET, key of a budget preset).
BUDGET_ROWS = (
    ("training steps", "train_steps", "train.steps"),
    ("evaluation interval (steps)", "eval_every", "train.eval_every"),
    ("evaluation episodes", "eval_episodes", "eval.episodes"),
)


@dataclass(frozen=True)
class Row:
    """One line of a task's table, as printed."""

    setting: str
    ours: str
    official: str
    source: str
    departure: str


# ---------------------------------------------------------------------------------- resolving


def reference_info(task_id: str) -> TaskInfo:
    """The :class:`TaskInfo` of a registered task, built from its spec and environment (no data):
    the cost budget of a safe task is its absolute budget, or else a placeholder (a Config field
    that depends on it is then reported as "from the dataset")."""
    spec = get_task(task_id)
    if spec.kind == "multi-agent":
        return multiagent_env_info(spec)
    env = make_env(spec)
    try:
        budget = None
        if spec.safety is not None:
            budget = spec.safety.budget if spec.safety.budget is not None else 1.0
        return env_task_info(spec, env, budget)
    finally:
        env.close()


def placeholder_stats(info: TaskInfo, scale: float) -> DatasetStats:
    """Dataset statistics that no real dataset has; two scales tell data-derived values apart."""
    obs, act = np.full(info.obs_dim, scale, np.float32), np.full(info.act_dim, scale, np.float32)
    return DatasetStats(
        obs_mean=obs,
        obs_std=obs,
        act_mean=act * 0.0,
        act_std=act,
        reward_min=-scale,
        reward_max=scale,
        return_min=-100.0 * scale,
        return_max=1000.0 * scale,
        n_transitions=int(1_000_000 * scale),
        n_episodes=int(1000 * scale),
    )


def resolved_on(module: ModuleType, info: TaskInfo) -> tuple[dict[str, Any], set[str]]:
    """The module's default Config resolved on ``info`` (as a dict), and the fields whose value
    depends on the dataset statistics (or a safe task's data-derived budget)."""
    first = dataclasses.asdict(module.resolve(module.Config(), info, placeholder_stats(info, 1.0)))
    other_info = info
    if info.cost_budget is not None and get_task(info.task_id).safety.budget is None:
        other_info = dataclasses.replace(info, cost_budget=2.0)
    second = module.resolve(module.Config(), other_info, placeholder_stats(other_info, 2.0))
    second = dataclasses.asdict(second)
    derived = {k for k in first if not _same(first[k], second[k])}
    return first, derived


def _same(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return not isinstance(b, bool) and math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return a == b


# ---------------------------------------------------------------------------------- checking


def rows_for(module: ModuleType, task: str) -> list[Official]:
    """The module's ``FIDELITY`` rows that belong to ``task``'s table."""
    return [o for o in module.FIDELITY if o.task in (None, task)]


def problems(module: ModuleType) -> list[str]:
    """What makes the module's ``FIDELITY`` untrue or malformed (empty when it is right)."""
    out: list[str] = []
    name = module.__name__.rsplit(".", 1)[-1]
    fields = {f.name for f in dataclasses.fields(module.Config)}
    tasks = tuple(module.FIDELITY_TASKS)
    if not tasks:
        out.append(f"{name}: FIDELITY_TASKS is empty")
    for row in module.FIDELITY:
        if row.task is not None and row.task not in tasks:
            out.append(f"{name}: {row.setting!r} names task {row.task!r}, not in FIDELITY_TASKS")
        if " " not in row.setting and row.setting not in fields:
            out.append(f"{name}: {row.setting!r} is not a Config field (describe it in words)")
        if row.setting in {setting for setting, _, _ in BUDGET_ROWS}:
            out.append(f"{name}: {row.setting!r} is a budget row, made from PAPER_BUDGET")
    for task in tasks:
        values, derived = resolved_on(module, reference_info(task))
        seen: set[str] = set()
        for row in rows_for(module, task):
            if row.setting in seen:
                out.append(f"{name} on {task}: {row.setting!r} appears twice")
            seen.add(row.setting)
            out.extend(f"{name} on {task}: {p}" for p in _row_problems(row, values, derived))
    return out


def _row_problems(row: Official, values: dict[str, Any], derived: set[str]) -> list[str]:
    if row.setting not in values:  # a described setting
        if (row.ours is None) != (row.departure is None):
            return [f"{row.setting!r}: a described setting has `ours` exactly when it departs"]
        return []
    if row.ours is not None:
        return [f"{row.setting!r} is a Config field: its `ours` is the resolved value"]
    if row.setting in derived:
        return []
    same = _same(values[row.setting], row.value)
    if not same and row.departure is None:
        return [
            f"{row.setting!r}: ours {values[row.setting]!r} differs from the official "
            f"{row.value!r} without a departure reason"
        ]
    if same and row.departure is not None:
        return [f"{row.setting!r}: ours is the official value, yet a departure is given"]
    return []


# ---------------------------------------------------------------------------------- rendering


def fmt(value: Any) -> str:
    """A value as a table cell: code-formatted, long integers grouped with ``_``."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        text = f"{value:_}"
    else:
        text = str(value)
    return f"`{text}`"


def cell(text: str) -> str:
    """Plain text made safe for one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def presets() -> dict[str, dict[str, Any]]:
    """The ``quick``/``standard``/``paper`` budget presets as plain dicts."""
    return {
        p.stem: OmegaConf.to_container(OmegaConf.load(p)) for p in sorted(BUDGET_DIR.glob("*.yaml"))
    }


def budget_rows(module: ModuleType, task: str) -> list[Row]:
    """Training length and evaluation under ``budget=standard`` beside the published budget."""
    budget = getattr(module, "PAPER_BUDGET", None)
    if budget is None:
        return [Row("budget", "`budget=paper` unavailable", "?", "no PAPER_BUDGET", "not reported")]
    spec = get_task(task)
    paper, source = budget.for_task(spec), budget.sources(spec)[-1]
    standard = presets()["standard"]
    rows = []
    for setting, key, dotted in BUDGET_ROWS:
        section, knob = dotted.split(".")
        if key not in paper:
            ours = f"{fmt(standard[section][knob])} (standard); `budget=paper` refused here"
            rows.append(Row(setting, ours, "not in the official code", source, ""))
            continue
        ours = f"{fmt(standard[section][knob])} (standard), {fmt(paper[key])} (paper)"
        departure = ""
        if standard[section][knob] != paper[key]:
            departure = (
                "`budget=standard` is the suite's one budget for all; `budget=paper` is this"
            )
        rows.append(Row(setting, ours, fmt(paper[key]), source, departure))
    return rows


def table_rows(module: ModuleType, task: str) -> list[Row]:
    """The rows of ``task``'s table: the module's ``FIDELITY`` rows, then its budget."""
    values, derived = resolved_on(module, reference_info(task))
    out = []
    for row in rows_for(module, task):
        if row.setting in values:
            ours = FROM_DATA if row.setting in derived else fmt(values[row.setting])
        else:
            ours = row.ours if row.ours is not None else "as official"
        official = fmt(row.value) if row.setting in values else str(row.value)
        out.append(Row(row.setting, ours, official, row.source, row.departure or ""))
    return out + budget_rows(module, task)


def algorithm_section(name: str, module: ModuleType) -> list[str]:
    """A module's heading, its title line, and one table per reference task."""
    title = (module.__doc__ or name).strip().splitlines()[0]
    lines = [f"## {name}", "", cell(title), ""]
    fields = [f.name for f in dataclasses.fields(module.Config)]
    for task in module.FIDELITY_TASKS:
        rows = table_rows(module, task)
        lines += [f"On `{task}`:", ""]
        lines += ["| setting | ours | official | source | departure |", "|---|---|---|---|---|"]
        lines += [
            "| "
            + " | ".join(cell(c) for c in (r.setting, r.ours, r.official, r.source, r.departure))
            + " |"
            for r in rows
        ]
        listed = {r.setting for r in rows}
        others = [f for f in fields if f not in listed]
        lines.append("")
        if others:
            lines += [f"Config fields not compared: {', '.join(f'`{f}`' for f in others)}.", ""]
    return lines


def render() -> str:
    """The whole report."""
    names = algorithms.available()
    modules = {n: algorithms.load(n) for n in names}
    reported = [n for n in names if hasattr(modules[n], "FIDELITY")]
    missing = [n for n in names if n not in reported]
    lines = [
        "# Fidelity: our defaults beside the official code",
        "",
        "Generated by `python -m bench.fidelity` from each algorithm's `FIDELITY` rows and its "
        "`Config` resolved with its own `resolve` on the reference task(s) named above each "
        "table (the task's real shapes; placeholder dataset statistics, so a value computed from "
        f'the data reads "{FROM_DATA}"). "ours" is the default a run gets; a departure says why '
        "it differs from the official code, or which option restores the official behaviour. "
        "The budget rows compare `budget=standard` (1M steps for all, the D4RL convention) with "
        "the algorithm's published budget, which `budget=paper` runs. A test fails when this "
        "file is stale or a default departs without a reason.",
        "",
    ]
    if missing:
        lines += [f"Not reported yet (no `FIDELITY`): {', '.join(missing)}.", ""]
    for name in reported:
        lines += algorithm_section(name, modules[name])
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the report (``--out``: elsewhere); exit 1, listing them, on any :func:`problems`."""
    parser = argparse.ArgumentParser(prog="python -m bench.fidelity", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPORT, help="where to write the report")
    args = parser.parse_args(argv)
    found = [
        p
        for n in algorithms.available()
        if hasattr(module := algorithms.load(n), "FIDELITY")
        for p in problems(module)
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render())
    print(f"wrote {args.out}")
    for p in found:
        print(f"problem: {p}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
