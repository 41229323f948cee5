"""Locomotion forge: layout, episode flags, determinism, medium selection, the SAC trainer."""

import json
from itertools import pairwise

import numpy as np
import pytest
import torch
from tiny_sac import tiny_sac

import tasks.forge.locomotion as locomotion
from tasks.forge import forge, forged_path
from tasks.forge.collect import Phase, collect
from tasks.forge.locomotion import (
    export_policy_set,
    level_target,
    pick_expert,
    pick_medium,
    replay_schedule,
    snapshot_actors,
)
from tasks.forge.policies import BehaviourPoliciesMissingError, load_policy_set, policy_dir
from tasks.forge.sac import (
    Checkpoint,
    SACConfig,
    SACTrainer,
    evaluate_actor,
    load_actor,
    make_actor,
    save_actor_weights,
)
from tasks.hdf5 import read_hdf5_attrs
from tasks.registry import LOCOMOTION, get_task
from tasks.sources import load_dataset

SCALE = 0.002  # 2,000 transitions
FAKE_STEPS = (0, 1000, 2000, 3000, 4000)
FAKE_RETURNS = (10.0, 200.0, 900.0, 1500.0, 3000.0)  # medium = index 3 (closest to 1422)


def _fake_run(tmp_path, monkeypatch, total_steps: int):
    """A hopper SAC run directory of seeded untrained actors with ``FAKE_RETURNS``, planned for
    ``total_steps`` (more than ``FAKE_STEPS`` reach: a run still training), exported as the
    hopper policy set."""
    monkeypatch.setenv("DIFFRL_POLICY_DIR", str(tmp_path / "policies"))
    monkeypatch.setattr(locomotion, "POLICY_EVAL_EPISODES", 2)
    run = tmp_path / "run"
    (run / "actors").mkdir(parents=True)
    checkpoints = []
    for i, (step, ret) in enumerate(zip(FAKE_STEPS, FAKE_RETURNS, strict=True)):
        torch.manual_seed(i)
        path = save_actor_weights(make_actor("Hopper-v5"), run / "actors" / f"step{step}.st")
        checkpoints.append({"step": step, "path": f"actors/{path.name}", "mean_return": ret})
    config = {"env_id": "Hopper-v5", "checkpoint_every": 1000, "total_steps": total_steps}
    (run / "curve.json").write_text(json.dumps({"config": config, "checkpoints": checkpoints}))
    export_policy_set("hopper", run)
    return run


@pytest.fixture
def fake_policies(tmp_path, monkeypatch):
    """A hopper policy set exported from a finished fake SAC run."""
    return _fake_run(tmp_path, monkeypatch, total_steps=FAKE_STEPS[-1])


def test_pick_medium_is_closest_to_the_target_up_to_the_first_reaching_it():
    assert pick_medium([0, 100, 400, 1200, 3000], 1000) == 3
    assert pick_medium([0, 100, 950, 1400, 3000], 1000) == 2  # just below beats far above
    assert pick_medium([0, 1000, 2000], 1000) == 1  # reaching exactly counts
    assert pick_medium([0, 990, 10, 1500, 1001], 1000) == 1  # only up to the first crossing
    assert pick_medium([1000, 800, 1100], 1000) == 2  # the untrained actor never counts
    assert pick_medium([0, 10, 999], 1000) is None
    assert pick_medium([], 1000) is None


def test_pick_expert_is_the_first_reaching_the_target_or_the_last_once_finished():
    assert pick_expert([0, 100, 3600, 3000], 3500, finished=False) == 2
    assert pick_expert([0, 100, 3000], 3500, finished=False) is None
    assert pick_expert([0, 100, 3000], 3500, finished=True) == 2


def test_level_targets_are_the_d4rl_dataset_means():
    # mean episode returns of D4RL's hopper-medium-v2 and walker2d-expert-v2 files
    assert level_target("hopper", "medium") == pytest.approx(1422.06, abs=0.01)
    assert level_target("walker2d", "expert") == pytest.approx(4920.51, abs=0.01)
    for env in LOCOMOTION:
        assert level_target(env, "medium") < level_target(env, "expert")


def test_export_before_the_run_ends_ships_medium_and_replay_without_expert(tmp_path, monkeypatch):
    _fake_run(tmp_path, monkeypatch, total_steps=1_000_000)
    policies = load_policy_set("hopper")
    assert set(policies.manifest["policies"]) == {"random", "medium"}
    assert policies.manifest["policies"]["medium"]["train_step"] == 3000
    assert "step 4,000 of 1,000,000" in policies.manifest["provenance"]["expert"]
    forge(get_task("hopper-medium-replay-v2"), scale=SCALE, progress=False)
    for task in ("hopper-expert-v2", "hopper-medium-expert-v2"):
        with pytest.raises(BehaviourPoliciesMissingError, match="no shipped expert"):
            forge(get_task(task), scale=SCALE, progress=False)


