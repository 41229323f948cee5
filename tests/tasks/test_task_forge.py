"""Forges: determinism, caching, the controller, reference scores, the fast stepper."""

import numpy as np
import pytest
from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv

import tasks.forge.pointmaze as pointmaze
from tasks.envs import MAZE_MAPS, make_env
from tasks.forge import ForgeNotAvailableError, forge, forged_path, random_policy, reference_return
from tasks.hdf5 import read_d4rl_hdf5, read_hdf5_attrs
from tasks.registry import get_task
from tasks.sources import load_dataset

SCALE = 0.002  # 2,000 steps


@pytest.mark.usefixtures("few_ref_episodes")
def test_pointmaze_forge_is_deterministic_cached_and_seeded(data_dirs, monkeypatch):
    spec = get_task("pointmaze-umaze")
    path = forge(spec, scale=SCALE, seed=1, progress=False)
    assert path == forged_path(spec, SCALE, 1) and path.parent.parent == data_dirs["forged"]
    first = read_d4rl_hdf5(path)
    assert len(first["observations"]) == 2000
    with monkeypatch.context() as m:
        m.setattr(pointmaze, "collect", lambda *a, **k: pytest.fail("forged again"))
        assert forge(spec, scale=SCALE, seed=1) == path
    again = read_d4rl_hdf5(forge(spec, scale=SCALE, seed=1, force=True, progress=False))
    for key, value in first.items():
        np.testing.assert_array_equal(value, again[key], err_msg=key)
    other = read_d4rl_hdf5(forge(spec, scale=SCALE, seed=2, progress=False))
    assert not np.array_equal(first["actions"], other["actions"])
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.usefixtures("few_ref_episodes")
def test_pointmaze_data_reaches_goals_and_is_consistent(capsys):
    spec = get_task("pointmaze-umaze")
    dataset = load_dataset(spec, scale=SCALE, forge_seed=0)
    assert "forge pointmaze-umaze" in capsys.readouterr().err  # the progress bar
    a = dataset.arrays
    reached = a["rewards"] > 0
    assert reached.sum() >= 15  # about one goal per 77 steps
    assert np.all(a["timeouts"][reached]) and not a["terminals"].any()
    lengths = np.diff(np.concatenate([[0], dataset.episode_ends()]))
    assert lengths.max() <= spec.max_episode_steps
    np.testing.assert_array_equal(a["infos/goal"], a["observations"][:, 4:6])
    np.testing.assert_array_equal(a["infos/qpos"], a["observations"][:, :2])
    # within an episode, each step continues from the previous one
    same_episode = ~(a["timeouts"][:-1] | a["terminals"][:-1])
    np.testing.assert_array_equal(
        a["next_observations"][:-1][same_episode], a["observations"][1:][same_episode]
    )
    assert np.abs(a["actions"]).max() <= 1.0
    attrs = read_hdf5_attrs(dataset.provenance.path)
    assert attrs["params"]["steps"] == 2000 and attrs["protocol"] == "pointmaze"
    assert (dataset.ref_min_score, dataset.ref_max_score) == (
        attrs["ref_min_score"],
        attrs["ref_max_score"],
    )


def test_controller_reference_score_far_above_random(monkeypatch):
    monkeypatch.setattr(pointmaze, "REF_EPISODES", 10)
    ref_min, ref_max = pointmaze.pointmaze_reference_scores(get_task("pointmaze-umaze"))
    assert ref_min < 40 and ref_max > 150  # Minari's 100-episode values: 13.5 and 218.7


def test_fast_reference_return_equals_the_generic_protocol():
    spec = get_task("pointmaze-medium")
    env = make_env(spec)
    controller = pointmaze.WaypointController(spec.env_kwargs["maze_map"], np.random.default_rng(0))
    fast = pointmaze.maze_reference_return(spec, env, lambda o: controller(o[:4], o[4:6]), 2)
    controller = pointmaze.WaypointController(spec.env_kwargs["maze_map"], np.random.default_rng(0))
    generic = reference_return(env, lambda o: controller(o[:4], o[4:6]), 2)
    assert fast == generic > 0
    assert pointmaze.maze_reference_return(spec, env, random_policy(env), 2) == reference_return(
        env, random_policy(env), 2
    )


