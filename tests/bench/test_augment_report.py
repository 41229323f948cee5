"""``bench.augment_report``: the acceptance table and the return plot, from records naming
augmented files written in the stage's own layout (:func:`bench.augment.merged_arrays`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bench import augment_report
from bench.augment import merged_arrays
from tasks.hdf5 import write_d4rl_hdf5


def episode(n: int, reward: float, obs_dim: int = 3) -> dict[str, np.ndarray]:
    """``n`` transitions of constant ``reward``, the last one a timeout."""
    timeouts = np.zeros(n, dtype=bool)
    timeouts[-1] = True
    return {
        "observations": np.zeros((n, obs_dim), np.float32),
        "actions": np.zeros((n, 1), np.float32),
        "rewards": np.full(n, reward, np.float32),
        "next_observations": np.zeros((n, obs_dim), np.float32),
        "terminals": np.zeros(n, dtype=bool),
        "timeouts": timeouts,
    }


def concat(parts: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def stitch(n: int, backed: float, source: float) -> dict[str, np.ndarray]:
    out = episode(n, 1.0)
    out["backed_up_return"] = np.full(n, backed, np.float32)
    out["source_return"] = np.full(n, source, np.float32)
    return out


def write_case(tmp_path, name: str, added: dict, generated: int, task: str = "hopper-medium-v2"):
    """An augmented file of 30 original transitions plus ``added``, and a record naming it."""
    original = concat([episode(10, 0.5), episode(20, 1.0)])
    path = tmp_path / "data" / f"{name}.hdf5"
    attrs = {
        "augment": name,
        "augment_budget": 0.5,
        "augment_config": {"discount": 0.99},
        "source": {"n_transitions": 30},
        "generated": generated,
        "accepted": len(added["rewards"]),
        "statistics": {"attempts": {"deviated": 3, "no_target": 1}, "rounds": 2},
    }
    write_d4rl_hdf5(path, merged_arrays(original, added), attrs)
    run = tmp_path / "results" / task / name / "s0"
    run.mkdir(parents=True)
    record = {"task": task, "augment": {"name": name, "path": str(path)}}
    (run / "record.json").write_text(json.dumps(record))
    return path


def test_acceptance_and_stitch_returns_come_from_the_files(tmp_path):
    stitches = concat([stitch(4, backed=50.0, source=10.0), stitch(6, backed=60.0, source=20.0)])
    path = write_case(tmp_path, "diffstitch", stitches, generated=40)
    synthetic = concat([episode(5, -2.0)])
    write_case(tmp_path, "synther", synthetic, generated=5)
    out = tmp_path / "report"
    assert augment_report.main(["--results", str(tmp_path / "results"), "--out", str(out)]) == 0

    table = pd.read_csv(out / "augmentation.csv").set_index("augment")
    assert table.loc["diffstitch", "accepted"] == 10
    assert table.loc["diffstitch", "acceptance_rate"] == 10 / 40
    assert table.loc["diffstitch", "added_share"] == 10 / 40
    assert table.loc["diffstitch", "attempts.deviated"] == 3
    assert table.loc["synther", "acceptance_rate"] == 1.0
    assert (out / "plots" / "augmented_returns.png").stat().st_size > 0

    samples = augment_report.return_samples(str(path))
    np.testing.assert_array_equal(np.sort(samples["added"]), [50.0, 60.0])  # one per stitch
    np.testing.assert_array_equal(np.sort(samples["source"]), [10.0, 20.0])
    assert len(samples["original"]) == 30  # returns-to-go of the original states only
    # returns-to-go discounted (0.99) to each episode's end: 10 steps of 0.5, then 20 of 1.0
    np.testing.assert_allclose(samples["original"][0], 0.5 * (1 - 0.99**10) / 0.01, rtol=1e-5)
    np.testing.assert_allclose(samples["original"][9], 0.5, rtol=1e-6)
    np.testing.assert_allclose(samples["original"][10], (1 - 0.99**20) / 0.01, rtol=1e-5)
    rewards = augment_report.return_samples(str(tmp_path / "data" / "synther.hdf5"))
    np.testing.assert_array_equal(rewards["added"], np.full(5, -2.0))


def test_a_file_no_longer_here_is_listed_as_missing(tmp_path):
    path = write_case(tmp_path, "synther", episode(5, 1.0), generated=5)
    path.unlink()
    out = tmp_path / "report"
    assert augment_report.main(["--results", str(tmp_path / "results"), "--out", str(out)]) == 0
    assert bool(pd.read_csv(out / "augmentation.csv")["missing"].iloc[0])
    assert not (out / "plots" / "augmented_returns.png").exists()


def test_records_without_augmentation_are_refused(tmp_path):
    run = tmp_path / "results" / "s0"
    run.mkdir(parents=True)
    (run / "record.json").write_text(json.dumps({"task": "t", "augment": None}))
    assert (
        augment_report.main(["--results", str(tmp_path / "results"), "--out", str(tmp_path)]) == 1
    )