def test_replay_schedule_is_dense_early_then_sparse():
    steps = list(range(0, 260_000, 10_000))
    schedule = replay_schedule(steps, medium_step=260_000)
    assert [s for s, _ in schedule] == [
        *range(0, 100_000, 10_000),
        100_000,
        150_000,
        200_000,
        250_000,
    ]
    assert schedule[-1] == (250_000, 10_000) and schedule[-2] == (200_000, 50_000)
    assert sum(c for _, c in schedule) == 260_000
    assert replay_schedule([0], 10_000) == [(0, 10_000)]


def test_snapshots_keep_the_picked_medium_actor_however_far_the_run_goes():
    """Hopper's medium pick (step 190k, closest to D4RL's 1422) lies between the replay
    schedule's 50k marks; a snapshot taken 800k steps later must still carry its actor, or the
    export at the end of the run cannot write the medium policy."""
    returns = {step: 1000.0 + step / 1000 for step in range(0, 1_000_001, 10_000)}
    returns[190_000], returns[200_000] = 1400.0, 1700.0  # 190k: closest below the first reaching
    checkpoints = [
        Checkpoint(step, f"actors/step{step:09d}.safetensors", mean)
        for step, mean in returns.items()
    ]
    kept = snapshot_actors("hopper", checkpoints)
    assert "actors/step000190000.safetensors" in kept
    assert "actors/step000180000.safetensors" not in kept  # neither replay, recent nor picked
    assert kept[-1] == "actors/step001000000.safetensors"


def test_export_picks_levels_and_replay_schedule(fake_policies):
    policies = load_policy_set("hopper")
    manifest = policies.manifest
    assert {k: v["train_step"] for k, v in manifest["policies"].items()} == {
        "random": 0,
        "medium": 3000,
        "expert": 4000,
    }
    replay = policies.replay()
    assert [(c.train_step, c.covers_steps) for c in replay] == [
        (0, 1000),
        (1000, 1000),
        (2000, 1000),
    ]
    assert manifest["replay"]["medium_step"] == 3000
    expected = load_actor(fake_policies / "actors" / "step3000.st")
    for key, value in policies.actor("medium").state_dict().items():
        torch.testing.assert_close(value, expected.state_dict()[key], rtol=0, atol=0)
    # replay checkpoints are stored in float16
    first = load_actor(fake_policies / "actors" / "step0.st").fc1.weight
    torch.testing.assert_close(replay[0].actor.fc1.weight, first.half().float(), rtol=0, atol=0)
    (policy_dir("hopper") / "expert.safetensors").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="sha256"):
        policies.actor("expert")


def test_layout_dtypes_and_provenance(fake_policies):
    spec = get_task("hopper-medium-v2")
    path = forge(spec, scale=SCALE, seed=0, progress=False)
    assert path == forged_path(spec, SCALE, 0)
    dataset = load_dataset(spec, scale=SCALE, forge_seed=0, verbose=False)
    a = dataset.arrays
    n = 2000
    shapes = {
        "observations": ((n, 11), np.float32),
        "actions": ((n, 3), np.float32),
        "rewards": ((n,), np.float32),
        "terminals": ((n,), np.bool_),
        "timeouts": ((n,), np.bool_),
        "next_observations": ((n, 11), np.float32),
        "infos/qpos": ((n, 6), np.float32),
        "infos/qvel": ((n, 6), np.float32),
        "infos/action_log_probs": ((n,), np.float32),
    }
    assert {k: (v.shape, v.dtype) for k, v in a.items()} == shapes
    assert np.abs(a["actions"]).max() <= 1.0
    assert dataset.provenance.source == "forged" and dataset.provenance.protocol == "locomotion"
    assert (dataset.ref_min_score, dataset.ref_max_score) == LOCOMOTION["hopper"][1:]
    attrs = read_hdf5_attrs(path)
    assert (attrs["seed"], attrs["scale"], attrs["task_id"]) == (0, SCALE, "hopper-medium-v2")
    part = attrs["params"]["parts"][0]
    assert part["policy"]["sha256"] == load_policy_set("hopper").describe("medium")["sha256"]
    assert part["policy"]["train_step"] == 3000 and attrs["params"]["transitions"] == n


