"""Run records: the schema, atomic writes, and loading every record as a DataFrame.

One directory per run (``<results_dir>/<task>/<algo>/s<seed>-<config hash>/``) holds
``config.yaml``, ``checkpoint.pt`` and ``record.json``. The record is self-describing: its schema
is :class:`RunRecord` and the dataclasses it nests; their fields, with one comment each, are the
documentation, and ``record.json`` is :meth:`RunRecord.to_dict` as JSON (every field present,
``null`` where a value does not apply). Durations are in seconds (``*_seconds``), rates per second
(``*_per_s``), memory in MiB (``*_mb``), times in UTC ISO 8601.

Schema versions:

* 1: the same keys, assembled as a dict, so a key that did not apply could be absent
  (``safety`` before safe tasks existed, task metrics such as ``success_rate`` in ``final``,
  ``best`` and ``curve``, ``timings`` of a run that failed);
* 2 (:data:`SCHEMA_VERSION`): written from :class:`RunRecord`; every field always present.

Both are read: :func:`read_record` returns the JSON as it is (the leaderboard reads it with
defaults for absent keys), and :meth:`RunRecord.from_dict` turns a version-1 or version-2 record
into a :class:`RunRecord` (absent keys take their defaults).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from tasks.spec import Provenance

SCHEMA_VERSION = 2
RECORD_FILE = "record.json"
BEST_NOTE = "optimistic: best periodic evaluation, chosen on evaluation episodes"
Status = Literal["running", "completed", "failed"]


@dataclass
class Budget:
    """What the run was allowed to spend."""

    name: str  # the budget preset (``budget=``): quick | standard | paper
    train_steps: int  # training updates
    batch_size: int  # samples per update (the agent's DataSpec)
    eval_episodes: int  # episodes of the final evaluation


@dataclass
class EnvInfo:
    """The gymnasium environment that evaluated the run."""

    id: str  # gymnasium id
    kwargs: dict[str, Any]  # keyword arguments of ``gymnasium.make``


@dataclass
class Reference:
    """The returns that normalize scores: ``100 * (return - min) / (max - min)``."""

    min: float  # return of a random policy (score 0)
    max: float  # return of an expert (score 100)
    origin: str  # "d4rl": D4RL's published constants; "dataset": the task's own references


@dataclass
class SafetyInfo:
    """A safe task's cost signal, budget and state constraints (see :mod:`tasks.safety`)."""

    cost: str  # the per-step cost signal
    cost_discount: float  # discount of the episode cost
    budget: float  # episode cost budget
    rule: str  # how the budget was set (``absolute`` or a ratio rule)
    barriers: list[str]  # every state constraint, as its repr
    ratio: float | None = None  # budget / reference_cost under a ratio rule
    reference_cost: float | None = None  # the cost the ratio multiplies


@dataclass
class Evaluation:
    """One evaluation of the agent (:meth:`bench.evaluate.EvalResult.summary` at a step)."""

    step: int  # training step at which the agent was evaluated
    episodes: int  # episodes run
    returns: list[float]  # undiscounted return of each episode
    normalized: list[float]  # normalized score of each episode (see ``reference``)
    return_mean: float  # mean return
    return_std: float  # population std of the returns
    normalized_mean: float  # the score: mean normalized score
    normalized_std: float  # population std of the normalized scores
    length_mean: float  # mean episode length in steps
    success_rate: float | None = None  # share of episodes that succeeded (tasks that define it)
    costs: list[float] | None = None  # each episode's discounted cost (safe tasks)
    cost_mean: float | None = None  # mean episode cost (safe tasks)
    cost_std: float | None = None  # population std of the episode costs (safe tasks)
    cost_budget: float | None = None  # the budget the costs were held to (safe tasks)
    over_budget_rate: float | None = None  # share of episodes over the budget (safe tasks)
    barrier_min_executed: float | None = None  # smallest barrier value over executed states
    barrier_min_planned: float | None = None  # smallest over planned states (planners that say)


