"""Sweeps: grid expansion, launcher presets, dead-job detection, concurrent record writers."""

import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import algorithms
from bench import sweep
from bench.records import load_records, read_record, write_json_atomic
from tasks.registry import list_tasks

TINY = [
    "train.steps=20",
    "train.eval_every=10",
    "train.checkpoint_every=10",
    "train.log_every=10",
    "eval.episodes=3",
    "eval.periodic_episodes=2",
]


def test_overrides_replace_grid_axes_and_pass_the_rest():
    grid = sweep.load_grid("quick")
    args = sweep.grid_overrides(
        grid, ["seed=0,1", "train.steps=10", "hydra.launcher.partition=gpu"]
    )
    runs = [a for a in args if not sweep.is_launcher_override(a)]
    jobs = sweep.expand(runs)
    assert len(jobs) == 3 * 2 * 2  # algos x tasks x the two overridden seeds
    assert all("budget=quick" in j and "train.steps=10" in j for j in jobs)
    assert sorted({j[2] for j in jobs}) == ["seed=0", "seed=1"]
    assert "hydra.launcher.partition=gpu" in args


def test_expand_understands_hydra_sweep_syntax():
    jobs = sweep.expand(["seed=range(0,3)", "algo=bc,iql", "task=toy-bandit"])
    assert len(jobs) == 6
    assert ["seed=2", "algo=iql", "task=toy-bandit"] in jobs


@pytest.mark.parametrize("name", sweep.available_grids())
def test_named_grids_use_registered_tasks_and_algorithms(name):
    params = sweep.load_grid(name)["params"]
    assert set(params["task"]) <= set(list_tasks())
    assert set(params["algo"]) <= set(algorithms.ALGORITHMS)


def test_standard_grids():
    assert {"locomotion", "maze2d", "quick"} <= set(sweep.available_grids())
    loco = sweep.load_grid("locomotion")
    assert len(loco["params"]["task"]) == 9 and loco["params"]["seed"] == [0, 1, 2, 3, 4]
    quick = sweep.load_grid("quick")["params"]
    assert (quick["algo"], quick["task"], quick["seed"]) == (
        ["bc", "iql", "idql"],
        ["pointmaze-umaze", "toy-bandit"],
        [0, 1, 2],
    )


def test_dry_run_counts_jobs(capsys):
    assert sweep.main(["grid=quick", "dry_run=true", "seed=0,1,2,3"]) == 0
    assert "grid quick: 24 jobs on local" in capsys.readouterr().out


def test_bad_cli_input_exits_with_a_message():
    with pytest.raises(SystemExit, match="unknown grid 'nope'"):
        sweep.main(["grid=nope"])
    with pytest.raises(SystemExit, match="launcher must be local or slurm"):
        sweep.main(["grid=quick", "launcher=pbs"])
    assert sweep.main([]) == 2


