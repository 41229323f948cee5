"""Evaluation envs: observation layouts, the D4RL maze2d frame, vector autoreset."""

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from tasks.envs import MAZE_MAPS, free_cells, make_env, make_vector_env, maze2d_frame
from tasks.registry import get_task
from tasks.sources import load_dataset

D4RL_OBS_DIMS = {"hopper": 11, "halfcheetah": 17, "walker2d": 17}


@pytest.mark.parametrize("task_id", ["pointmaze-umaze", "maze2d-medium-v1", "toy-bandit"])
@pytest.mark.usefixtures("few_ref_episodes")
def test_env_observations_match_the_dataset_layout(task_id):
    spec = get_task(task_id)
    dataset = load_dataset(spec, scale=0.001, verbose=False)
    env = make_env(spec)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and env.observation_space.dtype == np.float32
    assert obs.shape == env.observation_space.shape == dataset.arrays["observations"].shape[1:]
    assert env.action_space.shape == dataset.arrays["actions"].shape[1:]
    assert env.spec.max_episode_steps == spec.max_episode_steps


@pytest.mark.parametrize("env_name", sorted(D4RL_OBS_DIMS))
def test_locomotion_envs_have_d4rl_observation_sizes(env_name):
    env = make_env(get_task(f"{env_name}-medium-v2"))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (D4RL_OBS_DIMS[env_name],) and obs.dtype == np.float32


def test_pointmaze_eval_env_has_the_fixed_goal_and_reports_success():
    env = make_env(get_task("pointmaze-umaze"))
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        assert np.all(np.abs(obs[4:6] - np.array([-1.0, 1.0])) <= 0.25)  # cell (1, 1)
        assert "success" in info
    maze = env.unwrapped
    maze.point_env.set_state(maze.goal.copy(), np.zeros(2))
    _, reward, terminated, truncated, info = env.step(np.zeros(2, dtype=np.float32))
    assert info["success"] and reward == 1.0 and not (terminated or truncated)


def test_d4rl_cell_centres_map_onto_gymnasium_robotics_cells():
    env = make_env(get_task("maze2d-large-v1"))
    maze = env.unwrapped._maze.maze
    frame = maze2d_frame("large")
    for cell in free_cells(MAZE_MAPS["large"]):
        d4rl_centre = np.array(cell, dtype=float) - 0.2
        np.testing.assert_allclose(
            frame.pos_to_gym(d4rl_centre), maze.cell_rowcol_to_xy(np.array(cell))
        )
        np.testing.assert_allclose(frame.pos_from_gym(frame.pos_to_gym(d4rl_centre)), d4rl_centre)


def test_maze2d_env_speaks_d4rl_coordinates():
    env = make_env(get_task("maze2d-umaze-v1"))
    starts = np.array([env.reset(seed=s)[0][:2] for s in range(40)])
    offsets = starts - np.round(starts)  # D4RL resets to a free cell's index + U(-0.1, 0.1)
    assert np.abs(offsets).max() <= 0.1 + 1e-5
    obs, _ = env.reset(seed=3)
    pushed, _, _, _, _ = env.step(np.array([1.0, 0.0], dtype=np.float32))
    assert pushed[2] - obs[2] > 0.15 and abs(pushed[3] - obs[3]) < 0.02  # action 0 drives a
    env.unwrapped._maze.point_env.set_state(
        env.unwrapped.frame.pos_to_gym(np.array([1.0, 1.3])), np.zeros(2)
    )
    _, reward, _, _, info = env.step(np.zeros(2, dtype=np.float32))
    assert reward == 1.0 and info["success"]  # within 0.5 of D4RL's umaze target (1, 1)


def test_vector_env_uses_next_step_autoreset_and_exposes_success():
    envs = make_vector_env(get_task("pointmaze-umaze"), 3)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, info = envs.reset(seed=[0, 1, 2])
    assert obs.shape == (3, 6) and obs.dtype == np.float32
    _, _, _, _, info = envs.step(np.zeros((3, 2), dtype=np.float32))
    assert info["success"].shape == (3,) and info["_success"].all()
    envs.close()
