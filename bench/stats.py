"""Aggregate scores across seeds and tasks: mean, std, IQM with stratified-bootstrap CIs, profiles.

The interval method is rliable's (Agarwal et al. 2021): resample runs with replacement within each
task (the strata), recompute the statistic, and take the 2.5th and 97.5th percentiles. It is
implemented here because ``rliable.library`` does not import in this environment: it builds on
``arch.bootstrap``, and arch 7.2 fails to import under pandas 3 (``deprecate_kwarg`` changed),
while arch 8 rejects the ``random_state=None`` that rliable passes. The statistic itself is
rliable's ``metrics.aggregate_iqm`` (a 25% trimmed mean) and the interval is rliable's percentile
interval, so with equal seeds per task the estimator is rliable's (up to the random stream).
Tasks with fewer seeds are resampled within their own stratum.

Every bootstrap uses a fixed seed, so the same records always give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from rliable.metrics import aggregate_iqm
from scipy.stats import trim_mean

CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
INTERVAL_REPS = 50_000  # rliable's default for interval estimates
PROFILE_REPS = 2_000  # rliable's default for performance profiles
# Runs in different sections are never aggregated together: another dataset or budget is
# another experiment.
SECTION_KEYS = ("source", "budget", "train_steps")
# Seeds of one configuration on one task; the config hash keeps hyperparameter variants apart.
GROUP_KEYS = (*SECTION_KEYS, "task", "algo", "config_hash")
AGGREGATE_KEYS = (*SECTION_KEYS, "algo")

Statistic = Callable[[np.ndarray], np.ndarray]


def iqm(scores: np.ndarray | Sequence[float]) -> float:
    """Interquartile mean of all scores (rliable's ``aggregate_iqm``)."""
    return float(aggregate_iqm(np.asarray(scores, dtype=np.float64)))


def iqm_rows(resampled: np.ndarray) -> np.ndarray:
    """IQM of each row of ``[reps, runs]``: the vectorized statistic the bootstrap needs."""
    return trim_mean(resampled, proportiontocut=0.25, axis=1)


def stratified_resamples(
    per_task: Sequence[np.ndarray], reps: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """For each task, ``reps`` resamples of its runs with replacement: ``[reps, n_task]``."""
    out = []
    for scores in per_task:
        scores = np.asarray(scores, dtype=np.float64)
        out.append(scores[rng.integers(0, len(scores), size=(reps, len(scores)))])
    return out


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> np.ndarray:
    """The percentile bootstrap interval along axis 0: ``[2, ...]`` as (lower, upper)."""
    tail = 100.0 * (1.0 - confidence) / 2.0
    return np.percentile(samples, [tail, 100.0 - tail], axis=0)


def interval_estimate(
    per_task: Sequence[np.ndarray],
    statistic: Statistic = iqm_rows,
    reps: int = INTERVAL_REPS,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """Point estimate and stratified-bootstrap CI of ``statistic`` over all runs of all tasks.

    ``per_task`` holds one array of run scores per task; ``statistic`` maps ``[reps, runs]`` to
    ``[reps]`` (runs of all tasks side by side).
    """
    per_task = [np.asarray(s, dtype=np.float64) for s in per_task if len(s)]
    if not per_task:
        raise ValueError("no scores to estimate from")
    point = float(statistic(np.concatenate(per_task)[None, :])[0])
    rng = np.random.default_rng(seed)
    samples = statistic(np.concatenate(stratified_resamples(per_task, reps, rng), axis=1))
    lo, hi = percentile_interval(samples, confidence)
    return point, float(lo), float(hi)


def score_distribution(per_task: Sequence[np.ndarray], taus: np.ndarray) -> np.ndarray:
    """Fraction of runs scoring above each threshold, tasks weighted equally: ``[len(taus)]``.

    With equal seeds per task this is rliable's run-score distribution.
    """
    fractions = [(np.asarray(s)[:, None] > taus[None, :]).mean(axis=0) for s in per_task]
    return np.mean(fractions, axis=0)


def performance_profile(
    per_task: Sequence[np.ndarray],
    taus: np.ndarray,
    reps: int = PROFILE_REPS,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The score distribution at ``taus`` and its stratified-bootstrap CI (profile, lo, hi)."""
    per_task = [np.asarray(s, dtype=np.float64) for s in per_task if len(s)]
    rng = np.random.default_rng(seed)
    resampled = stratified_resamples(per_task, reps, rng)
    samples = np.mean([(r[:, :, None] > taus).mean(axis=1) for r in resampled], axis=0)
    lo, hi = percentile_interval(samples, confidence)
    return score_distribution(per_task, taus), lo, hi


def seed_stats(scores: np.ndarray, prefix: str) -> dict[str, float]:
    """Mean, sample std (ddof=1; NaN for one seed), IQM and its bootstrap CI over seeds."""
    scores = np.asarray(scores, dtype=np.float64)
    point, lo, hi = interval_estimate([scores])
    std = float(np.std(scores, ddof=1)) if len(scores) > 1 else float("nan")
    return {
        f"{prefix}_mean": float(np.mean(scores)),
        f"{prefix}_std": std,
        f"{prefix}_iqm": point,
        f"{prefix}_iqm_lo": lo,
        f"{prefix}_iqm_hi": hi,
    }


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (section, task, algo, config): seed count, seeds, final and best statistics.

    ``runs`` holds completed runs with ``final_score`` (the primary score) and ``best_score``
    (best periodic evaluation, optimistic; may be missing).
    """
    rows = []
    for key, group in runs.groupby(list(GROUP_KEYS), sort=True, dropna=False):
        group = group.sort_values("seed")
        row = dict(zip(GROUP_KEYS, key, strict=True))
        row["n"] = len(group)
        row["seeds"] = ",".join(str(s) for s in group["seed"])
        row.update(seed_stats(group["final_score"].to_numpy(float), "final"))
        best = group["best_score"].dropna().to_numpy(float)
        row.update(best_stats(best))
        rows.append(row)
    return pd.DataFrame(rows, columns=summary_columns())


def best_stats(best: np.ndarray) -> dict[str, float]:
    """Best-during-training statistics; NaN where no run had a periodic evaluation."""
    if len(best) == 0:
        return {c: float("nan") for c in summary_columns() if c.startswith("best_")} | {"best_n": 0}
    return {**seed_stats(best, "best"), "best_n": len(best)}


def summary_columns() -> list[str]:
    stats = ["mean", "std", "iqm", "iqm_lo", "iqm_hi"]
    return [
        *GROUP_KEYS,
        "n",
        "seeds",
        *(f"final_{s}" for s in stats),
        *(f"best_{s}" for s in stats),
        "best_n",
    ]


def per_task_scores(runs: pd.DataFrame, score: str) -> list[np.ndarray]:
    """The strata: one array of run scores per task, in task order."""
    return [g[score].to_numpy(float) for _, g in runs.groupby("task", sort=True)]


def aggregate(runs: pd.DataFrame, score: str = "final_score") -> pd.DataFrame:
    """IQM across all tasks and seeds per (section, algo), with its 95% stratified-bootstrap CI.

    ``mixed_configs`` flags an algorithm that ran more than one configuration on some task.
    """
    rows = []
    for key, group in runs.dropna(subset=[score]).groupby(
        list(AGGREGATE_KEYS), sort=True, dropna=False
    ):
        point, lo, hi = interval_estimate(per_task_scores(group, score))
        configs = group.groupby("task")["config_hash"].nunique()
        rows.append(
            {
                **dict(zip(AGGREGATE_KEYS, key, strict=True)),
                "tasks": group["task"].nunique(),
                "runs": len(group),
                "iqm": point,
                "iqm_lo": lo,
                "iqm_hi": hi,
                "mixed_configs": bool((configs > 1).any()),
            }
        )
    columns = [*AGGREGATE_KEYS, "tasks", "runs", "iqm", "iqm_lo", "iqm_hi", "mixed_configs"]
    return pd.DataFrame(rows, columns=columns)


def profiles(runs: pd.DataFrame, taus: np.ndarray, score: str = "final_score") -> pd.DataFrame:
    """Performance profiles per (section, algo): fraction of runs above each ``tau``, with CIs."""
    frames = []
    for key, group in runs.dropna(subset=[score]).groupby(
        list(AGGREGATE_KEYS), sort=True, dropna=False
    ):
        profile, lo, hi = performance_profile(per_task_scores(group, score), taus)
        keys = dict(zip(AGGREGATE_KEYS, key, strict=True))
        frames.append(pd.DataFrame({**keys, "tau": taus, "fraction": profile, "lo": lo, "hi": hi}))
    columns = [*AGGREGATE_KEYS, "tau", "fraction", "lo", "hi"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
