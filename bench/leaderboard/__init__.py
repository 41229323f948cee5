"""``python -m bench.leaderboard [--results results/] [--out reports/]``: records -> tables, plots.

Reads every run record under ``--results`` and writes to ``--out``:

- ``leaderboard.md`` / ``leaderboard.tex``: the final normalized score (the primary score) per
  task and algorithm as mean ± std over seeds with the seed count; the aggregate interquartile
  mean with 95% stratified-bootstrap CIs; our score beside the papers' (with their sources); the
  best score during training in its own table, labelled optimistic; on safe tasks, return and
  constraint satisfaction side by side (cost, budget, share of episodes over it, smallest barrier
  value over executed and planned states); for online agents, the pre-trained and fine-tuned
  scores, the gain and the environment steps spent; what each cell cost (wall-clock per run,
  decisions/s); failed and incomplete runs,
  corrupt records and sweep jobs that died without a record, each with its reason.
- CSV: ``final_scores.csv``, ``best_scores.csv``, ``aggregate.csv``, ``paper_comparison.csv``,
  ``safety.csv``, ``offline_to_online.csv``, ``compute.csv``, ``failures.csv`` (the tables above), ``scores.csv`` (every statistic, numeric) and
  ``profiles.csv`` (performance profiles).
- ``plots/<data>-<budget>-<steps>/``: learning curves (only from runs that evaluated during
  training), per-task point plots, score against wall-clock per task, aggregate IQM intervals and
  performance profiles (PNG).

Every row carries its data source and budget, and no cell, aggregate or plot combines runs of
different sources or budgets. Outputs are byte-stable for the same records: sorted rows, fixed
float formats, fixed bootstrap seeds, no timestamps (PNG metadata included).

Each step is a module: :mod:`~bench.leaderboard.runs` (records -> one labelled row per run),
:mod:`~bench.leaderboard.tables` (runs -> text cells), :mod:`~bench.leaderboard.rendering`
(tables -> Markdown, LaTeX, CSV) and :mod:`~bench.leaderboard.plots` (runs -> PNG); :func:`build`
composes them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import stats
from bench.leaderboard.plots import clear_old_plots, write_plots
from bench.leaderboard.rendering import csv_text, document, latex
from bench.leaderboard.runs import (
    PAPER_SCORES,
    flat_configs,
    label_entries,
    load_paper_scores,
    online_runs,
    prepare,
    profile_taus,
    safety_runs,
    scored_runs,
)
from bench.leaderboard.tables import (
    aggregate_table,
    compute_table,
    failure_table,
    online_table,
    paper_table,
    safety_table,
    score_table,
)
from bench.records import load_records
from bench.sweep import unrecorded_jobs

__all__ = ["build", "main"]


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
        online_table(online_runs(records, runs)),
        compute_table(runs),
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
    """The command line: build the leaderboard and print its Markdown."""
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
