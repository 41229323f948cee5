"""The leaderboard's tables, as text cells: every output format (Markdown, LaTeX, CSV) shows the
same strings.

Each table keeps runs of different data sources and budgets in different rows (the
``data``/``budget`` columns come first), and each cell holds one configuration's seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench import stats
from bench.leaderboard.runs import algo_order, sort_by_algo

MISSING = "—"
SECTION_COLUMNS = ["data", "budget"]


@dataclass(frozen=True)
class Table:
    """A rendered table: cells are final strings, so every output format shows the same text."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


# -- cells ------------------------------------------------------------------------------------


def num(x: float | None, digits: int = 1) -> str:
    """A fixed-precision number, or a dash where there is none."""
    if x is None or not np.isfinite(x):
        return MISSING
    return f"{x:.{digits}f}"


def mean_std_cell(mean: float, std: float, n: int) -> str:
    """``mean ± std (n=k)``; one seed has no std."""
    if n < 2 or not np.isfinite(std):
        return f"{num(mean)} (n={n})"
    return f"{num(mean)} ± {num(std)} (n={n})"


def budget_label(budget: str, steps: int) -> str:
    """``quick (5000 steps)``; the bare name when the step count is unknown."""
    return f"{budget} ({steps} steps)" if steps >= 0 else budget


def section_cells(row: pd.Series) -> list[str]:
    """The ``data`` and ``budget`` cells of a row."""
    return [row["source"], budget_label(row["budget"], int(row["train_steps"]))]


def first_line(text: str | None, limit: int = 300) -> str:
    """The first line of a reason (the exception, before any traceback), at most ``limit`` long."""
    lines = text.strip().splitlines() if isinstance(text, str) else []
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def relative_to(path: str, root: Path) -> str:
    """``path`` under the results directory, so reports do not depend on where results live."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def unscored_reason(r: pd.Series) -> str | None:
    """Why a run has no score, or ``None`` when it is a scored completed run."""
    if r["status"] == "failed":
        return first_line(r["failure_reason"]) or "failed (no reason recorded)"
    if r["status"] == "running":
        return f"incomplete: killed or still running (resumed {r['resumed']} times)"
    if r["status"] != "completed":
        return f"unknown status {r['status']!r}"
    if not np.isfinite(r["final_score"]):
        return "completed without a final normalized score"
    return None


# -- tables -----------------------------------------------------------------------------------


def score_table(summary: pd.DataFrame, prefix: str, name: str, title: str, note: str) -> Table:
    """Tasks x algorithms, one row per (data, budget, task); each cell one configuration's seeds."""
    algos = algo_order(summary["algo"])
    rows = []
    for key, group in summary.groupby([*stats.SECTION_KEYS, "task"], sort=True):
        cells = []
        for algo in algos:
            entries = group[group["algo"] == algo].sort_values("config_hash")
            cells.append("; ".join(entry_cell(e, prefix) for _, e in entries.iterrows()) or MISSING)
        rows.append([*section_cells(group.iloc[0]), key[3], *cells])
    return Table(name, title, [*SECTION_COLUMNS, "task", *algos], rows, note)


def entry_cell(entry: pd.Series, prefix: str) -> str:
    """One configuration's ``final`` or ``best`` score over its seeds, with its variant label."""
    n = int(entry["n"] if prefix == "final" else entry["best_n"])
    if n == 0:
        return MISSING
    cell = mean_std_cell(entry[f"{prefix}_mean"], entry[f"{prefix}_std"], n)
    return f"{cell} [{entry['variant']}]" if entry["variant"] else cell


