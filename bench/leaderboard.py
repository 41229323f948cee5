"""``python -m bench.leaderboard [--results results/] [--out reports/]``: records -> tables, plots.

Reads every run record under ``--results`` and writes to ``--out``:

- ``leaderboard.md`` / ``leaderboard.tex``: the final normalized score (the primary score) per
  task and algorithm as mean ± std over seeds with the seed count; the aggregate interquartile
  mean with 95% stratified-bootstrap CIs; our score beside the papers' (with their sources); the
  best score during training in its own table, labelled optimistic; on safe tasks, return and
  constraint satisfaction side by side (cost, budget, share of episodes over it, smallest barrier
  value over executed and planned states); failed and incomplete runs,
  corrupt records and sweep jobs that died without a record, each with its reason.
- CSV: ``final_scores.csv``, ``best_scores.csv``, ``aggregate.csv``, ``paper_comparison.csv``,
  ``failures.csv`` (the tables above), ``scores.csv`` (every statistic, numeric) and
  ``profiles.csv`` (performance profiles).
- ``plots/<data>-<budget>-<steps>/``: learning curves, per-task point plots, aggregate IQM
  intervals and performance profiles (PNG).

Every row carries its data source and budget, and no cell, aggregate or plot combines runs of
different sources or budgets. Outputs are byte-stable for the same records: sorted rows, fixed
float formats, fixed bootstrap seeds, no timestamps (PNG metadata included).
"""

from __future__ import annotations

import argparse
import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import algorithms
from bench import stats
from bench.records import load_records
from bench.sweep import unrecorded_jobs

PAPER_SCORES = Path(__file__).resolve().parent / "reference" / "paper_scores.csv"
MISSING = "—"
UNKNOWN = "unknown"
PLOT_FILES = ("learning_curves.png", "per_task.png", "aggregate_iqm.png", "performance_profile.png")
SECTION_COLUMNS = ["data", "budget"]


@dataclass(frozen=True)
class Table:
    """A rendered table: cells are final strings, so every output format shows the same text."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


# -- loading ----------------------------------------------------------------------------------


def prepare(records: pd.DataFrame) -> pd.DataFrame:
    """Fill missing grouping keys so no run silently drops out of a ``groupby``."""
    df = records.drop(columns=["record"]).copy()
    for key in ("source", "budget", "config_hash"):
        df[key] = df[key].fillna(UNKNOWN).astype(str)
    df["train_steps"] = pd.to_numeric(df["train_steps"]).fillna(-1).astype(int)
    df["final_score"] = pd.to_numeric(df["final_score"]).astype(float)
    df["best_score"] = pd.to_numeric(df["best_score"]).astype(float)
    df["resumed"] = [rec.get("resumed", 0) for rec in records["record"]]
    df["run_id"] = [
        rec.get("run_id") or path
        for rec, path in zip(records["record"], records["path"], strict=True)
    ]
    return df


def scored_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Completed runs with a finite final score: the only runs that enter any statistic."""
    return df[(df["status"] == "completed") & np.isfinite(df["final_score"])].copy()


def algo_order(names: Iterable[str]) -> list[str]:
    """The registry's order (``algorithms.ALGORITHMS``), then any others alphabetically."""
    names = set(names)
    known = [a for a in algorithms.ALGORITHMS if a in names]
    return known + sorted(names - set(known))


LABEL_IGNORED = ("seed", "results_dir", "device", "force", "algo_resolved")
MAX_LABEL_KEYS = 3