def test_stepper_is_bit_identical_to_env_step():
    reference = PointMazeEnv(maze_map=MAZE_MAPS["medium"], continuing_task=True, reset_target=True)
    fast = PointMazeEnv(maze_map=MAZE_MAPS["medium"], continuing_task=True, reset_target=True)
    reference.reset(seed=7)
    fast.reset(seed=7)
    stepper = pointmaze.PointMazeStepper(fast)
    controller = pointmaze.WaypointController(MAZE_MAPS["medium"], np.random.default_rng(0))
    rng = np.random.default_rng(1)
    state, successes = stepper.state(), 0
    for t in range(1500):
        action = controller(state, fast.goal.copy()) + rng.normal(0, 2.0 if t % 3 == 0 else 0.3, 2)
        obs, reward, _, _, info = reference.step(action)
        state, fast_reward, success = stepper.step(action)
        np.testing.assert_array_equal(obs["observation"], state)
        assert (reward, info["success"]) == (fast_reward, success)
        np.testing.assert_array_equal(reference.goal, fast.goal)
        successes += success
    assert successes >= 3  # goals were reached and redrawn on both sides


def test_q_iteration_waypoints_follow_shortest_paths():
    layout = tuple(tuple(row) for row in MAZE_MAPS["umaze"])
    nxt = pointmaze.greedy_next_cells(layout, (1, 1))
    path, cell = [], (3, 1)
    while cell != (1, 1):
        cell = nxt[cell]
        path.append(cell)
    assert path == [(3, 2), (3, 3), (2, 3), (1, 3), (1, 2), (1, 1)]


@pytest.mark.usefixtures("few_ref_episodes")
def test_maze2d_forge_is_in_d4rl_layout():
    spec = get_task("maze2d-umaze-v1")
    dataset = load_dataset(spec, scale=SCALE, verbose=False)
    obs = dataset.arrays["observations"]
    assert obs.shape == (2000, 4) and dataset.arrays["infos/goal"].shape == (2000, 2)
    # umaze free cells are rows/columns 1-3; D4RL positions lie in [0.4, 3.2] along both axes
    assert obs[:, :2].min() > 0.39 and obs[:, :2].max() < 3.21
    dist = np.linalg.norm(obs[:, :2] - np.array([1.0, 1.0]), axis=1)
    np.testing.assert_array_equal(dataset.arrays["rewards"], (dist <= 0.5).astype(np.float32))
    assert dataset.arrays["rewards"].sum() > 0
    assert (dataset.ref_min_score, dataset.ref_max_score) == (23.85, 161.86)


def test_bandit_forge_and_its_reference_scores():
    spec = get_task("toy-bandit")
    dataset = load_dataset(spec, scale=0.05, forge_seed=3, verbose=False)
    assert len(dataset) == 500 and dataset.provenance.n_episodes == 500
    assert dataset.provenance.protocol == "bandit" and dataset.provenance.params["seed"] == 3
    assert 0.05 < dataset.ref_min_score < 0.2 and dataset.ref_max_score == pytest.approx(
        1.0, abs=1e-3
    )
    again = read_d4rl_hdf5(forge(spec, scale=0.05, seed=3, force=True, progress=False))
    np.testing.assert_array_equal(dataset.arrays["actions"], again["actions"])


def test_locomotion_levels_without_trained_policies_say_how_to_train_them(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRL_POLICY_DIR", str(tmp_path))  # a policy folder with none shipped
    with pytest.raises(ForgeNotAvailableError, match=r"forge\.retrain=true"):
        forge(get_task("walker2d-medium-v2"), scale=0.01)


def test_runs_started_together_on_a_cold_cache_forge_once(data_dirs, monkeypatch):
    """Two runs that need the same unforged dataset at once: one forges, the other waits and
    reads its file (a seed grid on a fresh machine would otherwise forge it once per seed)."""
    import threading
    import time

    import tasks.forge as forge_module

    spec = get_task("toy-bandit")
    real = forge_module._protocol(spec)
    calls = []

    def slow_protocol(*args):
        calls.append(threading.current_thread().name)
        time.sleep(0.3)  # long enough for the other run to arrive while this one forges
        return real(*args)

    monkeypatch.setattr(forge_module, "_protocol", lambda spec: slow_protocol)
    paths = []
    threads = [
        threading.Thread(target=lambda: paths.append(forge(spec, scale=0.01, progress=False)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(calls) == 1 and len(paths) == 2 and paths[0] == paths[1]
    assert read_d4rl_hdf5(paths[0])["observations"].shape[0] > 0
