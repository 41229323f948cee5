"""The augmentation stage end to end: ``augment=diffstitch`` through ``bench.run`` with IQL on a
tiny forged hopper-medium-replay dataset (short episodes of varied returns, which stitch), the
cache, determinism, records, the leaderboard and bad knobs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bench import augment as stage
from bench.checks import ConfigError
from bench.leaderboard.runs import prepare
from bench.records import load_records
from bench.run import config_hash, run_overrides
from tasks.hdf5 import read_d4rl_hdf5, read_hdf5_attrs

DATA = ["task=hopper-medium-replay-v2", "data.scale=0.002"]
# A tiny DiffStitch: small networks, few steps, and permissive checks so that stitches pass.
TINY_STITCH = [
    "augment=diffstitch",
    "augment.budget=1",
    "augment.horizon=16",
    "augment.dim=8",
    "augment.dim_mults=[1,2]",
    "augment.n_diffusion_steps=5",
    "augment.train_steps=40",
    "augment.stitch_low=4",
    "augment.stitch_high=10",
    "augment.stitch_batch=16",
    "augment.target_batch=16",
    "augment.target_share=0.1",
    "augment.similarity=0.0",
    "augment.deviation=1000",
    "augment.generate_limit=100",
    "augment.max_rounds=2",
    "augment.dynamics_max_epochs=2",
    "augment.dynamics_hidden=32",
]
TRAIN = ["algo=iql", "train.steps=100", "train.eval_every=0", "train.log_every=50"]
TRAIN += ["eval.episodes=2", "eval.max_envs=2", "device=cpu"]


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_diffstitch_with_iql_through_bench_run(tmp_path):
    rec = run_overrides([*TRAIN, *DATA, *TINY_STITCH, f"results_dir={tmp_path}"])
    assert rec["status"] == "completed"
    aug = rec["augment"]
    assert aug["name"] == "diffstitch" and aug["accepted"] > 0
    assert aug["generated"] >= aug["accepted"]
    assert set(aug["checkpoints"]) >= {"diffusion_ema", "dynamics_ensemble"}
    # the run trained on the augmented file: the source's rows, then the accepted stitches
    arrays = read_d4rl_hdf5(rec["dataset"]["path"])
    attrs = read_hdf5_attrs(rec["dataset"]["path"])
    source = attrs["source"]
    assert rec["dataset"]["sha256"] == aug["sha256"] == sha256(rec["dataset"]["path"])
    assert source["sha256"] == aug["source_sha256"] and source["source"] == "forged"
    assert len(arrays["rewards"]) == source["n_transitions"] + aug["accepted"]
    assert int(arrays["infos/augmented"].sum()) == aug["accepted"]
    assert attrs["augment_config"]["horizon"] == 16 and attrs["protocol"] == "augment:diffstitch"
    # the augmentation enters the config hash, and the leaderboard keeps it apart from plain rows
    plain = run_overrides([*TRAIN, *DATA, f"results_dir={tmp_path}"])
    assert plain["augment"] is None and plain["config_hash"] != rec["config_hash"]
    runs = prepare(load_records(tmp_path)[0])
    assert sorted(runs["source"]) == ["forged", "forged+diffstitch"]


def test_plain_runs_keep_their_config_hash():
    cfg = {"task": "t", "seed": 0, "data": {"scale": 1.0}}
    assert config_hash({**cfg, "augment": {"name": "none"}}, "iql", {}) == config_hash(
        cfg, "iql", {}
    )
    assert config_hash({**cfg, "augment": {"name": "diffstitch"}}, "iql", {}) != config_hash(
        cfg, "iql", {}
    )


def built_file(capsys=None) -> Path:
    assert stage.main([*DATA, *TINY_STITCH, "device=cpu"]) == 0
    files = sorted((stage.data_root() / "augmented" / "hopper-medium-replay-v2").glob("*.hdf5"))
    wanted = [f for f in files if "-seed0-" in f.name and "diffstitch" in f.name]
    assert wanted
    return max(wanted, key=lambda f: f.stat().st_mtime_ns)


def test_second_build_reuses_the_cache():
    path = built_file()
    stamp = path.stat().st_mtime_ns
    assert built_file() == path and path.stat().st_mtime_ns == stamp


def test_same_seed_same_file(tmp_path, monkeypatch):
    first = built_file()
    monkeypatch.setenv("DIFFRL_DATA_DIR", str(tmp_path / "elsewhere"))
    second = built_file()
    assert second != first and second.name == first.name
    a, b = read_d4rl_hdf5(first), read_d4rl_hdf5(second)
    assert sorted(a) == sorted(b) and all((a[k] == b[k]).all() for k in a)
    attrs_a, attrs_b = read_hdf5_attrs(first), read_hdf5_attrs(second)
    assert attrs_a["source"].pop("path") != attrs_b["source"].pop("path")  # another data root
    assert attrs_a == attrs_b  # models' hashes, counts and statistics included


def test_bad_knobs_fail_before_any_run_directory(tmp_path):
    with pytest.raises(ConfigError, match=r"augment.budget=-1.0 is not valid; valid: null"):
        run_overrides([*TRAIN, *DATA, *TINY_STITCH, "augment.budget=-1", f"results_dir={tmp_path}"])
    # a field the transform's resolve rejects: a one-line error once the data's statistics exist
    assert stage.main([*DATA, *TINY_STITCH, "augment.stitch_low=40"]) == 2
    with pytest.raises(ConfigError, match=r"augment.seed=-1 is not valid"):
        run_overrides([*TRAIN, *DATA, *TINY_STITCH, "augment.seed=-1", f"results_dir={tmp_path}"])
    assert not any(tmp_path.iterdir())
    assert stage.main([*DATA, "augment=none"]) == 2


def test_synther_through_the_stage():
    tiny = ["augment=synther", "augment.budget=1", "augment.mlp_width=32", "augment.depth=1"]
    tiny += ["augment.train_steps=20", "augment.n_samples=300", "augment.n_sample_steps=4"]
    assert stage.main([*DATA, *tiny, "device=cpu"]) == 0
    (path,) = (stage.data_root() / "augmented" / "hopper-medium-replay-v2").glob("synther-*.hdf5")
    arrays, attrs = read_d4rl_hdf5(path), read_hdf5_attrs(path)
    added = arrays["infos/augmented"] == 1
    assert attrs["accepted"] == added.sum() == 300
    # every synthetic transition is its own episode: a terminal or a timeout ends it
    assert (arrays["terminals"][added] | arrays["timeouts"][added]).all()