def test_launcher_presets_compose_with_overrides():
    cfg = sweep.compose(
        ["algo=bc", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu"]
    )
    launcher = cfg.hydra.launcher
    assert launcher.partition == "gpu"
    assert (launcher.timeout_min, launcher.mem_gb, launcher.array_parallelism) == (720, 16, 64)
    assert launcher.max_num_timeout > 0  # timeouts are requeued: runs resume from checkpoints
    assert str(launcher.submitit_folder).startswith(str(cfg.hydra.sweep.dir))
    local = sweep.compose(["algo=bc", "hydra/launcher=submitit_local"]).hydra.launcher
    assert local.cpus_per_task == 1 and local.timeout_min > 60


@pytest.mark.skipif(shutil.which("srun") is None, reason="SLURM client commands not installed")
def test_slurm_preset_becomes_sbatch_options(tmp_path):
    cfg = sweep.compose(
        [
            "algo=bc",
            "hydra/launcher=submitit_slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.gpus_per_node=1",
        ]
    )
    params = dict(sweep.OmegaConf.to_container(cfg.hydra.launcher, resolve=True))
    params["submitit_folder"] = str(tmp_path / "%j")
    executor = sweep.make_executor("slurm", params)
    text = executor._executor._make_submission_file_text("python job.py", "uid")
    for option in (
        "--partition=gpu",
        "--time=720",
        "--mem=16GB",
        "--gpus-per-node=1",
        "--signal=USR2@120",
    ):
        assert f"#SBATCH {option}" in text


def test_a_job_that_dies_without_a_result_is_reported(tmp_path):
    executor = sweep.make_executor(
        "local", {"submitit_folder": str(tmp_path / "%j"), "timeout_min": 5}
    )
    job = executor.submit(os._exit, 3)  # the interpreter dies: no result, no exception
    sweep.wait_all("local", [job])
    state, reason = sweep.outcome(job)
    assert state == "died"
    assert f"job {job.job_id} ended without a result" in reason


def test_unrecorded_jobs_come_from_reports_and_skip_rerun_runs(tmp_path):
    results = tmp_path / "results"
    jobs = [
        {"run_id": "t/a/s0-x", "outcome": "died", "reason": "killed"},
        {"run_id": "t/a/s1-x", "outcome": "failed", "reason": "DatasetNotFoundError: ..."},
        {"run_id": "t/a/s2-x", "outcome": "died", "reason": "killed"},
    ]
    write_json_atomic(results / ".sweeps" / "1" / "sweep.json", {"launcher": "local", "jobs": jobs})
    (results / ".sweeps" / "2").mkdir()
    (results / ".sweeps" / "2" / "sweep.json").write_text("{not json")  # skipped, not fatal
    write_json_atomic(results / "t/a/s2-x/record.json", {"status": "completed"})  # rerun since
    assert [j["run_id"] for j in sweep.unrecorded_jobs(results)] == ["t/a/s0-x", "t/a/s1-x"]


def write_many(args: tuple[str, int, int]) -> None:
    root, worker, count = args
    for i in range(count):
        run = Path(root) / "task" / "algo" / f"s{worker * 1000 + i}-h"
        rec = {
            "schema_version": 1,
            "algo": "algo",
            "task": "task",
            "seed": worker * 1000 + i,
            "status": "completed",
            "pad": "x" * 20_000,
        }
        write_json_atomic(run / "record.json", rec)


def rewrite_same(args: tuple[str, int]) -> None:
    path, worker = args
    for i in range(40):
        rec = {"schema_version": 1, "algo": "a", "task": "t", "seed": 0, "status": "completed"}
        write_json_atomic(path, {**rec, "writer": worker, "i": i, "pad": "y" * 50_000})


def test_concurrent_writers_lose_no_record(tmp_path):
    """Many processes writing distinct records at once: every record arrives whole."""
    ctx = mp.get_context("fork")
    with ctx.Pool(8) as pool:
        pool.map(write_many, [(str(tmp_path), w, 25) for w in range(8)])
    df, problems = load_records(tmp_path)
    assert problems == []
    assert len(df) == 200 and df["seed"].nunique() == 200
    assert not list(tmp_path.rglob("*.tmp"))


def test_concurrent_rewrites_of_one_record_are_never_torn(tmp_path):
    """Readers racing writers of the same record always see one writer's whole record."""
    path = tmp_path / "run" / "record.json"
    rewrite_same((str(path), -1))
    ctx = mp.get_context("fork")
    with ctx.Pool(4) as pool:
        pending = pool.map_async(rewrite_same, [(str(path), w) for w in range(4)])
        reads = 0
        while not pending.ready():
            rec = read_record(path)  # raises on a torn file
            assert len(rec["pad"]) == 50_000
            reads += 1
        pending.get()
    assert reads > 0 and not list(path.parent.glob("*.tmp"))


def test_a_grid_with_a_base_takes_its_overrides_and_replaces_same_keys():
    base = sweep.load_grid("planners-hopper")["overrides"]
    safe = sweep.load_grid("safe-hopper-ceiling")["overrides"]
    assert {k: safe[k] for k in base if k != "results_dir"} == {
        k: v for k, v in base.items() if k != "results_dir"
    }
    assert safe["results_dir"] == "results/safe-hopper" != base["results_dir"]
    assert safe["algo.relax_until"] == 4


def test_sweeps_started_in_the_same_second_get_their_own_folders(tmp_path):
    stamp = tmp_path / ".sweeps" / "2026-11-22_13-13-21"
    claimed = [sweep.claim_sweep_dir(stamp) for _ in range(3)]
    assert [p.name for p in claimed] == [stamp.name, f"{stamp.name}-1", f"{stamp.name}-2"]
    assert all(p.is_dir() for p in claimed)


@pytest.mark.slow
def test_local_sweep_runs_every_job_and_reports_failures(tmp_path, capsys):
    results = tmp_path / "results"
    code = sweep.main(
        [
            "grid=quick",
            "algo=bc",
            "task=toy-bandit,no-such-task",
            "seed=0",
            f"results_dir={results}",
            *TINY,
        ]
    )
    assert code == 1  # one job failed, the other still ran
    out = capsys.readouterr().out
    assert "2 jobs: 1 completed, 1 failed, 0 died" in out
    (report,) = results.glob(".sweeps/*/sweep.json")
    entries = {e["task"]: e for e in json.loads(report.read_text())["jobs"]}
    assert entries["toy-bandit"]["outcome"] == "completed" and entries["toy-bandit"]["has_record"]
    failed = entries["no-such-task"]
    assert (failed["outcome"], failed["has_record"]) == ("failed", False)
    assert "unknown task 'no-such-task'" in failed["reason"]
    assert (
        read_record(results / entries["toy-bandit"]["run_id"] / "record.json")["status"]
        == "completed"
    )


@pytest.mark.slow
def test_submitit_local_multirun_writes_every_record(tmp_path):
    """``bench.run -m`` through the submitit_local preset: parallel jobs, every record whole."""
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "bench.run", "-m", "algo=bc", "task=toy-bandit", "seed=0,1,2,3"]
    cmd += [*TINY, f"results_dir={results}", "hydra/launcher=submitit_local"]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    df, problems = load_records(results)
    assert problems == []
    assert sorted(df["seed"]) == [0, 1, 2, 3]
    assert set(df["status"]) == {"completed"}


@pytest.mark.slow
def test_hopper_comparison_grid_smoke(tmp_path, capsys):
    """The policies-hopper grid at a smoke budget: hopper-medium-v2 forges on first use from the
    shipped medium policy and every algorithm of the comparison leaves a completed record."""
    results = tmp_path / "results"
    smoke = ["train.steps=20", "train.eval_every=20", "train.log_every=10", "eval.episodes=2"]
    code = sweep.main(
        ["grid=policies-hopper", "seed=0", "data.scale=0.002", f"results_dir={results}", *smoke]
    )
    assert code == 0, capsys.readouterr().out
    df, problems = load_records(results)
    assert problems == []
    assert sorted(df["algo"]) == sorted(sweep.load_grid("policies-hopper")["params"]["algo"])
    assert set(df["status"]) == {"completed"} and set(df["task"]) == {"hopper-medium-v2"}
    assert set(df["source"]) == {"forged"}
