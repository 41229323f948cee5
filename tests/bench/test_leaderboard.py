"""The leaderboard on hand-made records: cells, sources kept apart, failures listed, stable bytes."""

import csv
import json
from pathlib import Path

import pytest

from bench import leaderboard
from bench.records import (
    AugmentInfo,
    BestEvaluation,
    Budget,
    CurvePoint,
    EnvInfo,
    Evaluation,
    Reference,
    RunRecord,
    Timings,
    read_record,
    write_json_atomic,
)
from bench.records import write_record as save_record
from tasks.spec import Provenance

STEPS = 1_000_000
CURATED = Path(__file__).resolve().parents[2] / "results" / "curated"


def evaluation(score: float, step: int, cls: type = Evaluation) -> Evaluation:
    """An evaluation of two episodes with mean normalized score ``score``."""
    return cls(
        step=step,
        episodes=2,
        returns=[10 * score - 1, 10 * score + 1],
        normalized=[score - 0.1, score + 0.1],
        return_mean=10 * score,
        return_std=1.0,
        normalized_mean=score,
        normalized_std=0.1,
        length_mean=1000.0,
    )


def write_record(results: Path, task: str, algo: str, seed: int, final: float | None, **kw) -> Path:
    """A complete record (the current schema) written the way the harness writes it."""
    source = kw.get("source", "d4rl")
    status = kw.get("status", "completed")
    augmented = f"+{kw['augment'].name}" if kw.get("augment") else ""
    run_id = f"{task}/{algo}/s{seed}-{kw.get('hash', 'cafe0001')}-{source}{augmented}"
    curve = [CurvePoint(s, 0.0, (final or 0) * s / STEPS, 1000.0) for s in (250_000, 500_000)]
    record = RunRecord(
        run_id=run_id,
        algo=algo,
        task=task,
        seed=seed,
        status=status,
        failure_reason=kw.get("reason"),
        config=kw.get("config", {}),
        config_hash=kw.get("hash", "cafe0001"),
        budget=Budget(kw.get("budget", "standard"), STEPS, 256, 50),
        dataset=Provenance(source, f"/data/{task}.hdf5", "ab" * 32, 1000, 10),
        env=EnvInfo(f"{task}-env", {}),
        reference=Reference(0.0, 100.0, "d4rl"),
        versions={},
        device="cpu",
        started="2025-01-01T00:00:00+00:00",
        final=None if final is None else evaluation(final, STEPS),
        best=None if final is None else evaluation(kw.get("best", final + 1.0), 1, BestEvaluation),
        curve=curve if status == "completed" and kw.get("curve", True) else [],
        resumed=kw.get("resumed", 0),
        timings=Timings(wall_seconds=kw.get("wall"), decisions_per_s=kw.get("decisions")),
        augment=kw.get("augment"),
    )
    path = results / run_id / "record.json"
    save_record(path, record)
    return path


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for seed, score in enumerate([10.0, 20.0, 30.0]):
        write_record(root, "hopper-medium-v2", "iql", seed, score)
        write_record(root, "hopper-medium-v2", "iql", seed, score + 50.0, source="forged")
    for seed, score in enumerate([40.0, 44.0]):
        write_record(root, "hopper-medium-v2", "diffusion_ql", seed, score)
    write_record(root, "hopper-medium-v2", "bc", 0, 12.5)
    write_record(
        root,
        "hopper-medium-v2",
        "bc",
        1,
        None,
        status="failed",
        reason="DivergenceError: non-finite loss ['actor'] at step 77\nTraceback ...",
    )
    write_record(root, "hopper-medium-v2", "bc", 2, None, status="running", resumed=2)
    corrupt = root / "walker2d-medium-v2" / "iql" / "s0-dead" / "record.json"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text('{"schema_version": 1, "algo": "iql", ')  # truncated
    report = root / ".sweeps" / "2024-01-01_00-00-00" / "sweep.json"
    died = {
        "task": "walker2d-medium-v2",
        "algo": "td3bc",
        "seed": 4,
        "run_id": "walker2d-medium-v2/td3bc/s4-beef",
        "outcome": "died",
        "reason": "job 17 ended without a result: Killed",
        "log": "/logs/17_0_log.err",
    }
    write_json_atomic(report, {"launcher": "slurm", "jobs": [died]})
    return root


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def build(results: Path, out: Path, plots: bool = False) -> str:
    with pytest.warns(UserWarning, match="unreadable record"):
        return leaderboard.build(results, out, plots=plots)