@dataclass
class BestEvaluation(Evaluation):
    """The periodic evaluation with the highest score: optimistic, since it is chosen on the
    evaluation episodes themselves."""

    note: str = BEST_NOTE  # the warning that travels with the number


@dataclass
class CurvePoint:
    """One periodic evaluation's means (the learning curve)."""

    step: int  # training step
    return_mean: float  # mean return
    normalized_mean: float  # mean normalized score
    length_mean: float  # mean episode length
    success_rate: float | None = None  # share of successful episodes (tasks that define it)
    cost_mean: float | None = None  # mean episode cost (safe tasks)

    @classmethod
    def of(cls, evaluation: Evaluation) -> CurvePoint:
        """The curve's point for ``evaluation``."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dataclasses.asdict(evaluation).items() if k in names})


@dataclass
class OnlinePoint:
    """One evaluation of the online phase: a point of the curve against environment steps."""

    env_steps: int  # environment steps collected before the evaluation
    iteration: int  # online iterations completed before the evaluation
    episodes: int  # episodes evaluated
    return_mean: float  # mean return
    normalized_mean: float  # mean normalized score
    length_mean: float  # mean episode length
    success_rate: float | None = None  # share of successful episodes (tasks that define it)


@dataclass
class OnlineInfo:
    """The online phase of an online agent (``online.*`` knobs; :mod:`bench.online`)."""

    n_envs: int  # environments collecting in parallel
    env_steps: int  # the budget of environment steps (``online.env_steps``)
    eval_every: int  # environment steps between evaluations (``online.eval_every``)
    act_steps: int  # environment steps per decision (the agent's action chunk)
    rollout_steps: int  # decisions per environment in one iteration
    iterations: int  # iterations the budget allows: ceil(env_steps / per-iteration steps)
    pretrained: Evaluation  # the pre-trained agent's evaluation (the offline phase's final)
    curve: list[OnlinePoint] = field(default_factory=list)  # pre-trained, periodic, final
    losses: list[dict[str, float]] = field(default_factory=list)  # {"iteration", <loss>} each
    iterations_done: int = 0  # iterations completed
    env_steps_done: int = 0  # n_envs x act_steps per decision (as DPPO counts; early ends too)
    episodes_done: int = 0  # collection episodes that ended
    env_resume: str = "snapshot"  # how a resume restored the envs: snapshot | seeded-reset
    simulate_seconds: float = 0.0  # time in env steps and resets
    sample_seconds: float = 0.0  # time in the agent's ``explore``
    update_seconds: float = 0.0  # time in the agent's ``improve``


@dataclass
class AugmentInfo:
    """The dataset transform the run's data went through (``augment=<name>``; bench.augment)."""

    name: str  # the transform (``algorithms.AUGMENTATIONS``)
    path: str  # the augmented dataset file (the cache)
    sha256: str  # sha256 of that file
    source_sha256: str  # sha256 of the dataset it augmented
    config: dict[str, Any]  # the transform's resolved Config
    seed: int  # ``augment.seed``
    budget: float  # share of the paper's augmentation schedule spent
    generated: int  # transitions generated before the transform's checks
    accepted: int  # transitions added to the data
    checkpoints: dict[str, str]  # sha256 of every model the transform trained


@dataclass
class Timings:
    """Where the time went (``None`` until measured; a failed run keeps what it measured)."""

    train_seconds: float | None = None  # time in training steps, over every resumption
    train_steps_per_s: float | None = None  # train_steps / train_seconds
    decisions_per_s: float | None = None  # env decisions per second of ``act`` (final eval)
    wall_seconds: float | None = None  # the last process: dataset load to final evaluation
    threads: int | None = None  # torch threads of the last process (``threads`` knob)


@dataclass
class Memory:
    """Peak memory of the process that finished the run."""

    peak_rss_mb: float | None = None  # resident set size
    peak_cuda_mb: float | None = None  # CUDA memory allocated (``None`` without CUDA)


