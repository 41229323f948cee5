"""Aggregation against hand-computed answers: mean, std, IQM, stratified bootstrap, profiles."""

import numpy as np
import pandas as pd
import pytest

from bench import stats


def runs_frame(rows: list[tuple]) -> pd.DataFrame:
    """Completed runs: (source, budget, task, algo, seed, final, best)."""
    cols = ["source", "budget", "task", "algo", "seed", "final_score", "best_score"]
    df = pd.DataFrame(rows, columns=cols)
    df["train_steps"] = 1000
    df["config_hash"] = "h" + df["task"] + df["algo"]
    return df


def test_iqm_of_known_arrays():
    assert stats.iqm(np.arange(8.0)) == pytest.approx(3.5)  # middle four: 2, 3, 4, 5
    assert stats.iqm([-50, -20, 1, 2, 3, 4, 100, 1000]) == pytest.approx(2.5)  # outliers trimmed
    assert stats.iqm([7.0]) == pytest.approx(7.0)


def test_summarize_mean_std_and_seed_count():
    df = runs_frame(
        [
            ("d4rl", "standard", "hopper", "iql", s, v, v + 5)
            for s, v in enumerate([10.0, 20.0, 30.0])
        ]
    )
    row = stats.summarize(df).iloc[0]
    assert (row["n"], row["seeds"]) == (3, "0,1,2")
    assert row["final_mean"] == pytest.approx(20.0)
    assert row["final_std"] == pytest.approx(10.0)  # sample std, ddof=1
    assert row["best_mean"] == pytest.approx(25.0)
    assert row["final_iqm_lo"] <= row["final_iqm"] <= row["final_iqm_hi"]


def test_one_seed_has_no_std_and_a_point_interval():
    row = stats.summarize(
        runs_frame([("d4rl", "standard", "hopper", "iql", 0, 42.0, np.nan)])
    ).iloc[0]
    assert np.isnan(row["final_std"])
    assert row["final_iqm_lo"] == row["final_iqm_hi"] == pytest.approx(42.0)
    assert row["best_n"] == 0 and np.isnan(row["best_mean"])


def test_sources_and_budgets_are_separate_groups():
    df = runs_frame(
        [
            ("d4rl", "standard", "hopper", "iql", 0, 10.0, 10.0),
            ("forged", "standard", "hopper", "iql", 0, 90.0, 90.0),
            ("d4rl", "quick", "hopper", "iql", 0, 50.0, 50.0),
        ]
    )
    summary = stats.summarize(df)
    assert len(summary) == 3
    assert sorted(summary["final_mean"]) == [10.0, 50.0, 90.0]
    assert len(stats.aggregate(df)) == 3


def test_bootstrap_resamples_within_each_task():
    """Stratified: every resample keeps each task's run count, so the mean of two far-apart
    tasks with equal runs stays between their means' midpoints, never near either task."""
    per_task = [np.array([0.0, 1.0, 0.0, 1.0]), np.array([100.0, 101.0, 100.0, 101.0])]
    point, lo, hi = stats.interval_estimate(per_task, statistic=lambda x: x.mean(axis=1), reps=2000)
    assert point == pytest.approx(50.5)
    assert 50.0 <= lo <= point <= hi <= 51.0


def test_bootstrap_is_reproducible():
    per_task = [np.random.default_rng(1).normal(size=7)]
    assert stats.interval_estimate(per_task, reps=500) == stats.interval_estimate(
        per_task, reps=500
    )


def test_iqm_interval_covers_the_true_mean_about_95_percent():
    """Symmetric scores: the IQM equals the mean (50). Over 200 synthetic experiments of three
    tasks x ten seeds, the 95% interval must contain it close to 95% of the time."""
    rng = np.random.default_rng(123)
    hits = 0
    trials = 200
    for t in range(trials):
        per_task = [rng.normal(50.0, 10.0, size=10) for _ in range(3)]
        _, lo, hi = stats.interval_estimate(per_task, reps=1000, seed=t)
        hits += lo <= 50.0 <= hi
    assert 0.88 <= hits / trials <= 0.99


def test_aggregate_iqm_pools_tasks():
    rows = [
        ("d4rl", "standard", task, "iql", s, v, v)
        for task, vals in (("a", [0, 1, 2, 3]), ("b", [4, 5, 6, 7]))
        for s, v in enumerate(vals)
    ]
    agg = stats.aggregate(runs_frame(rows)).iloc[0]
    assert (agg["tasks"], agg["runs"]) == (2, 8)
    assert agg["iqm"] == pytest.approx(3.5)
    assert agg["iqm_lo"] <= 3.5 <= agg["iqm_hi"]
    assert not agg["mixed_configs"]


def test_performance_profile_fraction_above_tau():
    taus = np.array([-1.0, 0.0, 2.5, 4.0])
    profile = stats.score_distribution([np.arange(5.0)], taus)
    np.testing.assert_allclose(profile, [1.0, 0.8, 0.4, 0.0])
    # Tasks weigh equally whatever their seed counts.
    two = stats.score_distribution([np.array([1.0]), np.array([0.0, 0.0, 0.0])], np.array([0.5]))
    np.testing.assert_allclose(two, [0.5])
    prof, lo, hi = stats.performance_profile([np.arange(5.0)], taus, reps=500)
    np.testing.assert_allclose(prof, [1.0, 0.8, 0.4, 0.0])
    assert np.all(lo <= prof) and np.all(prof <= hi)


def test_profiles_frame_has_one_curve_per_algo():
    rows = [
        ("d4rl", "standard", "a", algo, s, float(s), float(s))
        for algo in ("bc", "iql")
        for s in range(3)
    ]
    prof = stats.profiles(runs_frame(rows), np.linspace(0, 2, 5))
    assert len(prof) == 10
    assert set(prof["algo"]) == {"bc", "iql"}
