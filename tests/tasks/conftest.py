"""Every tasks test gets its own empty D4RL, Minari and forge directories."""

import pytest
import torch


@pytest.fixture(autouse=True)
def data_dirs(tmp_path, monkeypatch):
    """Point ``D4RL_DATASET_DIR``, ``MINARI_DATASETS_PATH`` and ``DIFFRL_DATA_DIR`` at tmp dirs."""
    dirs = {name: tmp_path / name for name in ("d4rl", "minari", "forged")}
    for path in dirs.values():
        path.mkdir()
    monkeypatch.setenv("D4RL_DATASET_DIR", str(dirs["d4rl"]))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(dirs["minari"]))
    monkeypatch.setenv("DIFFRL_DATA_DIR", str(dirs["forged"]))
    return dirs


@pytest.fixture
def few_ref_episodes(monkeypatch):
    """Point-maze reference scores over 3 episodes instead of 100, to keep forges fast."""
    monkeypatch.setattr("tasks.forge.pointmaze.REF_EPISODES", 3)


@pytest.fixture
def one_thread():
    """Bit-exact comparisons and small matmuls: one torch thread, restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
