"""The harness end to end on the toy bandit: records, no-op re-runs, resume, bad input."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import types
import typing
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.leaderboard import build
from bench.records import SCHEMA_VERSION, RunRecord, read_record
from bench.run import CHECKPOINT_FILE, run_overrides

TINY = ["task=toy-bandit", "train.steps=300", "train.eval_every=100", "train.log_every=50"]
TINY += ["eval.episodes=20", "eval.periodic_episodes=5", "data.scale=0.2"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*"))


def schema_mismatches(cls: type, value: dict, where: str = "record") -> list[str]:
    """Where ``value`` (a record as JSON) has other keys than the dataclass ``cls`` declares."""
    names = {f.name for f in dataclasses.fields(cls)}
    out = [f"{where}: {sorted(set(value) ^ names)}"] if set(value) != names else []
    for name, hint in typing.get_type_hints(cls).items():
        optional = typing.get_origin(hint) is types.UnionType  # ``X | None``
        item = typing.get_args(hint)[0] if optional else hint
        sub = value.get(name)
        if typing.get_origin(item) is list and dataclasses.is_dataclass(typing.get_args(item)[0]):
            for i, v in enumerate(sub or []):
                out += schema_mismatches(typing.get_args(item)[0], v, f"{where}.{name}[{i}]")
        elif dataclasses.is_dataclass(item) and sub is not None:
            out += schema_mismatches(item, sub, f"{where}.{name}")
    return out


def test_record_is_self_describing(tmp_path):
    rec = run_overrides(["algo=bc", *TINY, f"results_dir={tmp_path}"])
    assert rec["status"] == "completed" and rec["failure_reason"] is None
    assert rec["dataset"]["source"] == "forged" and len(rec["dataset"]["sha256"]) == 64
    assert rec["budget"] == {
        "name": "quick",
        "train_steps": 300,
        "batch_size": 256,
        "eval_episodes": 20,
    }
    assert len(rec["final"]["returns"]) == 20 and rec["final"]["step"] == 300
    assert [p["step"] for p in rec["curve"]] == [100, 200]
    assert rec["best"]["note"].startswith("optimistic")
    assert rec["timings"]["train_steps_per_s"] > 0 and rec["timings"]["decisions_per_s"] > 0
    assert rec["versions"]["torch"] and rec["env"]["id"]
    assert rec["timings"]["wall_seconds"] >= rec["timings"]["train_seconds"] > 0
    assert set(rec["config"]["algo_resolved"]) == set(rec["config"]["algo"])  # one Config, resolved
    on_disk = read_record(tmp_path / rec["run_id"] / "record.json")
    assert on_disk == json.loads(json.dumps(rec))
    # the schema is the dataclass: every key it declares is written, nothing else
    assert on_disk["schema_version"] == SCHEMA_VERSION == 2
    assert schema_mismatches(RunRecord, on_disk) == []
    assert RunRecord.from_dict(on_disk).to_dict() == on_disk


def test_completed_run_is_not_rerun_unless_forced(tmp_path):
    first = run_overrides(["algo=bc", *TINY, f"results_dir={tmp_path}"])
    again = run_overrides(["algo=bc", *TINY, f"results_dir={tmp_path}"])
    assert again["finished"] == first["finished"]
    time.sleep(1.1)
    forced = run_overrides(["algo=bc", *TINY, f"results_dir={tmp_path}", "force=true"])
    assert forced["finished"] != first["finished"]


def test_same_seed_same_score_on_cpu(tmp_path):
    a = run_overrides(["algo=iql", *TINY, f"results_dir={tmp_path / 'a'}", "device=cpu"])
    b = run_overrides(["algo=iql", *TINY, f"results_dir={tmp_path / 'b'}", "device=cpu"])
    assert a["final"]["returns"] == b["final"]["returns"]
    assert a["losses"] == b["losses"]


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    steps = ["train.steps=1200", "train.checkpoint_every=100", "train.eval_every=400"]
    args = ["algo=iql", *TINY, *steps, "device=cpu"]
    reference = run_overrides([*args, f"results_dir={tmp_path / 'ref'}"])

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.run", *args, f"results_dir={out}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not list(out.rglob("checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(out.rglob("record.json")), "the run finished before it could be killed"

    resumed = run_overrides([*args, f"results_dir={out}"])
    assert resumed["status"] == "completed" and resumed["resumed"] == 1
    assert resumed["losses"] == reference["losses"]
    assert resumed["final"]["returns"] == reference["final"]["returns"]


def test_a_run_killed_under_schema_1_resumes_and_writes_schema_2(tmp_path):
    """A checkpoint whose record is a version-1 dict (keys that did not apply left out)."""
    args = ["algo=bc", *TINY, "train.steps=50", "train.eval_every=25", "eval.episodes=2"]
    args.append(f"results_dir={tmp_path}")
    first = run_overrides(args)
    run_dir = tmp_path / first["run_id"]
    checkpoint = torch.load(run_dir / CHECKPOINT_FILE, weights_only=False)
    v1 = {k: v for k, v in checkpoint["record"].items() if k != "safety"}
    v1.update(schema_version=1, status="running", final=None, timings={}, memory={})
    v1["curve"] = [{k: v for k, v in p.items() if v is not None} for p in v1["curve"]]
    torch.save({**checkpoint, "record": v1}, run_dir / CHECKPOINT_FILE)
    (run_dir / "record.json").unlink()  # killed during the final evaluation

    resumed = run_overrides(args)
    assert resumed["status"] == "completed" and resumed["resumed"] == 1
    assert resumed["schema_version"] == 2 and resumed["safety"] is None
    assert resumed["losses"] == first["losses"] and resumed["curve"] == first["curve"]
    assert resumed["final"]["returns"] == first["final"]["returns"]
    assert schema_mismatches(RunRecord, read_record(run_dir / "record.json")) == []


def test_unknown_algorithm_lists_valid_ones_and_writes_nothing(tmp_path):
    res = cli("algo=nope", f"results_dir={tmp_path / 'r'}", cwd=tmp_path)
    assert res.returncode != 0
    assert "nope" in res.stderr and "idql" in res.stderr and "iql" in res.stderr
    assert files_under(tmp_path) == []


def test_unknown_task_lists_valid_ones_and_writes_nothing(tmp_path):
    res = cli("task=nope-v0", f"results_dir={tmp_path / 'r'}", cwd=tmp_path)
    assert res.returncode == 2
    assert "nope-v0" in res.stderr and "pointmaze-umaze" in res.stderr
    assert files_under(tmp_path) == []


def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    # with no behaviour policies shipped, nothing forges a locomotion level on first use
    monkeypatch.setenv("DIFFRL_POLICY_DIR", str(tmp_path / "no-policies"))
    res = cli("task=hopper-medium-v2", f"results_dir={tmp_path / 'r'}", cwd=tmp_path)
    assert res.returncode == 2
    assert "hopper_medium-v2.hdf5" in res.stderr and "bench.forge" in res.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("algo", ["bc"])
def test_cfg_job_prints_the_resolved_config(tmp_path, algo):
    res = cli(f"algo={algo}", "--cfg", "job", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "train:" in res.stdout and "steps: 5000" in res.stdout and "algo:" in res.stdout
    assert files_under(tmp_path) == []


def test_algorithm_overrides_get_their_own_run_directory(tmp_path):
    short = [*TINY, "train.steps=50", "eval.episodes=2", f"results_dir={tmp_path}"]
    default = run_overrides(["algo=bc", *short])
    tuned = run_overrides(["algo=bc", "algo.lr=0.001", *short])
    assert default["run_id"] != tuned["run_id"]
    assert tuned["config"]["algo"]["lr"] == 0.001


def test_diverged_run_is_recorded_as_failed_without_a_score(tmp_path):
    rec = run_overrides(["algo=iql", "algo.lr=1e30", *TINY, f"results_dir={tmp_path}"])
    assert rec["status"] == "failed" and "non-finite" in rec["failure_reason"]
    assert rec["final"] is None and rec["best"] is None
    assert read_record(tmp_path / rec["run_id"] / "record.json")["status"] == "failed"


def test_safe_task_record_reports_cost_budget_and_barriers(tmp_path):
    safe = ["algo=bc", "task=obstacles-pointmaze-umaze", "data.scale=0.01", "train.steps=100"]
    safe += ["train.eval_every=1000", "eval.episodes=6", f"results_dir={tmp_path}"]
    rec = run_overrides(safe)
    assert rec["status"] == "completed"
    assert rec["safety"]["cost"] == "barrier" and rec["safety"]["budget"] == 0.0
    final = rec["final"]
    assert len(final["costs"]) == 6 and final["cost_budget"] == 0.0
    assert final["over_budget_rate"] == sum(c > 0 for c in final["costs"]) / 6
    assert final["barrier_min_executed"] <= 1.0
    relaxed = run_overrides([*safe, "safety.budget=3"])
    assert relaxed["safety"]["budget"] == 3.0 and relaxed["run_id"] != rec["run_id"]
    assert relaxed["final"]["cost_budget"] == 3.0
    board = build(tmp_path, tmp_path / "reports", plots=False)
    safety_rows = board.split("## Safe tasks")[1].split("##")[0]
    assert safety_rows.count("obstacles-pointmaze-umaze") == 2


@pytest.mark.parametrize(
    ("knob", "named"),
    [
        ("train.steps=0", "train.steps=0 is not valid; valid: a positive integer"),
        ("data.source=ftp", "data.source='ftp' is not valid; valid: auto, d4rl, minari, forged"),
        ("algo.reward_norm=bogus", "algo.reward_norm='bogus' is not valid; valid: returns"),
    ],
)
def test_bad_knobs_fail_in_one_line_and_leave_nothing(tmp_path, knob, named):
    res = cli("algo=iql", *TINY, knob, f"results_dir={tmp_path / 'r'}", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert named in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()


def test_eval_every_zero_means_no_periodic_evaluation(tmp_path):
    rec = run_overrides(["algo=bc", *TINY, "train.eval_every=0", f"results_dir={tmp_path}"])
    assert rec["status"] == "completed" and rec["curve"] == [] and rec["best"] is None
    assert rec["final"]["episodes"] == 20 and rec["timings"]["threads"] >= 1


def test_an_unexpected_error_is_one_line_with_the_traceback_beside_it(tmp_path, monkeypatch):
    def explode(self, batch):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("algorithms.bc.Agent.update", explode)
    with pytest.raises(RuntimeError, match="boom"):
        run_overrides(["algo=bc", *TINY, f"results_dir={tmp_path}"])
    (path,) = tmp_path.rglob("record.json")
    rec = read_record(path)
    assert rec["status"] == "failed" and rec["failure_reason"] == "RuntimeError: boom second line"
    assert "Traceback" in rec["failure_traceback"] and "explode" in rec["failure_traceback"]


def test_data_that_does_not_fit_the_environment_is_refused_before_training(tmp_path):
    from bench.run import check_widths
    from tasks.envs import make_env
    from tasks.registry import get_task
    from tasks.sources import load_dataset
    from tasks.spec import DatasetFormatError

    spec = get_task("toy-bandit")
    dataset = load_dataset(spec, scale=0.2, verbose=False)
    obs = dataset.arrays["observations"]
    dataset.arrays["observations"] = np.concatenate([obs, obs], axis=1)  # another task's file
    env = make_env(spec)
    with pytest.raises(DatasetFormatError, match=f"observations are {2 * obs.shape[1]} wide"):
        check_widths(spec, dataset, env)
    env.close()


def composed(*overrides: str):
    """The CLI's config for ``overrides``, as ``bench.run`` composes it."""
    import hydra

    with hydra.initialize_config_module("bench.conf", version_base="1.3"):
        return hydra.compose("config", overrides=list(overrides))


