"""Runs -> figures: up to six PNGs per (data, budget) section.

``plots/<data>-<budget>-<steps>/``: learning curves (drawn only from runs that evaluated during
training: a lone final point is no curve), online curves against environment steps (runs with an
online phase), final score per task, final score against wall-clock per task, the aggregate IQM
with its interval, and performance profiles. A run with an online phase ends its training-step
curve at its pre-trained evaluation: its final score is the fine-tuned one, a point of the online
curve, not of the offline one. Every bootstrap is seeded and the PNGs carry no date or
software metadata, so the same records give the same bytes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bench import stats
from bench.leaderboard.runs import algo_order, sort_by_algo
from bench.leaderboard.tables import budget_label

PLOT_FILES = (
    "learning_curves.png",
    "online_curves.png",
    "per_task.png",
    "score_vs_wallclock.png",
    "aggregate_iqm.png",
    "performance_profile.png",
)


def section_slug(key: tuple) -> str:
    """The folder name of a section: its keys joined, unsafe characters replaced."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(k) for k in key))


def in_section(df: pd.DataFrame, key: tuple) -> pd.DataFrame:
    """The rows of ``df`` in the section ``key`` (values of :data:`bench.stats.SECTION_KEYS`)."""
    keys = list(stats.SECTION_KEYS)
    return df[(df[keys] == pd.Series(key, index=keys)).all(axis=1)]


def curve_frame(records: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Periodic evaluations plus the final one, one row per (run, step), of the runs that
    evaluated during training."""
    recs = dict(zip(records["path"], records["record"], strict=True))
    rows = []
    for _, r in runs.iterrows():
        rec = recs[r["path"]]
        points = [(p["step"], p.get("normalized_mean")) for p in rec.get("curve") or []]
        if not points:
            continue
        step = (rec.get("final") or {}).get("step", r["train_steps"])
        points.append((step, offline_end_score(rec, r["final_score"])))
        rows += [{**r.to_dict(), "step": s, "normalized": v} for s, v in points if v is not None]
    return pd.DataFrame(rows)


def offline_end_score(record: dict, final_score: float) -> float | None:
    """The score that ends a run's training-step curve: the pre-trained evaluation where the run
    went on online (its final score is the fine-tuned one), else its final score."""
    online = record.get("online")
    return online["pretrained"].get("normalized_mean") if online else final_score


def online_curve_frame(records: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The online phases' evaluations, one row per (run, env steps): from the pre-trained
    evaluation at 0 env steps to the fine-tuned final one."""
    recs = dict(zip(records["path"], records["record"], strict=True))
    rows = []
    for _, r in runs.iterrows():
        online = recs[r["path"]].get("online") or {}
        rows += [
            {**r.to_dict(), "env_steps": p["env_steps"], "normalized": p["normalized_mean"]}
            for p in online.get("curve") or []
            if p.get("normalized_mean") is not None
        ]
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
    """The figures of every (data, budget) section; returns their paths relative to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    curves = curve_frame(records, runs)
    online = online_curve_frame(records, runs)
    written = []
    for key, section in runs.groupby(list(stats.SECTION_KEYS), sort=True):
        folder = out / "plots" / section_slug(key)
        title = f"data: {key[0]} · budget: {budget_label(key[1], int(key[2]))}"
        entries = algo_order(section["entry"])
        palette = dict(zip(entries, sns.color_palette(n_colors=len(entries)), strict=True))
        drawn = []
        section_curves = in_section(curves, key) if len(curves) else curves
        if len(section_curves):
            plot_curves(sns, section_curves, entries, palette, title, folder / PLOT_FILES[0])
            drawn.append(PLOT_FILES[0])
        section_online = in_section(online, key) if len(online) else online
        if len(section_online):
            plot_curves(
                sns, section_online, entries, palette, title, folder / PLOT_FILES[1], ONLINE_AXIS
            )
            drawn.append(PLOT_FILES[1])
        plot_per_task(sns, section, entries, palette, title, folder / PLOT_FILES[2])
        drawn.append(PLOT_FILES[2])
        timed = section[pd.to_numeric(section["wall_seconds"]).notna()]
        if len(timed):
            plot_wallclock(sns, timed, entries, palette, title, folder / PLOT_FILES[3])
            drawn.append(PLOT_FILES[3])
        plot_aggregate(in_section(agg, key), palette, title, folder / PLOT_FILES[4])
        plot_profiles(in_section(prof, key), palette, title, folder / PLOT_FILES[5])
        drawn += PLOT_FILES[4:]
        written += [str((folder / f).relative_to(out)) for f in drawn]
    return written


def clear_old_plots(out: Path) -> None:
    """Remove figures of sections that no longer exist (only files this module writes)."""
    for name in PLOT_FILES:
        for path in (out / "plots").glob(f"*/{name}"):
            path.unlink()


def facet_wrap(n_tasks: int) -> int:
    """Facets per row: at most three tasks side by side."""
    return min(3, n_tasks)


# (column, axis label, figure name) of the two kinds of curve
TRAINING_AXIS = ("step", "training step", "Learning curves")
ONLINE_AXIS = ("env_steps", "online environment steps", "Online fine-tuning")


def plot_curves(
    sns,
    curves: pd.DataFrame,
    entries: list[str],
    palette: dict,
    title: str,
    path: Path,
    axis: tuple[str, str, str] = TRAINING_AXIS,
) -> None:
    """Normalized score over training steps (or ``axis``'s x): mean over seeds with a 95%
    bootstrap band."""
    x, label, name = axis
    g = sns.relplot(
        data=curves,
        kind="line",
        x=x,
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
    g.set_axis_labels(label, "normalized score")
    g.legend.set_title("algorithm")
    g.figure.suptitle(f"{name} ({title})", y=1.02)
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


def plot_wallclock(
    sns, runs: pd.DataFrame, entries: list[str], palette: dict, title: str, path: Path
) -> None:
    """Final score against the run's wall-clock minutes, one point per run, one panel per task."""
    data = runs.assign(minutes=pd.to_numeric(runs["wall_seconds"]).astype(float) / 60)
    g = sns.relplot(
        data=data,
        kind="scatter",
        x="minutes",
        y="final_score",
        hue="entry",
        hue_order=entries,
        palette=palette,
        col="task",
        col_wrap=facet_wrap(data["task"].nunique()),
        facet_kws={"sharey": False, "sharex": False},
        height=3,
        aspect=1.3,
    )
    g.set_axis_labels("wall-clock per run (min)", "final normalized score")
    g.legend.set_title("algorithm")
    g.figure.suptitle(f"Score against wall-clock ({title})", y=1.02)
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
