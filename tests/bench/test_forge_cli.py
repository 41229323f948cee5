"""``python -m bench.forge``: forges into $DIFFRL_DATA_DIR, writes nothing else, rejects bad ids."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _forge_cli(args, cwd, data_dir):
    env = {**os.environ, "DIFFRL_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "bench.forge", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def workdir(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return cwd, tmp_path / "data"


def test_forge_cli_writes_only_the_dataset_and_reuses_it(workdir):
    cwd, data = workdir
    done = _forge_cli(["task=toy-bandit", "data.scale=0.01", "seed=2"], cwd, data)
    assert done.returncode == 0, done.stderr
    path = data / "toy-bandit" / "scale0.01-seed2.hdf5"
    assert f"wrote {path}" in done.stdout
    assert path.exists() and list(cwd.iterdir()) == []
    again = _forge_cli(["task=toy-bandit", "data.scale=0.01", "seed=2"], cwd, data)
    assert again.returncode == 0 and "already forged" in again.stdout


def test_forge_cli_rejects_unknown_tasks(workdir):
    cwd, data = workdir
    done = _forge_cli(["task=pointmaze-giant"], cwd, data)
    assert done.returncode != 0
    assert "unknown task 'pointmaze-giant'" in done.stderr and "pointmaze-umaze" in done.stderr
    assert list(cwd.iterdir()) == [] and not data.exists()


def test_a_safe_task_forges_the_dataset_of_its_base_task(workdir):
    cwd, data = workdir
    done = _forge_cli(["task=obstacles-pointmaze-umaze", "data.scale=0.002"], cwd, data)
    assert done.returncode == 0, done.stderr
    assert "trains on the dataset of pointmaze-umaze" in done.stdout
    assert (data / "pointmaze-umaze" / "scale0.002-seed0.hdf5").exists()
    assert not (data / "obstacles-pointmaze-umaze").exists()


def test_retrain_rejects_an_unknown_stopping_level(workdir):
    cwd, data = workdir
    done = _forge_cli(
        ["task=hopper-medium-v2", "forge.retrain=true", "forge.until=replay"], cwd, data
    )
    assert done.returncode != 0
    assert "forge.until='replay' is not valid; valid: medium, expert" in done.stderr
    assert not data.exists()
