"""The online phase (:mod:`bench.online`) through ``bench.run``, with DPPO on the toy bandit.

A tiny DPPO pre-trains for 20 steps, then fine-tunes for 4 iterations of 50 one-action decisions
in 4 envs (800 env steps), evaluating at 400: the record keeps the pre-trained evaluation, the
curve from env step 0 to the final evaluation, and the budget. A run killed during the online
phase resumes from its last iteration to the uninterrupted run's record; an env that cannot be
snapshotted resumes from seeded resets and says so.
"""

from __future__ import annotations

import csv

import pytest

import bench.online
from bench.checks import ConfigError, check_online
from bench.run import config_hash, run_overrides
from tasks.online_envs import SnapshotError

TINY_DPPO = [
    "algo=dppo",
    "task=toy-bandit",
    "data.scale=0.2",
    "train.steps=20",
    "train.eval_every=0",
    "train.checkpoint_every=10",
    "eval.episodes=4",
    "eval.periodic_episodes=2",
    "online.n_envs=4",
    "online.env_steps=800",
    "online.eval_every=400",
    "device=cpu",
    "threads=1",
    "algo.horizon=1",
    "algo.act_steps=1",
    "algo.hidden=16",
    "algo.critic_hidden=16",
    "algo.n_diffusion_steps=4",
    "algo.ft_denoising_steps=2",
    "algo.batch_size=16",
    "algo.rollout_steps=50",
    "algo.ft_batch_size=100",
]
RESULTS_KEYS = ("curve", "losses", "iterations_done", "env_steps_done", "episodes_done")


class Killed(BaseException):
    """SIGKILL's stand-in: not an ``Exception``, so no record is written on the way out."""


def dying_collect(after: int):
    """:func:`bench.online.collect` killed when asked for iteration ``after + 1``."""
    collect, calls = bench.online.collect, iter(range(1, 10**6))

    def collect_or_die(*args, **kwargs):
        if next(calls) > after:
            raise Killed
        return collect(*args, **kwargs)

    return collect_or_die


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("reference")


@pytest.fixture(scope="module")
def reference(reference_dir):
    return run_overrides([*TINY_DPPO, f"results_dir={reference_dir}"])


def test_the_record_keeps_pretrained_curve_final_and_budget(reference):
    record, online = reference, reference["online"]
    assert record["status"] == "completed"
    assert (online["n_envs"], online["env_steps"], online["eval_every"]) == (4, 800, 400)
    assert (online["act_steps"], online["rollout_steps"], online["iterations"]) == (1, 50, 4)
    assert online["iterations_done"] == 4 and online["env_steps_done"] == 800
    assert online["episodes_done"] == 800  # every bandit episode is one step
    assert [p["env_steps"] for p in online["curve"]] == [0, 400, 800]
    assert [p["episodes"] for p in online["curve"]] == [4, 2, 4]
    assert online["curve"][0]["return_mean"] == online["pretrained"]["return_mean"]
    assert online["curve"][-1]["return_mean"] == record["final"]["return_mean"]
    assert [row["iteration"] for row in online["losses"]] == [0, 1, 2, 3]
    # The final evaluation starts from the pre-trained evaluation's states: a paired gain.
    assert len(record["final"]["returns"]) == len(online["pretrained"]["returns"]) == 4
    assert online["env_resume"] == "snapshot"


def test_a_run_killed_online_resumes_to_the_same_record(reference, tmp_path, monkeypatch):
    args = [*TINY_DPPO, f"results_dir={tmp_path}"]
    with monkeypatch.context() as mp:
        mp.setattr(bench.online, "collect", dying_collect(3))
        with pytest.raises(Killed):
            run_overrides(args)
    assert not list(tmp_path.rglob("record.json")), "a killed run left a record"
    resumed = run_overrides(args)
    assert resumed["status"] == "completed" and resumed["resumed"] == 1
    for key in RESULTS_KEYS:
        assert resumed["online"][key] == reference["online"][key], key
    assert resumed["online"]["pretrained"] == reference["online"]["pretrained"]
    assert resumed["final"]["returns"] == reference["final"]["returns"]


def test_an_env_without_snapshot_resumes_from_seeded_resets(tmp_path, monkeypatch):
    def no_snapshot(env):
        raise SnapshotError("not here")

    monkeypatch.setattr(bench.online, "snapshot_env", no_snapshot)
    args = [*TINY_DPPO, f"results_dir={tmp_path}"]
    with monkeypatch.context() as mp:
        mp.setattr(bench.online, "collect", dying_collect(2))
        with pytest.raises(Killed):
            run_overrides(args)
    resumed = run_overrides(args)
    assert resumed["status"] == "completed" and resumed["online"]["env_resume"] == "seeded-reset"
    assert resumed["online"]["iterations_done"] == 4


def test_the_leaderboard_shows_pretrained_finetuned_and_gain(reference, reference_dir, tmp_path):
    from bench import leaderboard

    leaderboard.build(reference_dir, tmp_path, plots=False)
    rows = list(csv.DictReader((tmp_path / "offline_to_online.csv").open()))
    assert len(rows) == 1 and rows[0]["algo"] == "dppo"
    pretrained = reference["online"]["pretrained"]["normalized_mean"]
    final = reference["final"]["normalized_mean"]
    assert rows[0]["pre-trained"] == f"{pretrained:.1f} (n=1)"
    assert rows[0]["fine-tuned"] == f"{final:.1f} (n=1)"
    assert rows[0]["gain"] == f"{final - pretrained:.1f} (n=1)"
    assert (rows[0]["env steps"], rows[0]["envs"]) == ("800", "4")


def test_plots_put_the_online_phase_on_its_own_axis(reference, reference_dir, tmp_path):
    """The online curve is drawn against env steps; a training-step curve of an online run ends
    at the pre-trained score, never at the fine-tuned final (a point of the other axis)."""
    from bench import leaderboard
    from bench.leaderboard.plots import offline_end_score

    leaderboard.build(reference_dir, tmp_path, plots=True)
    pngs = {p.name for p in (tmp_path / "plots").rglob("*.png")}
    assert "online_curves.png" in pngs
    assert "online_curves.png" in (tmp_path / "leaderboard.md").read_text()
    pretrained = reference["online"]["pretrained"]["normalized_mean"]
    assert offline_end_score(reference, reference["final"]["normalized_mean"]) == pretrained
    assert offline_end_score({"online": None}, 12.5) == 12.5


def test_online_knobs_change_the_hash_of_online_algorithms_only():
    base = {"task": "toy-bandit", "seed": 0, "train": {"steps": 10}}
    online = {**base, "online": {"n_envs": 4, "env_steps": 800, "eval_every": 0}}
    assert config_hash(online, "bc", {}) == config_hash(base, "bc", {})
    assert config_hash(online, "dppo", {}) != config_hash(base, "dppo", {})
    assert bench.online.is_online_algorithm("dppo")
    assert not bench.online.is_online_algorithm("idql")


@pytest.mark.parametrize(
    ("knobs", "named"),
    [
        ({"n_envs": 0, "env_steps": 10, "eval_every": 0}, "online.n_envs=0"),
        ({"n_envs": 2, "env_steps": 1.5, "eval_every": 0}, "online.env_steps=1.5"),
        ({"n_envs": 2, "env_steps": 10, "eval_every": -1}, "online.eval_every=-1"),
    ],
)
def test_bad_online_knobs_are_named(knobs, named):
    with pytest.raises(ConfigError, match=named):
        check_online(knobs)
    check_online({"n_envs": 2, "env_steps": 10, "eval_every": 0})
