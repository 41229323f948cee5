"""The multi-agent MPE forge at a cheap scale (spread, tag, world): layout with an agents axis,
provenance, levels, determinism, loading through the data sources, and the reference scores
(random policy and scripted controller, whatever the scale)."""

import numpy as np
import pytest

from bench.multiagent import evaluate_multiagent
from tasks.forge import forge, forged_path
from tasks.forge.multiagent import DATA_TAG, pick_medium, team_return
from tasks.hdf5 import read_d4rl_hdf5, read_hdf5_attrs
from tasks.multiagent import scripted_controller
from tasks.registry import get_task
from tasks.sources import load_dataset

SCALE = 0.001  # 40 MATD3 episodes, 1000 transitions per rollout level: seconds


@pytest.mark.parametrize(("scenario", "obs_dim"), [("spread", 18), ("tag", 16), ("world", 24)])
def test_levels_forge_with_an_agents_axis_and_provenance(scenario, obs_dim):
    """All four levels of a scenario (one MATD3 run serves them, so they share a test)."""
    for level in ("random", "medium", "medium-replay", "expert"):
        path = forge(get_task(f"mpe-{scenario}-{level}"), scale=SCALE, seed=0, progress=False)
        check_level(read_d4rl_hdf5(path), read_hdf5_attrs(path), scenario, obs_dim, level)


def check_level(arrays, attrs, scenario, obs_dim, level):
    n = len(arrays["observations"])
    assert arrays["observations"].shape == (n, 3, obs_dim)
    assert arrays["next_observations"].shape == (n, 3, obs_dim)
    assert arrays["actions"].shape == (n, 3, 2) and np.abs(arrays["actions"]).max() <= 1.0
    assert arrays["rewards"].shape == (n, 3)
    assert arrays["terminals"].shape == (n,) and not arrays["terminals"].any()
    ends = np.flatnonzero(arrays["timeouts"]) + 1
    assert ends[-1] == n and set(np.diff(np.r_[0, ends])) <= {25}  # whole 25-step episodes
    # a step's next observation is the following row's observation within an episode
    inner = np.setdiff1d(np.arange(n - 1), ends - 1)
    np.testing.assert_array_equal(
        arrays["next_observations"][inner], arrays["observations"][inner + 1]
    )
    params = attrs["params"]
    assert attrs["protocol"] == "mpe" and params["level"] == level and params["n_agents"] == 3
    assert params["scenario"] == scenario
    assert ("predator 0" in params["metric"]) == (scenario != "spread")
    assert params["behaviour"] == "MATD3" and len(params["checkpoint_returns"]) >= 2
    assert attrs["ref_max_score"] > attrs["ref_min_score"]
    assert params["ref_max_policy"].startswith("scripted controller")
    assert params["expert_score"] == params["checkpoint_returns"][params["expert_checkpoint"]]
    if level != "medium-replay":
        assert n == 1000


def test_medium_replay_is_the_buffer_up_to_the_medium_checkpoint():
    spec = get_task("mpe-spread-medium-replay")
    arrays = read_d4rl_hdf5(forge(spec, scale=SCALE, seed=0, progress=False))
    params = read_hdf5_attrs(forged_path(spec, SCALE, 0))["params"]
    medium = params["medium_checkpoint"]
    assert medium >= 1
    assert len(arrays["observations"]) == 25 * params["checkpoint_episodes"][medium]


def test_the_forge_is_deterministic_for_a_seed(tmp_path, monkeypatch):
    spec = get_task("mpe-spread-medium")
    first = read_d4rl_hdf5(forge(spec, scale=SCALE, seed=3, progress=False))
    monkeypatch.setenv("DIFFRL_DATA_DIR", str(tmp_path))  # a fresh cache: trained again
    second = read_d4rl_hdf5(forge(spec, scale=SCALE, seed=3, progress=False))
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_sources_forge_on_first_use_and_read_the_reference_scores():
    dataset = load_dataset(get_task("mpe-spread-expert"), scale=SCALE, forge_seed=0, verbose=False)
    assert dataset.provenance.source == "forged" and dataset.provenance.protocol == "mpe"
    assert dataset.provenance.n_episodes == 40
    attrs = read_hdf5_attrs(dataset.provenance.path)
    assert (dataset.ref_min_score, dataset.ref_max_score) == (
        attrs["ref_min_score"],
        attrs["ref_max_score"],
    )