@dataclass
class RunRecord:
    """One run, whole: what ran, on what data, under what budget, and how it scored."""

    run_id: str  # ``<task>/<algo>/s<seed>-<config hash>``: the run's directory under results
    algo: str  # algorithm name (``algorithms.ALGORITHMS``)
    task: str  # task id (``tasks.registry``)
    seed: int  # the run's seed
    config: dict[str, Any]  # the run config: ``algo`` as given, ``algo_resolved``, every knob
    config_hash: str  # hash of the config without seed, paths and device (``bench.run``)
    budget: Budget  # what the run was allowed to spend
    dataset: Provenance  # where the training data came from (``source``: d4rl, minari, forged)
    env: EnvInfo  # the environment that evaluated the run
    reference: Reference  # the returns that normalize scores
    versions: dict[str, str | None]  # python, torch, numpy, gymnasium, mujoco, ...; git_commit
    device: str  # torch device that trained the agent
    started: str  # when the run (its first attempt) started
    status: Status = "running"  # running until it completes or fails
    failure_reason: str | None = None  # why a failed run failed, one line
    failure_traceback: str | None = None  # the traceback behind an unexpected failure
    safety: SafetyInfo | None = None  # safe tasks: cost signal, budget, constraints
    final: Evaluation | None = None  # last evaluation, the primary score (None unless completed)
    best: BestEvaluation | None = None  # best periodic evaluation (optimistic; None if failed)
    curve: list[CurvePoint] = field(default_factory=list)  # every periodic evaluation
    losses: list[dict[str, float]] = field(default_factory=list)  # {"step", <loss>: value} each log
    timings: Timings = field(default_factory=Timings)  # where the time went
    memory: Memory = field(default_factory=Memory)  # peak memory
    augment: AugmentInfo | None = None  # the dataset transform applied (None: the plain data)
    online: OnlineInfo | None = None  # online agents: pre-trained score, online curve and budget
    finished: str | None = None  # when the run completed or failed
    resumed: int = 0  # times the run resumed from a checkpoint after a kill
    schema_version: int = SCHEMA_VERSION  # this schema's version

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready nested dicts and lists (what ``record.json`` holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """A record read back: version 1 or 2, absent keys taking their defaults.

        Raises ``ValueError`` on a newer version, an unknown key or a missing required one.
        """
        version = data.get("schema_version", 1)
        if version > SCHEMA_VERSION:
            raise ValueError(f"record schema {version} is newer than {SCHEMA_VERSION}")
        try:
            return _build(cls, {**data, "schema_version": SCHEMA_VERSION})
        except TypeError as e:
            raise ValueError(f"not a version-{version} run record: {e}") from e


def _build(cls: type, data: dict[str, Any]) -> Any:
    """The dataclass ``cls`` from ``data``, building nested dataclass fields (and lists of them)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {unknown}")
    return cls(**{k: _value(hints[k], v) for k, v in data.items()})


def _value(hint: Any, value: Any) -> Any:
    """``value`` as the type ``hint`` says: a dataclass, a list of them, or as it is."""
    if value is None:
        return None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # ``X | None``
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return [_value(item, v) for v in value]
    return value


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


def write_record(path: str | Path, record: RunRecord) -> None:
    """Write ``record`` to ``path`` atomically (see :func:`write_json_atomic`)."""
    write_json_atomic(path, record.to_dict())


def read_record(path: str | Path) -> dict:
    """Read and check one record (any version up to :data:`SCHEMA_VERSION`) as its JSON dict;
    raises ``ValueError`` naming the file when it is malformed."""
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
    """The flat columns the leaderboard groups on, plus the whole record under ``record``.

    Reads a record of either version (and partial or foreign ones): absent keys give ``None``.
    """
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
        "wall_seconds": (rec.get("timings") or {}).get("wall_seconds"),
        "decisions_per_s": (rec.get("timings") or {}).get("decisions_per_s"),
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