def aggregate_table(agg: pd.DataFrame) -> Table:
    """Per algorithm and section: the IQM over all its runs with a stratified-bootstrap CI."""
    rows = []
    for _, a in sort_by_algo(agg, [*stats.SECTION_KEYS]).iterrows():
        ci = f"[{num(a['iqm_lo'])}, {num(a['iqm_hi'])}]"
        flag = "yes" if a["mixed_configs"] else "no"
        rows.append(
            [*section_cells(a), a["algo"], str(a["tasks"]), str(a["runs"]), num(a["iqm"]), ci, flag]
        )
    note = (
        "IQM: mean of the middle 50% of all runs (seeds x tasks) of an algorithm; 95% CI from "
        f"{stats.INTERVAL_REPS} stratified-bootstrap resamples (runs resampled within each task; "
        "rliable's method). Compare algorithms only over the same tasks."
    )
    columns = [*SECTION_COLUMNS, "algo", "tasks", "runs", "IQM", "95% CI", "mixed configs"]
    return Table(
        "aggregate", "Aggregate: interquartile mean of the final score", columns, rows, note
    )


def paper_table(summary: pd.DataFrame, paper: pd.DataFrame) -> Table:
    """Our final score beside every published number for the same (task, algo). A run on
    augmented data (source ``forged+diffstitch``) meets the papers' ``iql+diffstitch`` rows, never
    the plain algorithm's."""
    paper = paper.rename(columns={"source": "paper_source", "algo": "paper_algo"})
    augment = [s.partition("+")[2] for s in summary["source"]]
    keyed = summary.assign(
        paper_algo=[f"{a}+{g}" if g else a for a, g in zip(summary["algo"], augment, strict=True)]
    )
    joined = keyed.merge(paper, on=["task", "paper_algo"], how="inner")
    rows = []
    for _, r in joined.sort_values([*stats.GROUP_KEYS, "paper_source"], kind="stable").iterrows():
        ours = mean_std_cell(r["final_mean"], r["final_std"], int(r["n"]))
        theirs = num(r["normalized_score"]) + (
            f" ± {num(r['spread'])}" if np.isfinite(r["spread"]) else ""
        )
        rows.append([*section_cells(r), r["task"], r["entry"], ours, theirs, r["paper_source"]])
    note = (
        "Paper numbers come from bench/reference/paper_scores.csv; their spread is as the source "
        "reports it (std or standard error, see the source). Papers train on D4RL data for 1M "
        "steps: a different data source or budget is not a like-for-like comparison."
    )
    columns = [*SECTION_COLUMNS, "task", "algo", "ours (final)", "paper", "paper source"]
    return Table("paper_comparison", "Ours beside the papers", columns, rows, note)


def safety_table(safe: pd.DataFrame) -> Table:
    """Return and constraint satisfaction side by side, per (data, budget, task, algo, config)."""
    rows = []
    if len(safe):
        keys = [*stats.GROUP_KEYS, "cost_budget"]
        for _, g in safe.groupby(keys, sort=True):
            r, n = g.iloc[0], len(g)
            score = mean_std_cell(g["final_score"].mean(), g["final_score"].std(), n)
            cost = mean_std_cell(g["cost_mean"].mean(), g["cost_mean"].std(), n)
            rows.append(
                [
                    *section_cells(r),
                    r["task"],
                    r["entry"],
                    score,
                    cost,
                    num(r["cost_budget"], 2),
                    num(100 * g["over_budget_rate"].mean(), 0),
                    num(g["barrier_min_executed"].min(), 3),
                    num(g["barrier_min_planned"].min(), 3),
                ]
            )
    rows.sort(key=lambda row: row[:4])
    columns = [*SECTION_COLUMNS, "task", "algo", "normalized score", "episode cost", "budget"]
    columns += ["% episodes over budget", "min b (executed)", "min b (planned)"]
    note = (
        "Episode cost: cumulative (discounted where the task says) cost per episode, mean over "
        "seeds of each run's mean. Min b: the smallest barrier value over every executed / "
        "planned state of every seed (b >= 0 satisfies the state constraint); a dash where the "
        "task has no state constraint or the agent does not plan."
    )
    return Table("safety", "Safe tasks: return and constraint satisfaction", columns, rows, note)


