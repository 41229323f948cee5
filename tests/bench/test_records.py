"""The run record's schema: typed, documented field by field, and read back in both versions."""

import ast
import dataclasses
import inspect
import io
import json
import shutil
import textwrap
import tokenize
from pathlib import Path

import pytest

from bench import records
from bench.records import (
    SCHEMA_VERSION,
    BestEvaluation,
    Budget,
    CurvePoint,
    EnvInfo,
    Evaluation,
    Reference,
    RunRecord,
    load_records,
    read_record,
    summary_row,
    write_record,
)
from tasks.spec import Provenance

CURATED = Path(__file__).resolve().parents[2] / "results" / "curated"
SCHEMA_CLASSES = [
    obj
    for obj in vars(records).values()
    if dataclasses.is_dataclass(obj) and obj.__module__ == records.__name__
]


def undocumented_fields(cls: type) -> list[str]:
    """Fields of the dataclass ``cls`` whose statement carries no ``#`` comment."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {
        tok.start[0]
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    (node,) = ast.parse(source).body
    return [
        stmt.target.id
        for stmt in node.body
        if isinstance(stmt, ast.AnnAssign)
        and not comments & set(range(stmt.lineno, stmt.end_lineno + 1))
    ]


def v1_records() -> list[Path]:
    paths = sorted(CURATED.rglob("record.json"))
    assert paths and all(json.loads(p.read_text())["schema_version"] == 1 for p in paths)
    return paths


def a_record(**kw) -> RunRecord:
    """A complete version-2 record of a small completed run."""
    evaluation = dict(
        episodes=2,
        returns=[1.0, 3.0],
        normalized=[10.0, 30.0],
        return_mean=2.0,
        return_std=1.0,
        normalized_mean=20.0,
        normalized_std=10.0,
        length_mean=100.0,
    )
    fields = dict(
        run_id="toy-bandit/bc/s0-cafe0001",
        algo="bc",
        task="toy-bandit",
        seed=0,
        config={"algo": {"lr": 0.001}, "seed": 0},
        config_hash="cafe0001",
        budget=Budget("quick", 100, 256, 2),
        dataset=Provenance("forged", "/data/x.hdf5", "ab" * 32, 1000, 10, "bandit", {"seed": 0}),
        env=EnvInfo("diffrl/ToyBandit-v0", {}),
        reference=Reference(0.1, 1.0, "dataset"),
        versions={"torch": "2", "git_commit": None},
        device="cpu",
        started="2025-01-01T00:00:00+00:00",
        status="completed",
        final=Evaluation(step=100, **evaluation, success_rate=0.5),
        best=BestEvaluation(step=50, **evaluation),
        curve=[CurvePoint(50, 2.0, 20.0, 100.0)],
        losses=[{"step": 50, "actor": 0.5}],
        finished="2025-01-01T00:01:00+00:00",
    )
    return RunRecord(**{**fields, **kw})


@pytest.mark.parametrize("cls", SCHEMA_CLASSES, ids=lambda c: c.__name__)
def test_every_schema_field_is_documented(cls):
    assert undocumented_fields(cls) == []


def test_the_version_is_2_and_a_record_round_trips_through_json(tmp_path):
    record = a_record()
    assert SCHEMA_VERSION == 2 and record.schema_version == 2
    write_record(tmp_path / "record.json", record)
    on_disk = read_record(tmp_path / "record.json")
    assert RunRecord.from_dict(on_disk) == record
    assert on_disk == json.loads(json.dumps(record.to_dict()))


def test_every_field_is_written_even_where_it_does_not_apply(tmp_path):
    write_record(tmp_path / "record.json", a_record())
    on_disk = read_record(tmp_path / "record.json")
    assert set(on_disk) == {f.name for f in dataclasses.fields(RunRecord)}
    assert on_disk["safety"] is None and on_disk["final"]["cost_mean"] is None
    timings = {"train_seconds", "train_steps_per_s", "decisions_per_s", "wall_seconds", "threads"}
    assert set(on_disk["timings"]) == timings
    assert on_disk["best"]["note"].startswith("optimistic")


@pytest.mark.parametrize("path", v1_records(), ids=lambda p: str(p.relative_to(CURATED)))
def test_a_version_1_record_reads_as_version_2_keeping_every_value(path):
    v1 = json.loads(path.read_text())
    v2 = RunRecord.from_dict(v1).to_dict()
    assert v2["schema_version"] == 2

    def same(old, new, where):
        if isinstance(old, dict):
            for key in set(new) - set(old):  # keys version 1 left out are the defaults
                assert new[key] is None, f"{where}.{key}"
            for key in old:
                same(old[key], new[key], f"{where}.{key}")
        elif isinstance(old, list):
            assert len(old) == len(new), where
            for i, (o, n) in enumerate(zip(old, new, strict=True)):
                same(o, n, f"{where}[{i}]")
        else:
            assert old == new or where == ".schema_version", where

    same(v1, v2, "")
    assert summary_row(v1, path) | {"record": None} == summary_row(v2, path) | {"record": None}


def test_load_records_reads_both_versions_side_by_side(tmp_path):
    source = v1_records()[0]
    shutil.copy(source, tmp_path / "v1.json")
    (tmp_path / "a").mkdir()
    shutil.copy(source, tmp_path / "a" / "record.json")
    write_record(tmp_path / "b" / "record.json", a_record())
    df, problems = load_records(tmp_path)
    assert problems == [] and len(df) == 2
    assert sorted(r["schema_version"] for r in df["record"]) == [1, 2]


def test_newer_unknown_or_incomplete_records_are_refused(tmp_path):
    newer = {**a_record().to_dict(), "schema_version": SCHEMA_VERSION + 1}
    write_record(tmp_path / "ok" / "record.json", a_record())
    (tmp_path / "newer" / "record.json").parent.mkdir()
    (tmp_path / "newer" / "record.json").write_text(json.dumps(newer))
    with pytest.raises(ValueError, match="newer"):
        read_record(tmp_path / "newer" / "record.json")
    with pytest.raises(ValueError, match="newer"):
        RunRecord.from_dict(newer)
    with pytest.raises(ValueError, match="no field"):
        RunRecord.from_dict({**a_record().to_dict(), "wall_s": 1.0})
    incomplete = a_record().to_dict()
    del incomplete["budget"]
    with pytest.raises(ValueError, match="budget"):
        RunRecord.from_dict(incomplete)
