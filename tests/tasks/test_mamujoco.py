"""Batched MaMuJoCo: equal to stepping single ``parallel_env`` copies, reproducible per env
whatever the batch, and its vectorized splits equal MaMuJoCo's own mappings."""

import numpy as np
import pytest
from gymnasium_robotics import mamujoco_v1

from tasks.mamujoco import MaMuJoCoEnvs, join_actions, split_actions, split_states, team_reward

STEPS = 30


def random_actions(seed: int, n_envs: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (STEPS, n_envs, 2, 3))


def single_copy(seed: int, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observations and rewards of one ``parallel_env`` driven by ``actions [T, 2, 3]``."""
    env = mamujoco_v1.parallel_env("HalfCheetah", "2x3")
    obs, _ = env.reset(seed=seed)
    agents = env.possible_agents
    observations, rewards = [[obs[a] for a in agents]], []
    for act in actions:
        obs, rew, _, _, _ = env.step({a: act[i] for i, a in enumerate(agents)})
        observations.append([obs[a] for a in agents])
        rewards.append([rew[a] for a in agents])
    return np.asarray(observations, np.float32), np.asarray(rewards)


def run(envs: MaMuJoCoEnvs, seed, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    observations, rewards = [envs.reset(seed)], []
    for act in actions:
        obs, rew, terminated, truncated = envs.step(act)
        assert not terminated.any() and not truncated.any()
        observations.append(obs)
        rewards.append(rew)
    return np.stack(observations, 1), np.stack(rewards, 1)  # [E, T, ...]


def test_batched_envs_equal_single_parallel_env_copies():
    envs = MaMuJoCoEnvs("HalfCheetah", "2x3", 3)
    assert (envs.n_agents, envs.obs_dim, envs.act_dim, envs.state_dim) == (2, 12, 3, 17)
    assert envs.max_episode_steps == 1000
    actions = random_actions(0, 3)
    obs, rew = run(envs, 7, actions)
    assert obs.shape == (3, STEPS + 1, 2, 12) and obs.dtype == np.float32
    for i in range(3):
        single_obs, single_rew = single_copy(7 + i, actions[:, i])
        np.testing.assert_array_equal(obs[i], single_obs)
        np.testing.assert_array_equal(rew[i], single_rew)
    assert not np.array_equal(obs[0], obs[1])  # different seeds, different starts


def test_an_episode_is_the_same_whatever_the_batch():
    actions = random_actions(1, 4)
    alone, _ = run(MaMuJoCoEnvs("HalfCheetah", "2x3", 1), [12], actions[:, 2:3])
    batched, _ = run(MaMuJoCoEnvs("HalfCheetah", "2x3", 4), [10, 11, 12, 13], actions)
    np.testing.assert_array_equal(alone[0], batched[2])


def test_team_reward_is_the_shared_reward_and_summed_it_is_the_single_agent_return():
    envs = MaMuJoCoEnvs("HalfCheetah", "2x3", 2)
    actions = random_actions(2, 2)
    _, rew = run(envs, 3, actions)
    np.testing.assert_array_equal(rew[..., 0], rew[..., 1])
    single = envs.envs[0].single_agent_env  # the same HalfCheetah-v5, stepped again
    single.reset(seed=3)
    total = sum(single.step(join_actions(a, envs.act_index))[1] for a in actions[:, 0])
    assert team_reward(rew[0]).sum() == pytest.approx(total, rel=1e-12)


def test_splits_equal_mamujoco_mappings_and_recombine():
    envs = MaMuJoCoEnvs("HalfCheetah", "2x3", 1)
    env = envs.envs[0]
    obs = envs.reset(5)
    for act in random_actions(3, 1)[:5]:
        state = envs.states()[0]
        expected = env.map_global_state_to_local_observations(env.state())
        np.testing.assert_array_equal(split_states(state, envs.obs_index), obs[0])
        np.testing.assert_allclose(obs[0], [expected[a] for a in envs.agents], rtol=1e-6)
        back = env.map_local_observations_to_global_state(
            dict(zip(envs.agents, obs[0], strict=True))
        )
        np.testing.assert_array_equal(back.astype(np.float32), state)
        obs, _, _, _ = envs.step(act)
    global_action = np.arange(6) / 10
    local = split_actions(global_action, envs.act_index)
    by_mamujoco = env.map_global_action_to_local_actions(global_action)
    np.testing.assert_array_equal(local, [by_mamujoco[a] for a in envs.agents])
    np.testing.assert_array_equal(join_actions(local, envs.act_index), global_action)
    assert np.array_equal(
        env.map_local_actions_to_global_action(dict(zip(envs.agents, local, strict=True))),
        global_action,
    )


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="valid: HalfCheetah 2x3"):
        MaMuJoCoEnvs("Ant", "2x4", 1)
    envs = MaMuJoCoEnvs("HalfCheetah", "2x3", 2)
    envs.reset(0)
    with pytest.raises(ValueError, match=r"expected \(2, 2, 3\)"):
        envs.step(np.zeros((2, 6)))