def test_timeouts_are_time_limits_and_terminals_are_falls(fake_policies):
    actor = load_policy_set("hopper").actor("random")
    cheetah = make_actor("HalfCheetah-v5")
    a = collect("HalfCheetah-v5", [Phase(cheetah, 2200)], seed=0, n_envs=2)
    assert not a["terminals"].any()  # HalfCheetah never terminates
    # each slot runs 1100 steps: a 1000-step time limit, then the collection budget cut
    np.testing.assert_array_equal(np.flatnonzero(a["timeouts"]), [999, 1099, 2099, 2199])
    h = collect("Hopper-v5", [Phase(actor, 1000)], seed=0, n_envs=2)
    z, angle = h["next_observations"][:, 0], h["next_observations"][:, 1]
    fallen = (z <= 0.7) | (np.abs(angle) >= 0.2)  # Hopper-v5's healthy z and angle ranges
    assert h["terminals"].sum() >= 5  # the random hopper falls within a few dozen steps
    np.testing.assert_array_equal(h["terminals"], fallen)
    assert not (h["terminals"] & h["timeouts"]).any()
    lengths = np.diff(np.concatenate([[0], np.flatnonzero(h["terminals"] | h["timeouts"]) + 1]))
    assert lengths.max() < 1000 and lengths.sum() == 1000


def test_episode_boundaries_match_next_observations(fake_policies):
    spec = get_task("hopper-medium-replay-v2")
    a = locomotion.forge_locomotion(spec, scale=0.5, seed=1, progress=False)[0]
    assert len(a["observations"]) == 1500  # 3 replay checkpoints x 1000 steps x 0.5
    ends = a["terminals"] | a["timeouts"]
    inside = ~ends[:-1]
    np.testing.assert_array_equal(
        a["next_observations"][:-1][inside], a["observations"][1:][inside]
    )
    # a new episode starts from a reset state, not from the previous next observation
    assert (
        not np.isclose(a["next_observations"][:-1][~inside], a["observations"][1:][~inside])
        .all(1)
        .any()
    )
    assert ends[-1]
    # qpos/qvel are the state the observation was read from (Hopper: qpos[1:], clip(qvel, 10))
    np.testing.assert_allclose(a["observations"][:, :5], a["infos/qpos"][:, 1:], atol=1e-6)
    np.testing.assert_allclose(
        a["observations"][:, 5:], np.clip(a["infos/qvel"], -10, 10), atol=1e-6
    )


def test_forges_are_deterministic_and_medium_expert_concatenates(fake_policies):
    spec = get_task("hopper-medium-expert-v2")
    forge_fn = locomotion.forge_locomotion
    both = forge_fn(spec, scale=SCALE, seed=3, progress=False)[0]
    medium = forge_fn(get_task("hopper-medium-v2"), scale=SCALE, seed=3, progress=False)[0]
    expert = forge_fn(get_task("hopper-expert-v2"), scale=SCALE, seed=3, progress=False)[0]
    other = forge_fn(get_task("hopper-medium-v2"), scale=SCALE, seed=4, progress=False)[0]
    assert len(both["observations"]) == 4000
    # forged again (each half separately) with the same seed: the same bits
    for key, value in both.items():
        np.testing.assert_array_equal(value, np.concatenate([medium[key], expert[key]]), key)
    assert not np.array_equal(medium["actions"], other["actions"])
    assert not np.array_equal(medium["actions"], expert["actions"][: len(medium["actions"])])


def test_worker_processes_give_the_same_dataset(fake_policies):
    actor = load_policy_set("hopper").actor("medium")
    phases = [Phase(actor, 402)]  # uneven: two slots step once more than the others
    one = collect("Hopper-v5", phases, seed=5, n_envs=4, workers=1, group_size=2)
    two = collect("Hopper-v5", phases, seed=5, n_envs=4, workers=2, group_size=2)
    for key, value in one.items():
        np.testing.assert_array_equal(value, two[key], err_msg=key)


