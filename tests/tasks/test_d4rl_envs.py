"""Walker2d tasks run in the dynamics of D4RL's data: the v2-v4 feet, not Walker2d-v5's."""

import gymnasium as gym
import mujoco
import numpy as np

from tasks.d4rl_envs import WALKER2D_D4RL
from tasks.envs import make_env
from tasks.registry import get_task


def foot_friction(env: gym.Env) -> dict[str, float]:
    model = env.unwrapped.model
    names = {mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, i): i for i in range(model.ngeom)}
    return {
        foot: float(model.geom_friction[names[foot], 0]) for foot in ("foot_geom", "foot_left_geom")
    }


def test_walker2d_tasks_evaluate_with_the_feet_of_d4rls_data():
    for task in ("walker2d-medium-v2", "velocity-walker2d-medium-v2", "walker2d-random-v2"):
        assert get_task(task).env_id == WALKER2D_D4RL
    env = make_env(get_task("walker2d-medium-v2"))
    assert foot_friction(env) == {"foot_geom": 0.9, "foot_left_geom": 1.9}
    v5 = gym.make("Walker2d-v5")
    assert foot_friction(v5) == {"foot_geom": 1.9, "foot_left_geom": 1.9}  # what we avoid
    obs, _ = env.reset(seed=0)
    assert obs.shape == (17,) and env.spec.max_episode_steps == 1000
    assert np.isfinite(env.step(env.action_space.sample())[1])
    env.close()
    v5.close()


def test_hopper_and_halfcheetah_keep_their_v3_models():
    for task, env_id in (
        ("hopper-medium-v2", "Hopper-v5"),
        ("halfcheetah-medium-v2", "HalfCheetah-v5"),
    ):
        assert get_task(task).env_id == env_id