def test_final_table_cells_and_separate_sources(results, tmp_path):
    out = tmp_path / "reports"
    build(results, out)
    rows = read_csv(out / "final_scores.csv")
    assert [(r["data"], r["task"]) for r in rows] == [
        ("d4rl", "hopper-medium-v2"),
        ("forged", "hopper-medium-v2"),
    ]
    d4rl, forged = rows
    assert d4rl["budget"] == "standard (1000000 steps)"
    assert d4rl["iql"] == "20.0 ± 10.0 (n=3)"
    assert forged["iql"] == "70.0 ± 10.0 (n=3)"  # the forged runs never enter the d4rl cell
    assert d4rl["diffusion_ql"] == "42.0 ± 2.8 (n=2)"
    assert d4rl["bc"] == "12.5 (n=1)"  # the failed and the incomplete bc seeds are not averaged in
    assert forged["bc"] == "—"
    assert list(rows[0])[:4] == ["data", "budget", "task", "bc"]  # registry order: bc, iql, ...


def test_best_table_is_labelled_optimistic(results, tmp_path):
    out = tmp_path / "reports"
    text = build(results, out)
    assert "## Best during training (optimistic)" in text
    assert read_csv(out / "best_scores.csv")[0]["iql"] == "21.0 ± 10.0 (n=3)"


def test_aggregate_iqm_with_interval(results, tmp_path):
    out = tmp_path / "reports"
    build(results, out)
    rows = {(r["data"], r["algo"]): r for r in read_csv(out / "aggregate.csv")}
    iql = rows[("d4rl", "iql")]
    assert (iql["tasks"], iql["runs"], iql["IQM"]) == ("1", "3", "20.0")
    lo, hi = (float(x) for x in iql["95% CI"].strip("[]").split(", "))
    assert 10.0 <= lo <= 20.0 <= hi <= 30.0
    assert rows[("forged", "iql")]["IQM"] == "70.0"


def test_paper_numbers_beside_ours_with_sources(results, tmp_path):
    out = tmp_path / "reports"
    build(results, out)
    rows = read_csv(out / "paper_comparison.csv")
    iql = [r for r in rows if r["algo"] == "iql" and r["data"] == "d4rl"]
    assert {(r["paper"], r["paper source"].split(",")[0]) for r in iql} >= {
        ("66.3", "Wang et al. 2023")
    }
    assert all(r["ours (final)"] == "20.0 ± 10.0 (n=3)" for r in iql)
    dql = next(r for r in rows if r["algo"] == "diffusion_ql")
    assert dql["paper"] == "90.5 ± 4.6"


def augmentation(name: str) -> AugmentInfo:
    return AugmentInfo(name, f"/data/{name}.hdf5", "cd" * 32, "ab" * 32, {}, 0, 0.02, 10, 5, {})


