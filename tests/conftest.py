"""Test-wide isolation: datasets are forged into one session directory, real data is hidden."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def isolated_data_dirs(tmp_path_factory):
    """Forge into a per-session cache and never read the user's D4RL or Minari stores."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("data")
    mp.setenv("DIFFRL_DATA_DIR", str(root / "forged"))
    mp.setenv("D4RL_DATASET_DIR", str(root / "d4rl"))
    mp.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
    yield root
    mp.undo()
