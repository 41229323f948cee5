"""Resolution order, D4RL file vs Minari dataset equivalence, errors and provenance."""

import dataclasses
import warnings

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

import tasks.sources
from tasks.envs import maze2d_frame
from tasks.forge import forge
from tasks.forge.policies import untrained_policy_set
from tasks.registry import get_task
from tasks.sources import cached_sha256, load_dataset
from tasks.spec import DatasetNotFoundError, TaskSpec

SPEC = TaskSpec(
    task_id="test-goal-maze",
    kind="maze",
    env_id="PointMaze_UMaze-v3",
    obs_keys=("observation", "desired_goal"),
    ref_min_score=0.0,
    ref_max_score=1.0,
    d4rl_file="test-goal-maze.hdf5",
    minari_id="test/goalmaze/tiny-v0",
)
OBS_SPACE = gym.spaces.Dict(
    {
        "achieved_goal": gym.spaces.Box(-10, 10, (2,), np.float64),
        "desired_goal": gym.spaces.Box(-10, 10, (2,), np.float64),
        "observation": gym.spaces.Box(-10, 10, (4,), np.float64),
    }
)
ACT_SPACE = gym.spaces.Box(-1, 1, (2,), np.float32)


def _episodes(seed=0):
    """Three episodes: one truncated, one terminated, one cut off with neither flag."""
    rng = np.random.default_rng(seed)
    episodes = []
    for length, end in ((5, "truncated"), (3, "terminated"), (4, None)):
        obs = {k: rng.uniform(-2, 2, size=(length + 1, *s.shape)) for k, s in OBS_SPACE.items()}
        terminations = np.zeros(length, dtype=bool)
        truncations = np.zeros(length, dtype=bool)
        if end == "terminated":
            terminations[-1] = True
        elif end == "truncated":
            truncations[-1] = True
        episodes.append(
            {
                "observations": obs,
                "actions": rng.uniform(-1, 1, size=(length, 2)).astype(np.float32),
                "rewards": rng.normal(size=length),
                "terminations": terminations,
                "truncations": truncations,
            }
        )
    return episodes


def _write_minari(dataset_id, episodes):
    buffers = [
        EpisodeBuffer(
            id=i,
            observations=ep["observations"],
            actions=ep["actions"],
            rewards=list(ep["rewards"]),
            terminations=list(ep["terminations"]),
            truncations=list(ep["truncations"]),
        )
        for i, ep in enumerate(episodes)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            dataset_id,
            buffers,
            observation_space=OBS_SPACE,
            action_space=ACT_SPACE,
            algorithm_name="uniform noise",
            code_permalink="tests/tasks/test_task_sources.py",
            author="diffrl-bench",
            author_email="none@example.com",
        )


def _write_d4rl(path, episodes, keys):
    """The same episodes in D4RL's layout, written with h5py alone."""
    flat = [np.concatenate([ep["observations"][k] for k in keys], axis=1) for ep in episodes]
    ends_unflagged = [not (ep["terminations"][-1] or ep["truncations"][-1]) for ep in episodes]
    timeouts = [ep["truncations"].copy() for ep in episodes]
    for t, unflagged in zip(timeouts, ends_unflagged, strict=True):
        t[-1] |= unflagged
    with h5py.File(path, "w") as f:
        f["observations"] = np.concatenate([o[:-1] for o in flat])
        f["next_observations"] = np.concatenate([o[1:] for o in flat])
        f["actions"] = np.concatenate([ep["actions"] for ep in episodes])
        f["rewards"] = np.concatenate([ep["rewards"] for ep in episodes])
        f["terminals"] = np.concatenate([ep["terminations"] for ep in episodes])
        f["timeouts"] = np.concatenate(timeouts)
        f["metadata/algorithm"] = "uniform noise"


def test_d4rl_file_and_minari_dataset_load_identically(data_dirs):
    episodes = _episodes()
    _write_minari(SPEC.minari_id, episodes)
    _write_d4rl(data_dirs["d4rl"] / SPEC.d4rl_file, episodes, SPEC.obs_keys)
    from_d4rl = load_dataset(SPEC, source="d4rl", verbose=False)
    from_minari = load_dataset(SPEC, source="minari", verbose=False)
    assert set(from_d4rl.arrays) == set(from_minari.arrays)
    for key, value in from_d4rl.arrays.items():
        np.testing.assert_array_equal(value, from_minari.arrays[key], err_msg=key)
        assert value.dtype == from_minari.arrays[key].dtype, key
    assert from_d4rl.arrays["observations"].shape == (12, 6)
    assert from_d4rl.provenance.n_episodes == from_minari.provenance.n_episodes == 3
    assert from_d4rl.provenance.source == "d4rl" and from_minari.provenance.source == "minari"