def flat_configs(records: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Each config hash's run config as ``dotted.key -> value`` (seed and paths left out)."""
    out = {}
    for rec in records["record"]:
        config = {k: v for k, v in (rec.get("config") or {}).items() if k not in LABEL_IGNORED}
        flat = pd.json_normalize(config, sep=".").iloc[0] if config else {}
        out[str(rec.get("config_hash"))] = {k: str(v) for k, v in dict(flat).items()}
    return out


def variant_label(hashes: list[str], configs: dict[str, dict[str, str]]) -> dict[str, str]:
    """Per hash, the settings that tell it apart from the others (``method=robust``), or its hash
    when no recorded setting differs."""
    keys = sorted({k for h in hashes for k in configs.get(h, {})})
    differing = [k for k in keys if len({configs.get(h, {}).get(k) for h in hashes}) > 1]
    labels = {}
    for h in hashes:
        parts = [f"{k.removeprefix('algo.')}={configs[h].get(k)}" for k in differing]
        labels[h] = ", ".join(parts[:MAX_LABEL_KEYS]) if parts and h in configs else f"cfg {h}"
    return labels


def label_entries(summary: pd.DataFrame, configs: dict[str, dict[str, str]]) -> pd.DataFrame:
    """Name each row's entry: the algorithm, plus what sets its configuration apart where one
    task has several (``safediffuser (method=robust)``)."""
    summary = summary.copy()
    summary["variant"] = ""
    for _, group in summary.groupby([*stats.SECTION_KEYS, "task", "algo"]):
        hashes = sorted(group["config_hash"].unique())
        if len(hashes) > 1:
            labels = variant_label(hashes, configs)
            summary.loc[group.index, "variant"] = group["config_hash"].map(labels)
    summary["entry"] = np.where(
        summary["variant"] != "",
        summary["algo"] + " (" + summary["variant"] + ")",
        summary["algo"],
    )
    return summary


def load_paper_scores(path: Path = PAPER_SCORES) -> pd.DataFrame:
    """Published normalized scores: ``algo, task, normalized_score, spread, source``."""
    return pd.read_csv(path).sort_values(["task", "algo", "source"], kind="stable")


# -- formatting -------------------------------------------------------------------------------


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
    return f"{budget} ({steps} steps)" if steps >= 0 else budget


def section_cells(row: pd.Series) -> list[str]:
    return [row["source"], budget_label(row["budget"], int(row["train_steps"]))]


def first_line(text: str | None, limit: int = 300) -> str:
    """The first line of a reason (the exception, before any traceback), at most ``limit`` long."""
    lines = text.strip().splitlines() if isinstance(text, str) else []
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


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
    n = int(entry["n"] if prefix == "final" else entry["best_n"])
    if n == 0:
        return MISSING
    cell = mean_std_cell(entry[f"{prefix}_mean"], entry[f"{prefix}_std"], n)
    return f"{cell} [{entry['variant']}]" if entry["variant"] else cell


def aggregate_table(agg: pd.DataFrame) -> Table:
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
    """Our final score beside every published number for the same (task, algo)."""
    paper = paper.rename(columns={"source": "paper_source"})
    joined = summary.merge(paper, on=["task", "algo"], how="inner")
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


SAFETY_KEYS = ("cost_mean", "over_budget_rate", "barrier_min_executed", "barrier_min_planned")


def safety_runs(records: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Scored runs of safe tasks with their final safety metrics (one row per run)."""
    by_path = {p: rec for p, rec in zip(records["path"], records["record"], strict=True)}
    rows = []
    for _, r in runs.iterrows():
        rec = by_path[r["path"]]
        final = rec.get("final") or {}
        if rec.get("safety") is None or "cost_mean" not in final:
            continue
        metrics = {k: final.get(k, np.nan) for k in SAFETY_KEYS}
        metrics = {k: np.nan if v is None else float(v) for k, v in metrics.items()}
        rows.append({**r.to_dict(), **metrics, "cost_budget": rec["safety"]["budget"]})
    return pd.DataFrame(rows)


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


def sort_by_algo(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    rank = {a: i for i, a in enumerate(algo_order(df["algo"]))}
    return (
        df.assign(_rank=df["algo"].map(rank))
        .sort_values([*keys, "_rank"], kind="stable")
        .drop(columns="_rank")
    )


# -- rendering --------------------------------------------------------------------------------


def markdown(table: Table) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|").replace("\n", " ")

    lines = [f"## {table.title}", ""]
    if not table.rows:
        return "\n".join([*lines, "None.", ""])
    lines.append("| " + " | ".join(esc(c) for c in table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", table.note]
    return "\n".join([*lines, ""])


LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "—": "---",
    "…": r"\ldots{}",
}


def latex_escape(text: str) -> str:
    return re.sub(
        "|".join(re.escape(k) for k in LATEX_ESCAPES), lambda m: LATEX_ESCAPES[m.group()], text
    )


def latex(table: Table) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{latex_escape(table.title)}}}"]
    lines.append(r"\begin{tabular}{" + "l" * len(table.columns) + "}")
    lines += [r"\toprule", " & ".join(latex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.note:
        lines.append(r"\par\smallskip{\footnotesize " + latex_escape(table.note) + "}")
    return "\n".join([*lines, r"\end{table}", ""])


def csv_text(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows(table.rows)
    return buf.getvalue()


def document(tables: list[Table], n_records: int, plots: list[str]) -> str:
    head = [
        "# Leaderboard",
        "",
        "Normalized scores (D4RL convention: 0 = random policy, 100 = expert), mean ± sample std "
        "over seeds, n = number of seeds. The final evaluation is the primary score. Rows never "
        f"mix data sources or budgets. Generated by `python -m bench.leaderboard` from {n_records} "
        "run records.",
        "",
    ]
    body = [markdown(t) for t in tables]
    if plots:
        body.append("\n".join(["## Plots", "", *(f"- [{p}]({p})" for p in plots), ""]))
    return "\n".join(head + body)


# -- plots ------------------------------------------------------------------------------------


def section_slug(key: tuple) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(k) for k in key))


def curve_frame(records: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Periodic evaluations plus the final one, one row per (run, step)."""
    recs = dict(zip(records["path"], records["record"], strict=True))
    rows = []
    for _, r in runs.iterrows():
        rec = recs[r["path"]]
        points = [(p["step"], p.get("normalized_mean")) for p in rec.get("curve") or []]
        points.append(((rec.get("final") or {}).get("step", r["train_steps"]), r["final_score"]))
        rows += [{**r.to_dict(), "step": s, "normalized": v} for s, v in points if v is not None]
    return pd.DataFrame(rows)


def save_figure(fig, path: Path) -> None:
    """Write a PNG without date or software metadata, so equal plots are equal files."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def write_plots(
    records: pd.DataFrame, runs: pd.DataFrame, agg: pd.DataFrame, prof: pd.DataFrame, out: Path
) -> list[str]:
    """Four figures per (data, budget) section; returns their paths relative to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    curves = curve_frame(records, runs)
    written = []
    for key, section in runs.groupby(list(stats.SECTION_KEYS), sort=True):
        folder = out / "plots" / section_slug(key)
        title = f"data: {key[0]} · budget: {budget_label(key[1], int(key[2]))}"
        entries = algo_order(section["entry"])
        palette = dict(zip(entries, sns.color_palette(n_colors=len(entries)), strict=True))
        sel = (
            curves[list(stats.SECTION_KEYS)] == pd.Series(key, index=list(stats.SECTION_KEYS))
        ).all(axis=1)
        plot_curves(sns, curves[sel], entries, palette, title, folder / PLOT_FILES[0])
        plot_per_task(sns, section, entries, palette, title, folder / PLOT_FILES[1])
        a = agg[
            (agg[list(stats.SECTION_KEYS)] == pd.Series(key, index=list(stats.SECTION_KEYS))).all(
                axis=1
            )
        ]
        plot_aggregate(a, palette, title, folder / PLOT_FILES[2])
        p = prof[
            (prof[list(stats.SECTION_KEYS)] == pd.Series(key, index=list(stats.SECTION_KEYS))).all(
                axis=1
            )
        ]
        plot_profiles(p, palette, title, folder / PLOT_FILES[3])
        written += [str((folder / f).relative_to(out)) for f in PLOT_FILES]
    return written


def facet_wrap(n_tasks: int) -> int:
    return min(3, n_tasks)


def plot_curves(
    sns, curves: pd.DataFrame, entries: list[str], palette: dict, title: str, path: Path
) -> None:
    """Normalized score over training steps: mean over seeds with a 95% bootstrap band."""
    g = sns.relplot(
        data=curves,
        kind="line",
        x="step",
        y="normalized",
        hue="entry",
        hue_order=entries,
        palette=palette,
        col="task",
        col_wrap=facet_wrap(curves["task"].nunique()),
        errorbar=("ci", 95),
        n_boot=1000,
        seed=stats.BOOTSTRAP_SEED,
        facet_kws={"sharey": False, "sharex": False},
        height=3,
        aspect=1.3,
    )
    g.set_axis_labels("training step", "normalized score")
    g.legend.set_title("algorithm")
    g.figure.suptitle(f"Learning curves ({title})", y=1.02)
    save_figure(g.figure, path)


def plot_per_task(
    sns, runs: pd.DataFrame, entries: list[str], palette: dict, title: str, path: Path
) -> None:
    """Final score per task: mean over seeds with a 95% bootstrap CI, one point per entry."""
    g = sns.catplot(
        data=runs,
        kind="point",
        x="entry",
        y="final_score",
        hue="entry",
        order=entries,
        hue_order=entries,
        palette=palette,
        col="task",
        col_wrap=facet_wrap(runs["task"].nunique()),
        errorbar=("ci", 95),
        n_boot=1000,
        seed=stats.BOOTSTRAP_SEED,
        sharey=False,
        linestyle="none",
        capsize=0.2,
        height=3,
        aspect=1.3,
        legend=False,
    )
    g.set_axis_labels("", "final normalized score")
    g.tick_params(axis="x", rotation=30)
    g.figure.suptitle(f"Final score per task ({title})", y=1.02)
    save_figure(g.figure, path)


def plot_aggregate(agg: pd.DataFrame, palette: dict, title: str, path: Path) -> None:
    """IQM across tasks and seeds per algorithm with its stratified-bootstrap 95% CI."""
    import matplotlib.pyplot as plt

    agg = sort_by_algo(agg, []).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.45 * len(agg)))
    for i, a in agg.iterrows():
        err = [[a["iqm"] - a["iqm_lo"]], [a["iqm_hi"] - a["iqm"]]]
        ax.errorbar(a["iqm"], i, xerr=err, fmt="o", capsize=4, color=palette.get(a["algo"], "C0"))
    ax.set_yticks(range(len(agg)), labels=list(agg["algo"]))
    ax.invert_yaxis()
    ax.set_xlabel("IQM of final normalized score (95% stratified-bootstrap CI)")
    ax.set_title(f"Aggregate IQM ({title})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def plot_profiles(prof: pd.DataFrame, palette: dict, title: str, path: Path) -> None:
    """Fraction of runs with final score above tau, with 95% stratified-bootstrap bands."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for algo in algo_order(prof["algo"]):
        p = prof[prof["algo"] == algo]
        color = palette.get(algo)
        ax.plot(p["tau"], p["fraction"], label=algo, color=color)
        ax.fill_between(p["tau"], p["lo"], p["hi"], alpha=0.2, color=color)
    ax.set_xlabel(r"normalized score $\tau$")
    ax.set_ylabel(r"fraction of runs with score > $\tau$")
    ax.set_title(f"Performance profile ({title})", fontsize=9)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def profile_taus(runs: pd.DataFrame) -> np.ndarray:
    """101 thresholds spanning 0..100 and every observed final score."""
    lo = min(0.0, float(runs["final_score"].min())) if len(runs) else 0.0
    hi = max(100.0, float(runs["final_score"].max())) if len(runs) else 100.0
    return np.linspace(np.floor(lo), np.ceil(hi), 101)


def clear_old_plots(out: Path) -> None:
    """Remove figures of sections that no longer exist (only files this module writes)."""
    for name in PLOT_FILES:
        for path in (out / "plots").glob(f"*/{name}"):
            path.unlink()


# -- entry point ------------------------------------------------------------------------------


def build(results: Path, out: Path, plots: bool = True, paper_path: Path = PAPER_SCORES) -> str:
    """Write every table (and plot) for the records under ``results``; returns the Markdown."""
    records, problems = load_records(results)
    df = prepare(records)
    runs = scored_runs(df)
    summary = label_entries(stats.summarize(runs), flat_configs(records))
    runs = runs.merge(summary[[*stats.GROUP_KEYS, "entry"]], on=list(stats.GROUP_KEYS), how="left")
    agg = stats.aggregate(runs)
    prof = stats.profiles(runs, profile_taus(runs))
    tables = [
        score_table(
            summary,
            "final",
            "final_scores",
            "Final normalized score (primary)",
            "Final evaluation after the full budget. Mean ± sample std over seeds (n = seeds).",
        ),
        aggregate_table(agg),
        paper_table(summary, load_paper_scores(paper_path)),
        score_table(
            summary,
            "best",
            "best_scores",
            "Best during training (optimistic)",
            "OPTIMISTIC: the best periodic evaluation of each run, chosen on the evaluation "
            "episodes themselves; not a fair score. Report the final score.",
        ),
        safety_table(safety_runs(records, runs)),
        failure_table(df, problems, unrecorded_jobs(results), results),
    ]
    out.mkdir(parents=True, exist_ok=True)
    clear_old_plots(out)
    written = write_plots(records, runs, agg, prof, out) if plots and len(runs) else []
    text = document(tables, len(df), written)
    (out / "leaderboard.md").write_text(text)
    (out / "leaderboard.tex").write_text("\n".join(latex(t) for t in tables))
    for table in tables:
        (out / f"{table.name}.csv").write_text(csv_text(table))
    summary.drop(columns=["entry", "variant"]).to_csv(
        out / "scores.csv", index=False, float_format="%.4f", lineterminator="\n"
    )
    prof.to_csv(out / "profiles.csv", index=False, float_format="%.4f", lineterminator="\n")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.leaderboard", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--results", type=Path, default=Path("results"), help="run records (default: results/)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("reports"), help="tables and plots (default: reports/)"
    )
    parser.add_argument("--no-plots", action="store_true", help="write the tables only")
    args = parser.parse_args(argv)
    print(build(args.results, args.out, plots=not args.no_plots))


if __name__ == "__main__":
    main()
