"""MaMuJoCo forge: level picks by OG-MARL's returns, per-agent data that recombines into the
single-agent HalfCheetah-v5 rollout, shapes and provenance at a tiny scale."""

import gymnasium as gym
import numpy as np
import pytest

from tasks.forge import forge, forged_path
from tasks.forge import mamujoco as fm
from tasks.forge.policies import file_sha256
from tasks.mamujoco import MaMuJoCoEnvs, join_actions, split_states
from tasks.registry import get_task
from tasks.sources import load_dataset

SCALE = 0.001  # one 1000-step episode


@pytest.fixture
def two_ref_episodes(monkeypatch):
    monkeypatch.setattr(fm, "REF_EPISODES", 2)


def test_pick_checkpoint_takes_the_closest_return():
    cps = [fm.Checkpoint(s, None, r) for s, r in ((0, -300.0), (1, 400.0), (2, 2400.0))]
    assert fm.pick_checkpoint(cps, 400.45).step == 1
    assert fm.pick_checkpoint(cps, 1485.0).step == 2  # 915 away, against 1085
    assert fm.pick_checkpoint(cps, 9000.0).step == 2
    tied = [fm.Checkpoint(5, None, 100.0), fm.Checkpoint(3, None, 300.0)]
    assert fm.pick_checkpoint(tied, 200.0).step == 3


def test_levels_are_ordered_committed_checkpoints():
    picks = {level: fm.behaviour(level) for level in fm.LEVELS}
    assert all(p.path.exists() for p in picks.values())
    returns = [picks[level].mean_return for level in ("poor", "medium", "good")]
    assert returns == sorted(returns) and len(set(returns)) == 3
    assert abs(picks["poor"].mean_return - fm.OGMARL_RETURNS["poor"]) < 100
    with pytest.raises(ValueError, match="valid: poor, medium, good"):
        fm.behaviour("expert")


def test_forged_level_recombines_into_the_single_agent_rollout(two_ref_episodes):
    spec = get_task("mamujoco-halfcheetah-2x3-poor")
    arrays, attrs = fm.forge_mamujoco(spec, SCALE, 0, progress=False)
    n = 1000
    assert arrays["observations"].shape == (n, 2, 12) and arrays["actions"].shape == (n, 2, 3)
    assert arrays["rewards"].shape == (n, 2) and arrays["next_observations"].shape == (n, 2, 12)
    assert (
        arrays["timeouts"].sum() == 1 and arrays["timeouts"][-1] and not arrays["terminals"].any()
    )
    np.testing.assert_array_equal(arrays["observations"][1:], arrays["next_observations"][:-1])
    # Replaying the joined actions in the single-agent env gives the stored local observations
    # (split from its states) and the stored shared rewards.
    envs = MaMuJoCoEnvs("HalfCheetah", "2x3", 1)
    single = gym.make("HalfCheetah-v5")
    state, _ = single.reset(seed=fm.episode_seeds(0, "poor", 1)[0])
    for t in range(50):
        np.testing.assert_allclose(
            split_states(state, envs.obs_index), arrays["observations"][t], rtol=1e-6, atol=1e-6
        )
        action = join_actions(arrays["actions"][t].astype(np.float64), envs.act_index)
        state, reward, *_ = single.step(action)
        np.testing.assert_allclose(arrays["rewards"][t], [reward, reward], rtol=1e-5, atol=1e-5)
    assert attrs["ref_min_score"] < 0 < attrs["ref_max_score"]
    params = attrs["params"]
    behaviour = fm.behaviour("poor")
    assert params["behaviour"]["sha256"] == file_sha256(behaviour.path)
    assert params["behaviour"]["file"].startswith("forge-runs/halfcheetah-seed0-steps1000000/")
    assert params["level_target"]["ogmarl_mean_return"] == 400.45


def test_forge_writes_levels_with_provenance_and_reloads(two_ref_episodes):
    spec = get_task("mamujoco-halfcheetah-2x3-good")
    path = forge(spec, scale=SCALE, seed=0, progress=False)
    assert path == forged_path(spec, SCALE, 0) and fm.data_tag(spec) in path.name
    assert fm.data_tag(spec) != fm.data_tag(get_task("mamujoco-halfcheetah-2x3-poor"))
    dataset = load_dataset(spec, scale=SCALE, forge_seed=0, verbose=False)
    assert dataset.provenance.protocol == "mamujoco" and dataset.provenance.n_episodes == 1
    assert dataset.provenance.params["behaviour"]["train_step"] == fm.behaviour("good").step
    assert dataset.ref_min_score < dataset.ref_max_score
    assert dataset.arrays["observations"].shape == (1000, 2, 12)