def test_auto_prefers_d4rl_then_minari_and_prints_the_source(data_dirs, capsys):
    _write_minari(SPEC.minari_id, _episodes(seed=1))
    assert load_dataset(SPEC).provenance.source == "minari"
    _write_d4rl(data_dirs["d4rl"] / SPEC.d4rl_file, _episodes(seed=2), SPEC.obs_keys)
    dataset = load_dataset(SPEC)
    assert dataset.provenance.source == "d4rl"
    assert dataset.provenance.path == str(data_dirs["d4rl"] / SPEC.d4rl_file)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("[data] test-goal-maze: d4rl ") and "12 transitions" in line


def test_auto_uses_an_existing_forge_before_forging(monkeypatch):
    spec = get_task("toy-bandit")
    forge(spec, scale=0.01, seed=4, progress=False)
    monkeypatch.setattr(tasks.sources, "forge", lambda *a, **k: pytest.fail("forged again"))
    dataset = load_dataset(spec, scale=0.01, forge_seed=4, verbose=False)
    assert dataset.provenance.source == "forged" and len(dataset) == 100


def test_missing_data_error_names_every_command(data_dirs):
    spec = dataclasses.replace(get_task("maze2d-umaze-v1"), cheap_forge=False)
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(spec, scale=0.1, verbose=False)
    text = str(err.value)
    assert (
        "http://rail.eecs.berkeley.edu/datasets/offline_rl/maze2d/maze2d-umaze-sparse-v1.hdf5"
        in text
    )
    assert str(data_dirs["d4rl"] / "maze2d-umaze-sparse-v1.hdf5") in text
    assert "minari download D4RL/pointmaze/umaze-v2" in text
    assert "python -m bench.forge task=maze2d-umaze-v1 data.scale=0.1 seed=0" in text


def test_restricted_source_and_unavailable_forge_messages(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(get_task("hopper-medium-v2"), source="minari", verbose=False)
    text = str(err.value)
    assert "minari download mujoco/hopper/medium-v0" in text and "D4RL file" not in text
    monkeypatch.setenv("DIFFRL_POLICY_DIR", str(tmp_path / "no-policies"))
    with pytest.raises(DatasetNotFoundError, match=r"python -m bench\.forge task=hopper-random-v2"):
        load_dataset(get_task("hopper-random-v2"), verbose=False)


@pytest.mark.usefixtures("data_dirs")
def test_locomotion_forges_on_first_use_only_with_shipped_policies(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRL_POLICY_DIR", str(tmp_path / "policies"))
    untrained_policy_set("hopper")  # ships random only
    dataset = load_dataset(get_task("hopper-random-v2"), scale=0.002, verbose=False)
    assert dataset.provenance.source == "forged" and len(dataset) == 2000
    for task in ("hopper-medium-v2", "hopper-medium-replay-v2", "hopper-medium-expert-v2"):
        with pytest.raises(DatasetNotFoundError, match=rf"python -m bench\.forge task={task}"):
            load_dataset(get_task(task), scale=0.002, verbose=False)


def test_minari_pointmaze_data_is_converted_to_the_maze2d_layout():
    episodes = _episodes(seed=3)
    _write_minari("D4RL/pointmaze/umaze-v2", episodes)
    dataset = load_dataset(get_task("maze2d-umaze-v1"), source="minari", verbose=False)
    state = np.concatenate([ep["observations"]["observation"][:-1] for ep in episodes])
    frame = maze2d_frame("umaze")
    np.testing.assert_allclose(
        dataset.arrays["observations"], frame.state_from_gym(state), atol=1e-5
    )
    assert dataset.arrays["observations"].shape == (12, 4)
    dist = np.linalg.norm(dataset.arrays["observations"][:, :2] - np.array([1.0, 1.0]), axis=1)
    np.testing.assert_array_equal(dataset.arrays["rewards"], (dist <= 0.5).astype(np.float32))
    assert (dataset.ref_min_score, dataset.ref_max_score) == (23.85, 161.86)


def test_sha256_is_cached_until_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"abc")
    first = cached_sha256(path)
    assert first == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with monkeypatch.context() as m:
        m.setattr(tasks.sources, "_hash_files", lambda *a: pytest.fail("hashed again"))
        assert cached_sha256(path) == first
    path.write_bytes(b"abcd")
    assert cached_sha256(path) != first
