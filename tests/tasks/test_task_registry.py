"""The registry: ids, D4RL constants and file names, and the unknown-task error."""

import pytest

from tasks.registry import get_task, list_tasks
from tasks.spec import UnknownTaskError


def test_registry_lists_every_family():
    ids = list_tasks()
    for env in ("hopper", "halfcheetah", "walker2d"):
        for level in ("random", "medium", "medium-replay", "medium-expert", "expert"):
            assert f"{env}-{level}-v2" in ids
    for maze in ("umaze", "medium", "large"):
        assert f"maze2d-{maze}-v1" in ids
        assert f"pointmaze-{maze}" in ids
    assert "toy-bandit" in ids
    for level in ("expert", "medium", "medium-replay", "random"):
        for scenario in ("spread", "tag", "world"):
            assert f"mpe-{scenario}-{level}" in ids
    safe = {"velocity": 9, "ceiling": 4, "obstacles": 3, "safe": 2}
    for prefix, count in safe.items():
        assert sum(i.startswith(prefix + "-") for i in ids) == count
    assert len(ids) == 22 + 12 + 3 + sum(safe.values()) and ids == sorted(ids)  # 3: MaMuJoCo


def test_locomotion_specs_carry_d4rl_constants_and_files():
    spec = get_task("hopper-medium-replay-v2")
    assert (spec.env_id, spec.max_episode_steps) == ("Hopper-v5", 1000)
    assert (spec.ref_min_score, spec.ref_max_score) == (-20.272305, 3234.3)
    assert spec.d4rl_file == "hopper_medium_replay-v2.hdf5"
    assert spec.minari_id is None and not spec.cheap_forge
    assert get_task("walker2d-medium-v2").minari_id == "mujoco/walker2d/medium-v0"
    assert get_task("halfcheetah-expert-v2").ref_min_score == -280.178953


def test_maze_specs():
    spec = get_task("maze2d-large-v1")
    assert (spec.ref_min_score, spec.ref_max_score, spec.max_episode_steps) == (6.7, 273.99, 800)
    assert spec.d4rl_file == "maze2d-large-sparse-v1.hdf5"
    assert spec.minari_id == "D4RL/pointmaze/large-v2"
    point = get_task("pointmaze-medium")
    assert point.obs_keys == ("observation", "desired_goal") and point.goal_dims == (4, 5)
    assert point.env_kwargs["continuing_task"] and not point.env_kwargs["reset_target"]
    assert point.ref_min_score is None and point.cheap_forge and point.success_key == "success"


def test_unknown_task_lists_valid_ids():
    with pytest.raises(UnknownTaskError) as err:
        get_task("hopper-mediun-v2")
    text = str(err.value)
    assert "'hopper-mediun-v2'" in text
    assert "hopper-medium-v2" in text and "pointmaze-umaze" in text


@pytest.mark.parametrize(
    ("task", "limit"),
    [
        ("ceiling-hopper-medium-v2", 1.5),
        ("ceiling-hopper-medium-expert-v2", 1.5),
        ("ceiling-walker2d-medium-v2", 1.3),
        ("ceiling-walker2d-medium-expert-v2", 1.3),
    ],
)
def test_torso_ceilings_are_safediffusers_official_heights(task, limit):
    """Weixy21/SafeDiffuser branch ``locomotion``, diffuser/models/diffusion.py:
    ``invariance_hopper`` height 1.5, ``invariance`` (walker2d) 1.3, on the torso height rootz."""
    (ceiling,) = get_task(task).safety.barriers
    assert (ceiling.dim, ceiling.limit, ceiling.upper) == (0, limit, True)


@pytest.mark.parametrize("scenario", ["spread", "tag", "world"])
def test_mpe_specs_name_their_scenario_and_forge(scenario):
    spec = get_task(f"mpe-{scenario}-medium-replay")
    assert (spec.kind, spec.forge, spec.max_episode_steps) == ("multi-agent", "mpe", 25)
    assert spec.env_kwargs == {"scenario": scenario} and spec.cheap_forge
    assert spec.forge_params == {"scenario": scenario, "level": "medium-replay"}