def test_augmented_runs_meet_only_the_papers_augmented_numbers(tmp_path):
    root, out = tmp_path / "results", tmp_path / "reports"
    task = "hopper-medium-v2"
    for seed in range(2):
        write_record(root, task, "iql", seed, 40.0, source="forged")
        write_record(
            root, task, "iql", seed, 45.0, source="forged", augment=augmentation("diffstitch")
        )
        write_record(
            root, task, "iql", seed, 35.0, source="forged", augment=augmentation("synther")
        )
    leaderboard.build(root, out, plots=False)
    rows = read_csv(out / "paper_comparison.csv")
    by_data = {d: {r["paper"] for r in rows if r["data"] == d} for d in {r["data"] for r in rows}}
    assert "71.0 ± 4.2" in by_data["forged+diffstitch"]  # DiffStitch's IQL+DiffStitch
    assert "65.9 ± 5.7" not in by_data["forged+diffstitch"]  # its plain IQL
    assert "65.9 ± 5.7" in by_data["forged"] and "71.0 ± 4.2" not in by_data["forged"]
    assert "forged+synther" not in by_data  # no paper reports IQL+SynthER on this task


def test_failed_incomplete_corrupt_and_unrecorded_runs_are_listed(results, tmp_path):
    out = tmp_path / "reports"
    text = build(results, out)
    rows = read_csv(out / "failures.csv")
    by_status = {r["status"]: r for r in rows}
    assert by_status["failed"]["reason"] == "DivergenceError: non-finite loss ['actor'] at step 77"
    assert by_status["failed"]["seed"] == "1"
    assert by_status["running"]["reason"] == "incomplete: killed or still running (resumed 2 times)"
    assert by_status["corrupt"]["run / record"] == "walker2d-medium-v2/iql/s0-dead/record.json"
    assert by_status["died, no record"]["algo"] == "td3bc"
    assert by_status["died, no record"]["reason"] == (
        "job 17 ended without a result: Killed (log: /logs/17_0_log.err)"
    )
    assert by_status["died, no record"]["run / record"] == "walker2d-medium-v2/td3bc/s4-beef"
    assert "## Failed and incomplete runs" in text


def test_job_with_a_record_now_is_not_listed_as_unrecorded(results, tmp_path):
    write_record(results, "walker2d-medium-v2", "td3bc", 4, 33.0, hash="beef")  # a rerun succeeded
    (results / "walker2d-medium-v2/td3bc/s4-beef-d4rl").rename(
        results / "walker2d-medium-v2/td3bc/s4-beef"
    )
    out = tmp_path / "reports"
    build(results, out)
    assert not [r for r in read_csv(out / "failures.csv") if r["status"].startswith("died")]


def test_config_variants_are_never_averaged_together(tmp_path):
    results = tmp_path / "results"
    write_record(results, "hopper-medium-v2", "iql", 0, 10.0, hash="aaaa")
    write_record(results, "hopper-medium-v2", "iql", 0, 90.0, hash="bbbb")
    leaderboard.build(results, tmp_path / "out", plots=False)
    cell = read_csv(tmp_path / "out" / "final_scores.csv")[0]["iql"]
    assert cell == "10.0 (n=1) [cfg aaaa]; 90.0 (n=1) [cfg bbbb]"
    assert read_csv(tmp_path / "out" / "aggregate.csv")[0]["mixed configs"] == "yes"


def test_config_variants_are_named_by_the_settings_that_differ(tmp_path):
    results = tmp_path / "results"
    for seed, (hash_, method) in enumerate([("aaaa", "robust"), ("bbbb", "none")]):
        config = {"seed": seed, "task": "hopper-medium-v2", "algo": {"method": method, "k": 1}}
        write_record(
            results, "hopper-medium-v2", "iql", seed, 10.0 * seed, hash=hash_, config=config
        )
    leaderboard.build(results, tmp_path / "out", plots=False)
    cell = read_csv(tmp_path / "out" / "final_scores.csv")[0]["iql"]
    assert cell == "0.0 (n=1) [method=robust]; 10.0 (n=1) [method=none]"


def test_latex_and_markdown_escape(results, tmp_path):
    out = tmp_path / "reports"
    text = build(results, out)
    tex = (out / "leaderboard.tex").read_text()
    assert r"diffusion\_ql" in tex and r"20.0 $\pm$ 10.0 (n=3)" in tex and r"\toprule" in tex
    assert "| d4rl | standard (1000000 steps) | hopper-medium-v2 | 12.5 (n=1) |" in text


