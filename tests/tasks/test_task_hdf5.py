"""D4RL HDF5 reading, derivation of next observations, validation errors, atomic writes."""

import h5py
import numpy as np
import pytest

from tasks.hdf5 import read_d4rl_hdf5, read_hdf5_attrs, write_d4rl_hdf5
from tasks.spec import DatasetFormatError


def _episodes(n=10, obs_dim=3):
    rng = np.random.default_rng(0)
    return {
        "observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": np.zeros(n, dtype=bool),
        "timeouts": np.zeros(n, dtype=bool),
    }


def _write_raw(path, arrays):
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)


def test_roundtrip_keeps_arrays_and_attrs(tmp_path):
    arrays = _episodes()
    arrays["next_observations"] = arrays["observations"] + 1
    arrays["infos/goal"] = np.ones((10, 2), dtype=np.float32)
    out = tmp_path / "out"
    path = write_d4rl_hdf5(out / "d.hdf5", arrays, {"seed": 3, "params": {"a": [1, 2]}})
    loaded = read_d4rl_hdf5(path)
    assert set(loaded) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)
    assert read_hdf5_attrs(path) == {"seed": 3, "params": {"a": [1, 2]}}
    assert [p.name for p in out.iterdir()] == ["d.hdf5"]


def test_next_observations_derived_like_qlearning_dataset(tmp_path):
    arrays = _episodes(n=8)
    # episodes: rows 0-2 (timeout at 2), rows 3-5 (terminal at 5), rows 6-7 (cut by the file end)
    arrays["timeouts"][2] = True
    arrays["terminals"][5] = True
    arrays["infos/qpos"] = np.arange(8, dtype=np.float32)
    _write_raw(tmp_path / "d.hdf5", arrays)
    out = read_d4rl_hdf5(tmp_path / "d.hdf5")
    kept = [0, 1, 3, 4, 5, 6]  # timeout row 2 and the last row 7 have no recorded successor
    np.testing.assert_array_equal(out["observations"], arrays["observations"][kept])
    np.testing.assert_array_equal(
        out["next_observations"], arrays["observations"][[1, 2, 4, 5, 6, 7]]
    )
    np.testing.assert_array_equal(out["infos/qpos"], kept)
    assert out["timeouts"].tolist() == [False, True, False, False, False, True]
    assert out["terminals"].tolist() == [False, False, False, False, True, False]


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (lambda a: a.pop("rewards"), "missing required key(s) rewards"),
        (lambda a: a.update(actions=a["actions"][:-1]), "different lengths"),
        (
            lambda a: a["observations"].__setitem__((4, 1), np.nan),
            "observations holds NaN/inf in 1 row(s), first at index 4",
        ),
    ],
)
def test_malformed_files_raise_format_error(tmp_path, corrupt, expected):
    arrays = _episodes()
    corrupt(arrays)
    _write_raw(tmp_path / "bad.hdf5", arrays)
    with pytest.raises(DatasetFormatError) as err:
        read_d4rl_hdf5(tmp_path / "bad.hdf5")
    assert "bad.hdf5" in str(err.value) and expected in str(err.value)


def test_truncated_file_raises_format_error(tmp_path):
    path = write_d4rl_hdf5(tmp_path / "cut.hdf5", _episodes(n=5000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        DatasetFormatError, match=r"cut\.hdf5: cannot be read as HDF5 .*truncated or corrupt"
    ):
        read_d4rl_hdf5(path)


def test_failed_write_leaves_nothing_at_the_final_path(tmp_path):
    arrays = {"observations": np.array([object()], dtype=object)}
    with pytest.raises(TypeError):
        write_d4rl_hdf5(tmp_path / "out" / "x.hdf5", arrays)
    assert list((tmp_path / "out").iterdir()) == []


def test_build_lock_makes_a_second_builder_wait_for_the_first(tmp_path):
    """While one builder holds the lock, another blocks; it enters only after the first is done,
    and so finds the file the first one wrote."""
    import threading
    import time

    from tasks.hdf5 import build_lock

    path = tmp_path / "data.hdf5"
    events = []

    def second():
        with build_lock(path):
            events.append(("second enters", path.exists()))

    with build_lock(path):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)  # the second builder is blocked meanwhile
        events.append(("first writes", path.exists()))
        write_d4rl_hdf5(path, _episodes())
    thread.join(timeout=10)
    assert events == [("first writes", False), ("second enters", True)]
