"""Run records: the schema, atomic writes, and loading every record as a DataFrame.

One directory per run (``<results_dir>/<task>/<algo>/s<seed>-<config hash>/``) holds
``config.yaml``, ``checkpoint.pt`` and ``record.json``. The record is self-describing:

=================  ==================================================================
key                meaning
=================  ==================================================================
schema_version     :data:`SCHEMA_VERSION`
run_id             ``<task>/<algo>/s<seed>-<hash>``
algo, task, seed   what ran
status             ``running`` | ``completed`` | ``failed``
failure_reason     why a failed run failed (``None`` otherwise); failed runs carry no score
config             the resolved config; ``config_hash`` hashes it without seed/paths/device
budget             ``{"name", "train_steps", "batch_size", "eval_episodes"}``
dataset            :class:`tasks.spec.Provenance` as a dict (``source`` is d4rl/minari/forged)
env                the gymnasium env that evaluated the run: ``{"id", "kwargs"}``
reference          ``{"min", "max", "origin"}``: the returns that normalize scores
final              last evaluation: ``returns``, ``normalized`` (per episode), their
                   ``*_mean``/``*_std``, ``episodes``, ``step`` and task metrics
best               the best periodic evaluation (optimistic: chosen on the test episodes)
curve              periodic evaluations: ``[{"step", "return_mean", "normalized_mean", ...}]``
losses             logged training losses: ``[{"step", <name>: value, ...}]``
timings            ``train_steps_per_s``, ``decisions_per_s``, ``wall_s``
memory             ``peak_rss_mb`` and ``peak_cuda_mb`` (``None`` without CUDA)
versions           python, torch, numpy, gymnasium, mujoco, diffrl-bench; ``git_commit``
device, started, finished
=================  ==================================================================
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

SCHEMA_VERSION = 1
RECORD_FILE = "record.json"


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to ``path`` through a temp file in the same directory and an atomic rename.

    Readers never see a half-written file, and concurrent writers of different records never
    interfere; the last writer of the same record wins whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(path: str | Path) -> dict:
    """Read and check one record; raises ``ValueError`` naming the file when it is malformed."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable record ({e})") from e
    missing = [k for k in ("schema_version", "algo", "task", "seed", "status") if k not in rec]
    if not isinstance(rec, dict) or missing:
        raise ValueError(f"{path}: not a run record (missing {missing})")
    if rec["schema_version"] > SCHEMA_VERSION:
        raise ValueError(f"{path}: schema {rec['schema_version']} is newer than {SCHEMA_VERSION}")
    return rec


def summary_row(rec: dict, path: Path) -> dict:
    """The flat columns the leaderboard groups on, plus the whole record under ``record``."""
    final, best = rec.get("final") or {}, rec.get("best") or {}
    budget, dataset = rec.get("budget") or {}, rec.get("dataset") or {}
    return {
        "algo": rec["algo"],
        "task": rec["task"],
        "seed": rec["seed"],
        "status": rec["status"],
        "failure_reason": rec.get("failure_reason"),
        "source": dataset.get("source"),
        "dataset_sha256": dataset.get("sha256"),
        "budget": budget.get("name"),
        "train_steps": budget.get("train_steps"),
        "config_hash": rec.get("config_hash"),
        "final_score": final.get("normalized_mean"),
        "final_return": final.get("return_mean"),
        "best_score": best.get("normalized_mean"),
        "success_rate": final.get("success_rate"),
        "path": str(path),
        "record": rec,
    }


def load_records(results_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """Every ``record.json`` under ``results_dir`` as one row each, and the problems skipped.

    A corrupt or foreign file is reported in the returned list (and as a warning), never fatal.
    """
    rows, problems = [], []
    for path in sorted(Path(results_dir).rglob(RECORD_FILE)):
        try:
            rows.append(summary_row(read_record(path), path))
        except ValueError as e:
            problems.append(str(e))
            warnings.warn(str(e), stacklevel=2)
    columns = list(summary_row({"algo": "", "task": "", "seed": 0, "status": ""}, Path()).keys())
    return pd.DataFrame(rows, columns=columns), problems