def test_a_budget_gives_an_algorithm_its_stated_settings_and_the_command_line_wins():
    """budget=quick gives the planners their small network and run (budget_algo/quick-*.yaml);
    other budgets and other algorithms keep theirs; command-line keys override the budget's."""
    quick = composed("algo=diffuser")
    assert (quick.train.steps, quick.data.scale, quick.algo.dim) == (3000, 0.05, 16)
    assert composed("algo=trebi").eval.episodes == 6
    assert composed("algo=idql").algo.batch_size == 256
    assert composed("algo=bc").train.steps == 5000
    standard = composed("algo=diffuser", "budget=standard")
    assert (standard.train.steps, standard.algo.dim) == (1_000_000, 32)
    mine = composed("algo=diffuser", "train.steps=7", "algo.dim=8")
    assert (mine.train.steps, mine.algo.dim) == (7, 8)


def test_a_compiled_run_completes_and_its_checkpoint_loads_into_an_eager_agent(tmp_path):
    """``compile=true`` compiles the agent's networks in place: the run completes and its saved
    state has the eager agent's keys (checkpoints move between compiled and eager runs)."""
    args = ["algo=bc", *TINY, "train.steps=20", "train.eval_every=0", "eval.episodes=2"]
    compiled = run_overrides([*args, "compile=true", f"results_dir={tmp_path / 'c'}"])
    eager = run_overrides([*args, f"results_dir={tmp_path / 'e'}"])
    assert compiled["status"] == eager["status"] == "completed"
    assert compiled["config"]["compile"] is True
    state = torch.load(tmp_path / "c" / compiled["run_id"] / CHECKPOINT_FILE, weights_only=False)
    reference = torch.load(tmp_path / "e" / eager["run_id"] / CHECKPOINT_FILE, weights_only=False)
    assert state["agent"]["actor"].keys() == reference["agent"]["actor"].keys()