def test_pick_medium_takes_a_trained_checkpoint_near_the_target():
    assert pick_medium([10.0, 20.0, 55.0, 90.0, 100.0], 55.0) == 2
    assert pick_medium([10.0, 40.0, 70.0], 50.0) == 1  # 40 is nearer than 70
    assert pick_medium([100.0, 5.0, 6.0], 100.0) == 2  # none reaches it: the nearest trained one


@pytest.mark.parametrize("scenario", ["tag", "world"])
def test_predator_data_carry_the_predators_shared_reward(scenario):
    """Tag's and world's rewards are every predator's shared reward, the data's rows consistent
    with replaying their observations in the port (the prey is scripted, so not in the data)."""
    arrays = read_d4rl_hdf5(forge(get_task(f"mpe-{scenario}-random"), SCALE, 0, progress=False))
    rewards = arrays["rewards"]
    np.testing.assert_array_equal(rewards, np.repeat(rewards[:, :1], 3, axis=1))
    # the shaping term: -0.1 * the summed predator-prey distances, read from the observations
    prey_at = {"tag": slice(12, 14), "world": slice(18, 20)}[scenario]
    prey_rel = arrays["next_observations"][:, :, prey_at]
    shaping = -0.1 * np.linalg.norm(prey_rel, axis=-1).sum(-1)
    catch = {"tag": 10.0, "world": 5.0}[scenario]
    bonus = rewards[:, 0] - shaping
    np.testing.assert_allclose(bonus / catch, np.round(bonus / catch), atol=1e-4)


class PolicyAgent:
    """The slice of the agent contract the multi-agent evaluator calls."""

    def __init__(self, policy):
        self.policy = policy

    def act(self, obs):
        return self.policy(obs)

    def reset(self, done=None):
        pass


@pytest.mark.parametrize("scenario", ["spread", "tag", "world"])
def test_references_are_the_scripted_controller_and_the_random_policy(scenario):
    """Through the harness's evaluator the controller normalizes to 100 on the reference episodes
    (100 from seed 123) and a uniform random agent near 0."""
    spec = get_task(f"mpe-{scenario}-random")
    attrs = read_hdf5_attrs(forge(spec, scale=SCALE, seed=0, progress=False))
    ref_min, ref_max = attrs["ref_min_score"], attrs["ref_max_score"]
    assert ref_max == team_return(scenario, scripted_controller(scenario))
    controller = evaluate_multiagent(
        PolicyAgent(scripted_controller(scenario)), spec, 100, 123, ref_min, ref_max
    )
    assert controller.normalized.mean() == pytest.approx(100.0)
    rng = np.random.default_rng(1)
    random = PolicyAgent(lambda obs: rng.uniform(-1, 1, (*obs.shape[:-1], 2)))
    result = evaluate_multiagent(random, spec, 50, 1000, ref_min, ref_max)
    assert abs(result.normalized.mean()) < 10


def test_references_do_not_depend_on_the_scale():
    """Two scales train different MATD3 runs but share the references (at these scales the
    MATD3 "expert" is no better than the untrained actors: it could not serve as the max)."""
    spec = get_task("mpe-spread-random")
    attrs = [
        read_hdf5_attrs(forge(spec, scale=scale, seed=0, progress=False))
        for scale in (SCALE, 2 * SCALE)
    ]
    assert attrs[0]["params"]["checkpoint_episodes"] != attrs[1]["params"]["checkpoint_episodes"]
    for key in ("ref_min_score", "ref_max_score"):
        assert attrs[0][key] == attrs[1][key]


def test_forged_files_are_named_by_the_reference_version():
    """Files forged before the scripted references (no tag) are never read as current ones."""
    path = forged_path(get_task("mpe-tag-medium"), 0.01, 0)
    assert path.name == f"scale0.01-seed0-{DATA_TAG}.hdf5"