def test_missing_policies_say_how_to_train_them(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRL_POLICY_DIR", str(tmp_path / "none"))
    with pytest.raises(BehaviourPoliciesMissingError) as err:
        forge(get_task("walker2d-medium-v2"), scale=SCALE, progress=False)
    text = str(err.value)
    assert "python -m bench.forge task=walker2d-medium-v2 forge.retrain=true" in text
    assert " h on a shared 2-core CPU" in text and "walker2d-random-v2" in text


@pytest.mark.usefixtures("one_thread")
def test_sac_critic_loss_falls_and_actor_value_rises(tmp_path):
    trainer = SACTrainer(tiny_sac(hidden=64, batch_size=64), tmp_path / "run")
    for _ in range(500):
        trainer.collect_step()
    metrics = torch.stack([trainer.update() for _ in range(300)])
    critic, actor = metrics[:, 0], metrics[:, 1]
    assert critic[-30:].mean() < 0.5 * critic[:30].mean()
    assert actor[-30:].mean() < actor[:30].mean()  # actor loss = alpha logp - Q falls


@pytest.mark.usefixtures("one_thread")
def test_sac_resumes_bit_for_bit(tmp_path, monkeypatch):
    cfg = tiny_sac()
    straight = SACTrainer(cfg, tmp_path / "straight")
    straight.train(progress=False)

    original = SACTrainer.save_state

    def save_then_crash(self):
        path = original(self)
        if self.step == 200:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(SACTrainer, "save_state", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        SACTrainer(cfg, tmp_path / "resumed").train(progress=False)
    monkeypatch.setattr(SACTrainer, "save_state", original)
    resumed = SACTrainer(cfg, tmp_path / "resumed")
    resumed.train(progress=False)
    assert resumed.step == straight.step == 300
    for key, value in straight.critic.state_dict().items():
        torch.testing.assert_close(resumed.critic.state_dict()[key], value, rtol=0, atol=0)
    for key, value in straight.actor.state_dict().items():
        torch.testing.assert_close(resumed.actor.state_dict()[key], value, rtol=0, atol=0)
    assert [c.mean_return for c in resumed.checkpoints] == [
        c.mean_return for c in straight.checkpoints
    ]
    assert len(list((tmp_path / "resumed").glob("state-*.safetensors"))) == 1
    actors = sorted(p.name for p in (tmp_path / "resumed" / "actors").iterdir())
    assert actors == [f"step{s:09d}.safetensors" for s in (0, 100, 200, 300)]


def _shipped_levels(env: str) -> list[str]:
    manifest = policy_dir(env) / "policies.json"
    names = json.loads(manifest.read_text())["policies"] if manifest.exists() else {}
    return [name for name in ("random", "medium", "expert") if name in names]


@pytest.mark.usefixtures("one_thread")
def test_sac_stops_at_until_and_resumes_bit_for_bit(tmp_path):
    cfg = tiny_sac()
    straight = SACTrainer(cfg, tmp_path / "straight")
    straight.train(progress=False)
    stopped = SACTrainer(cfg, tmp_path / "stopped")
    stopped.train(progress=False, until=lambda checkpoints: checkpoints[-1].step >= 100)
    assert stopped.step == 100
    assert json.loads((tmp_path / "stopped" / "state.json").read_text())["step"] == 100
    resumed = SACTrainer(cfg, tmp_path / "stopped")
    resumed.train(progress=False)
    assert resumed.step == 300
    for key, value in straight.actor.state_dict().items():
        torch.testing.assert_close(resumed.actor.state_dict()[key], value, rtol=0, atol=0)


SHIPPED = [env for env in LOCOMOTION if len(_shipped_levels(env)) >= 2]


@pytest.mark.skipif(not SHIPPED, reason="no trained behaviour policies are shipped yet")
@pytest.mark.parametrize("env", SHIPPED)
def test_shipped_expert_beats_medium_beats_random(env):
    """Every shipped level beats the one below it (expert only once its run has ended)."""
    policies = load_policy_set(env)
    env_id = LOCOMOTION[env][0]
    returns = [
        evaluate_actor(policies.actor(name), env_id, episodes=4, seed=7).mean()
        for name in _shipped_levels(env)
    ]
    assert all(lo < hi for lo, hi in pairwise(returns)), returns


def test_shipped_random_policy_is_where_a_seed_0_sac_run_starts(tmp_path):
    for env, (env_id, _, _) in LOCOMOTION.items():
        shipped = load_policy_set(env).actor("random")
        trainer = SACTrainer(SACConfig(env_id=env_id, total_steps=10), tmp_path / env)
        for key, value in trainer.actor.state_dict().items():
            torch.testing.assert_close(shipped.state_dict()[key], value, rtol=0, atol=0)
        trainer.close()


def test_forged_file_names_carry_the_policy_tag(fake_policies):
    medium = get_task("hopper-medium-v2")
    path = forged_path(medium, SCALE)
    assert path.stem.endswith("-" + locomotion.data_tag(medium))
    assert path != forged_path(get_task("hopper-expert-v2"), SCALE)
    manifest_path = policy_dir("hopper") / "policies.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["policies"]["medium"]["sha256"] = "0" * 64  # as after retraining the medium policy
    manifest_path.write_text(json.dumps(manifest))
    assert forged_path(medium, SCALE) != path
    assert forged_path(get_task("hopper-expert-v2"), SCALE).name.count("-") == 2