def test_outputs_are_byte_stable(results, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    build(results, first, plots=True)
    build(results, second, plots=True)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".png"]) == 8  # 4 plots x 2 (data, budget) sections
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    assert sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file()) == files


def test_cli_prints_the_markdown(results, tmp_path, capsys):
    with pytest.warns(UserWarning):
        leaderboard.main(["--results", str(results), "--out", str(tmp_path / "r"), "--no-plots"])
    printed = capsys.readouterr().out
    assert "## Final normalized score (primary)" in printed
    assert printed.strip() == (tmp_path / "r" / "leaderboard.md").read_text().strip()


def test_empty_results_still_write_tables(tmp_path):
    text = leaderboard.build(tmp_path / "none", tmp_path / "out", plots=True)
    assert "## Final normalized score (primary)\n\nNone." in text
    assert json.dumps(read_csv(tmp_path / "out" / "failures.csv")) == "[]"


def test_a_failed_record_without_a_reason_still_says_it_failed(tmp_path):
    results = tmp_path / "results"
    write_record(results, "hopper-medium-v2", "iql", 0, None, status="failed")
    leaderboard.build(results, tmp_path / "out", plots=False)
    (row,) = read_csv(tmp_path / "out" / "failures.csv")
    assert (row["status"], row["reason"]) == ("failed", "failed (no reason recorded)")


def test_version_1_records_give_the_leaderboard_of_their_version_2_form(tmp_path):
    """The curated records (schema 1) and the same runs rewritten in the current schema."""
    v2 = tmp_path / "v2"
    for path in sorted(CURATED.rglob("record.json")):
        assert read_record(path)["schema_version"] == 1
        save_record(v2 / path.relative_to(CURATED), RunRecord.from_dict(read_record(path)))
    text_v1 = leaderboard.build(CURATED, tmp_path / "from-v1", plots=False)
    text_v2 = leaderboard.build(v2, tmp_path / "from-v2", plots=False)
    assert "## Final normalized score (primary)\n\nNone." not in text_v1
    assert text_v1 == text_v2
    written = sorted(p.name for p in (tmp_path / "from-v1").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "from-v2").iterdir())
    for name in written:
        assert (tmp_path / "from-v1" / name).read_bytes() == (
            tmp_path / "from-v2" / name
        ).read_bytes()


def test_compute_table_and_score_against_wallclock(tmp_path):
    root = tmp_path / "results"
    for seed, (wall, decisions) in enumerate([(60.0, 100.0), (180.0, 300.0)]):
        write_record(
            root, "hopper-medium-v2", "iql", seed, 30.0 + seed, wall=wall, decisions=decisions
        )
    leaderboard.build(root, tmp_path / "out", plots=True)
    (row,) = read_csv(tmp_path / "out" / "compute.csv")
    assert row["algo"] == "iql" and row["wall-clock (min)"] == "2.0"  # (1 + 3) / 2 minutes
    assert row["decisions/s"] == "200.0" and row["final score"] == "30.5 ± 0.7 (n=2)"
    pngs = {p.name for p in (tmp_path / "out" / "plots").rglob("*.png")}
    assert {"score_vs_wallclock.png", "learning_curves.png"} <= pngs


def test_learning_curves_are_drawn_only_from_runs_with_curves(tmp_path):
    root = tmp_path / "results"
    for seed in range(2):
        write_record(root, "hopper-medium-v2", "iql", seed, 30.0, curve=False)
    leaderboard.build(root, tmp_path / "out", plots=True)
    pngs = {p.name for p in (tmp_path / "out" / "plots").rglob("*.png")}
    assert "learning_curves.png" not in pngs and "per_task.png" in pngs
    assert "learning_curves.png" not in (tmp_path / "out" / "leaderboard.md").read_text()
