"""Records -> runs: the DataFrames every table and plot reads.

:func:`prepare` turns the loaded records (:func:`bench.records.load_records`) into one row per
run with every grouping key filled, :func:`scored_runs` keeps the runs that enter statistics, and
:func:`label_entries` names each configuration of an algorithm on a task. The published scores and
the safety metrics of safe tasks are read here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

import algorithms
from bench import stats

PAPER_SCORES = Path(__file__).resolve().parent.parent / "reference" / "paper_scores.csv"
UNKNOWN = "unknown"
# Config keys that never tell two configurations apart (and the resolved copy of the algo keys).
LABEL_IGNORED = ("seed", "results_dir", "device", "force", "algo_resolved")
MAX_LABEL_KEYS = 3
SAFETY_KEYS = ("cost_mean", "over_budget_rate", "barrier_min_executed", "barrier_min_planned")


def prepare(records: pd.DataFrame) -> pd.DataFrame:
    """Fill missing grouping keys so no run silently drops out of a ``groupby``."""
    df = records.drop(columns=["record"]).copy()
    for key in ("source", "budget", "config_hash"):
        df[key] = df[key].fillna(UNKNOWN).astype(str)
    # Augmented data is another data source: ``forged+diffstitch`` never shares a row with ``forged``.
    augment = [(rec.get("augment") or {}).get("name") for rec in records["record"]]
    if any(augment):
        pairs = zip(df["source"], augment, strict=True)
        df["source"] = [s if a is None else f"{s}+{a}" for s, a in pairs]
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


def sort_by_algo(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``df`` sorted by ``keys``, then by algorithm in registry order."""
    rank = {a: i for i, a in enumerate(algo_order(df["algo"]))}
    return (
        df.assign(_rank=df["algo"].map(rank))
        .sort_values([*keys, "_rank"], kind="stable")
        .drop(columns="_rank")
    )


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


def safety_runs(records: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Scored runs of safe tasks with their final safety metrics (one row per run)."""
    by_path = {p: rec for p, rec in zip(records["path"], records["record"], strict=True)}
    rows = []
    for _, r in runs.iterrows():
        rec = by_path[r["path"]]
        final = rec.get("final") or {}
        if rec.get("safety") is None or final.get("cost_mean") is None:
            continue
        metrics = {k: final.get(k, np.nan) for k in SAFETY_KEYS}
        metrics = {k: np.nan if v is None else float(v) for k, v in metrics.items()}
        rows.append({**r.to_dict(), **metrics, "cost_budget": rec["safety"]["budget"]})
    return pd.DataFrame(rows)


def online_runs(records: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Scored runs of online agents (records with an ``online`` section, :mod:`bench.online`):
    their pre-trained score and the environment steps and envs they fine-tuned with."""
    by_path = {p: rec for p, rec in zip(records["path"], records["record"], strict=True)}
    rows = []
    for _, r in runs.iterrows():
        online = by_path[r["path"]].get("online")
        if not online:
            continue
        pretrained = float(online["pretrained"]["normalized_mean"])
        steps, envs = int(online["env_steps_done"]), int(online["n_envs"])
        rows.append(
            {**r.to_dict(), "pretrained_score": pretrained, "env_steps": steps, "n_envs": envs}
        )
    return pd.DataFrame(rows)


def profile_taus(runs: pd.DataFrame) -> np.ndarray:
    """101 thresholds spanning 0..100 and every observed final score."""
    lo = min(0.0, float(runs["final_score"].min())) if len(runs) else 0.0
    hi = max(100.0, float(runs["final_score"].max())) if len(runs) else 100.0
    return np.linspace(np.floor(lo), np.ceil(hi), 101)