def online_table(online: pd.DataFrame) -> Table:
    """Offline to online: the pre-trained and the fine-tuned score and the gain, per (data,
    budget, task, algo, configuration), with the environment steps spent."""
    rows = []
    if len(online):
        for _, g in online.groupby([*stats.GROUP_KEYS, "env_steps", "n_envs"], sort=True):
            r, n = g.iloc[0], len(g)
            gain = g["final_score"] - g["pretrained_score"]
            rows.append(
                [
                    *section_cells(r),
                    r["task"],
                    r["entry"],
                    mean_std_cell(g["pretrained_score"].mean(), g["pretrained_score"].std(), n),
                    mean_std_cell(g["final_score"].mean(), g["final_score"].std(), n),
                    mean_std_cell(gain.mean(), gain.std(), n),
                    str(int(r["env_steps"])),
                    str(int(r["n_envs"])),
                ]
            )
    rows.sort(key=lambda row: row[:4])
    columns = [*SECTION_COLUMNS, "task", "algo", "pre-trained", "fine-tuned", "gain"]
    columns += ["env steps", "envs"]
    note = (
        "Online agents: pre-trained = the final evaluation of the offline phase, fine-tuned = "
        "the final evaluation after the online phase (the run's final score), on the same start "
        "states; gain = fine-tuned - pre-trained per seed. Env steps: collected online per run."
    )
    return Table("offline_to_online", "Offline to online: fine-tuning gain", columns, rows, note)


def compute_table(runs: pd.DataFrame) -> Table:
    """What each cell cost: wall-clock per run and acting speed, per (data, budget, task, algo,
    configuration), beside its final score."""
    rows = []
    for _, g in runs.groupby([*stats.GROUP_KEYS], sort=True):
        r, n = g.iloc[0], len(g)
        wall = pd.to_numeric(g["wall_seconds"]).astype(float) / 60
        decisions = pd.to_numeric(g["decisions_per_s"]).astype(float)
        score = mean_std_cell(g["final_score"].mean(), g["final_score"].std(), n)
        rows.append(
            [
                *section_cells(r),
                r["task"],
                r["entry"],
                score,
                num(wall.mean()),
                num(decisions.mean()),
            ]
        )
    rows.sort(key=lambda row: row[:4])
    columns = [*SECTION_COLUMNS, "task", "algo", "final score", "wall-clock (min)", "decisions/s"]
    note = (
        "Wall-clock: the run's last process, from loading its data to the end of its final "
        "evaluation, mean over seeds; decisions/s: environment decisions per second of acting in "
        "the final evaluation (all envs of a step count). Measured on whatever machine ran each "
        "record: compare within one sweep."
    )
    return Table("compute", "Compute: what each score cost", columns, rows, note)


def failure_table(
    df: pd.DataFrame, problems: list[str], unrecorded: list[dict], results: Path
) -> Table:
    """Failed, incomplete and score-less runs, unreadable records and jobs without a record."""
    rows = []
    for _, r in df.sort_values(["source", "budget", "task", "algo", "seed", "path"]).iterrows():
        reason = unscored_reason(r)
        if reason is not None:
            run = [r["task"], r["algo"], str(r["seed"]), r["status"], reason, r["run_id"]]
            rows.append([*section_cells(r), *run])
    for job in unrecorded:
        reason = f"{first_line(job['reason'])} (log: {job['log']})"
        run = [str(job["task"]), str(job["algo"]), str(job["seed"]), f"{job['outcome']}, no record"]
        rows.append([MISSING, MISSING, *run, reason, job["run_id"]])
    for problem in problems:
        path, _, reason = problem.partition(": ")
        rows.append([MISSING] * 5 + ["corrupt", first_line(reason), relative_to(path, results)])
    columns = [*SECTION_COLUMNS, "task", "algo", "seed", "status", "reason", "run / record"]
    note = "Runs listed here enter no statistic; rerunning resumes incomplete runs from their checkpoint."
    return Table("failures", "Failed and incomplete runs", columns, rows, note)
