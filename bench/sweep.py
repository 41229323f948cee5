"""Seed grids through submitit, locally or on SLURM: ``python -m bench.sweep grid=<name>``.

``python -m bench.sweep grid=<name> [launcher=local|slurm] [dry_run=true] [overrides...]`` runs the
named grid ``bench/conf/grid/<name>.yaml``: every combination of its ``params`` is one job, and
every job is one ``bench.run`` run. An override of a grid axis (``seed=0,1``) replaces that axis;
other run overrides (``train.steps=1000``) apply to every job; ``hydra.launcher.<knob>=...``
(``partition``, ``timeout_min``, ``mem_gb``, ``gpus_per_node``, ``array_parallelism``...) adjusts
the launcher preset ``bench/conf/hydra/launcher/submitit_<launcher>.yaml``.

The sweep survives its jobs. Each job is waited for; a failed job never stops the others; the
outcome of every job (completed, failed, or died without a result) and whether its run left a
record is written to ``<hydra.sweep.dir>/sweep.json``, and the leaderboard lists the jobs that
left none. A preempted or timed-out SLURM job is requeued through submitit's checkpoint mechanism
(:class:`RunJob` is ``Checkpointable``: requeueing calls it again) and the run resumes from its
``checkpoint.pt``. Job states come from result files and ``squeue``, so clusters without
accounting (no ``sacct``) work too. Exit status: 0 when every job completed, else 1.
"""

from __future__ import annotations

import getpass
import itertools
import json
import math
import os
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import submitit
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from bench.records import RECORD_FILE, write_json_atomic

CONF_DIR = Path(__file__).resolve().parent / "conf"
GRID_DIR = CONF_DIR / "grid"
REPORT_FILE = "sweep.json"
REPORT_GLOB = f".sweeps/*/{REPORT_FILE}"  # under results_dir, as hydra.sweep.dir puts it
POLL_S = 2.0
# squeue states after which a job will not run again (a requeued job is PENDING or REQUEUED).
SLURM_ENDED = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "GONE",  # squeue no longer lists the job
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)


# -- composing runs ---------------------------------------------------------------------------


def compose(overrides: list[str]) -> DictConfig:
    """The ``bench.run`` config for ``overrides``, with its ``hydra`` node (launcher, choices)."""
    import hydra

    import bench.run  # noqa: F401  (registers the algo configs)

    with warnings.catch_warnings(), hydra.initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        # The presets deliberately share the plugin's schema names, so Hydra validates them.
        warnings.filterwarnings("ignore", message="(?s).*validated against ConfigStore schema")
        return hydra.compose("config", overrides=list(overrides), return_hydra_config=True)


def run_config(cfg: DictConfig) -> tuple[DictConfig, str, str]:
    """The run's config without its ``hydra`` node, its algorithm name and its budget name."""
    choices = cfg.hydra.runtime.choices
    algo, budget = choices["algo"], choices["budget"]
    cfg = cfg.copy()
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, algo, budget


def describe(cfg: DictConfig) -> dict[str, Any]:
    """What a job runs and where ``bench.run`` writes its record (``run_id`` is under results_dir).

    The directory comes from ``bench.run.Trainer``, exactly as ``bench.run.run`` builds it.
    """
    from bench.run import Trainer

    run_cfg, algo, budget = run_config(cfg)
    plain = OmegaConf.to_container(run_cfg, resolve=True)
    plain.pop("algo")
    directory = Trainer(plain, algo, budget, run_cfg.algo).dir
    return {
        "task": plain["task"],
        "algo": algo,
        "seed": plain["seed"],
        "run_id": str(directory.relative_to(plain["results_dir"])),
        "run_dir": str(directory.resolve()),
    }


class RunJob(submitit.helpers.Checkpointable):
    """One ``bench.run`` run as a submitit job; requeueing it resumes the run from its checkpoint."""

    def __init__(self, overrides: list[str], threads: int | None = None):
        self.overrides = list(overrides)
        self.threads = threads

    def __call__(self) -> dict[str, Any]:
        """Run (or resume) the run; returns its record's status and failure reason."""

        from bench.run import run

        threads = [f"threads={self.threads}"] if self.threads else []
        cfg, algo, budget = run_config(compose([*self.overrides, *threads]))
        record = run(cfg, algo, budget)
        return {"status": record["status"], "failure_reason": record.get("failure_reason")}


# -- expanding grids --------------------------------------------------------------------------


def available_grids() -> list[str]:
    return sorted(p.stem for p in GRID_DIR.glob("*.yaml"))


def load_grid(name: str) -> dict[str, Any]:
    """``{"params": {key: [values]}, "overrides": {key: value}}`` from ``conf/grid/<name>.yaml``.

    A grid with ``base: <grid>`` starts from that grid's overrides (its own replace same keys),
    so comparisons that share one budget state it once.
    """
    path = GRID_DIR / f"{name}.yaml"
    if not path.exists():
        raise SystemExit(f"unknown grid {name!r}; available: {', '.join(available_grids())}")
    grid = yaml.safe_load(path.read_text()) or {}
    base = load_grid(grid["base"])["overrides"] if grid.get("base") else {}
    return {
        "params": dict(grid.get("params") or {}),
        "overrides": {**base, **(grid.get("overrides") or {})},
    }


def grid_overrides(grid: dict[str, Any], overrides: list[str]) -> list[str]:
    """Grid axes as Hydra sweeps, then fixed values; the user's overrides replace same keys."""
    merged = {k: ",".join(str(v) for v in values) for k, values in grid["params"].items()}
    merged.update({k: str(v) for k, v in grid["overrides"].items()})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected key=value, got {item!r}")
        merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


def expand(overrides: list[str]) -> list[list[str]]:
    """Every combination of the sweep overrides (``a=1,2``, ``range(...)``): one list per job."""
    axes = []
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.get_key_element()
        axes.append(
            [f"{key}={v}" for v in o.sweep_string_iterator()]
            if o.is_sweep_override()
            else [o.input_line]
        )
    return [list(combo) for combo in itertools.product(*axes)]


def is_launcher_override(item: str) -> bool:
    return item.startswith(("hydra.", "hydra/"))


# -- launching --------------------------------------------------------------------------------


def make_executor(launcher: str, params: dict[str, Any]) -> submitit.AutoExecutor:
    """A submitit executor from a launcher preset (hydra-submitit-launcher's key mapping)."""
    params = {k: v for k, v in params.items() if k != "_target_"}
    init = {"folder": params.pop("submitit_folder")}
    if "max_num_timeout" in params:
        init[f"{launcher}_max_num_timeout"] = params.pop("max_num_timeout")
    executor = submitit.AutoExecutor(cluster=launcher, **init)
    generic = {
        "timeout_min",
        "cpus_per_task",
        "gpus_per_node",
        "tasks_per_node",
        "mem_gb",
        "nodes",
        "name",
        "stderr_to_stdout",
    }
    executor.update_parameters(
        **{k if k in generic else f"{launcher}_{k}": v for k, v in params.items()}
    )
    return executor


def submit_local(executor: submitit.AutoExecutor, jobs: list[RunJob], parallelism: int) -> list:
    """Submit local jobs, keeping at most ``parallelism`` running."""
    submitted: list = []
    for job in jobs:
        while sum(not j.done() for j in submitted) >= parallelism:
            time.sleep(POLL_S / 4)
        submitted.append(executor.submit(job))
    return submitted


def submit_slurm(executor: submitit.AutoExecutor, jobs: list[RunJob]) -> list:
    """Submit all jobs as one SLURM array (``array_parallelism`` of them at a time)."""
    with executor.batch():
        submitted = [executor.submit(job) for job in jobs]
    return submitted


def slurm_states() -> dict[str, str] | None:
    """``job id -> state`` for this user's jobs (array tasks one per line); ``None`` on error."""
    cmd = [
        "squeue",
        "--noheader",
        "--array",
        "--states=all",
        "--user",
        getpass.getuser(),
        "--format=%i %T",
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return dict(line.split()[:2] for line in out.splitlines() if len(line.split()) >= 2)


class SlurmWatch:
    """Decides when SLURM jobs are over without ``sacct``: from result files and ``squeue``.

    A job without a result is over once ``squeue`` shows an ended state (or no longer lists it)
    in ``confirm`` consecutive polls: a requeue can pass through PREEMPTED or NODE_FAIL first.
    """

    def __init__(self, confirm: int = 3):
        self.confirm = confirm
        self.ended_polls: dict[str, int] = {}

    def finished(self, submitted: list) -> list[bool]:
        states = slurm_states()
        done = []
        for job in submitted:
            if job.paths.result_pickle.exists():
                done.append(True)
                continue
            ended = states is not None and states.get(str(job.job_id), "GONE") in SLURM_ENDED
            polls = self.ended_polls.get(job.job_id, 0) + 1 if ended else 0
            self.ended_polls[job.job_id] = polls
            done.append(polls >= self.confirm)
        return done


def wait_all(launcher: str, submitted: list) -> None:
    """Block until every job is over (local: its process ended; SLURM: see :class:`SlurmWatch`)."""
    watch = SlurmWatch()

    def over() -> bool:
        return (
            all(j.done() for j in submitted)
            if launcher == "local"
            else all(watch.finished(submitted))
        )

    while not over():
        time.sleep(POLL_S)


def outcome(job) -> tuple[str, str | None]:
    """``("completed" | "failed" | "died", reason)`` of a finished submitit job."""
    if not job.paths.result_pickle.exists():
        return "died", f"job {job.job_id} ended without a result: {log_tail(job.paths.stderr)}"
    state, payload = submitit.core.utils.pickle_load(job.paths.result_pickle)
    if state != "success":  # the run raised; payload is the job's traceback
        return "failed", nonempty_lines(payload)[-1]
    if payload["status"] == "completed":
        return "completed", None
    return "failed", (nonempty_lines(payload["failure_reason"] or "") or [payload["status"]])[0]


def nonempty_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()] or [""]


def log_tail(path: Path, lines: int = 3) -> str:
    """The last lines of a job log, which name what killed the job."""
    try:
        text = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"no log at {path}"
    return " / ".join(text[-lines:]) if text else f"empty log {path}"


def claim_sweep_dir(path: Path) -> Path:
    """Create ``path`` (or ``path-1``, ``path-2``... when taken) exclusively and return it.

    The default name has one-second resolution: two sweeps started in the same second would
    otherwise share one folder and one would overwrite the other's ``sweep.json``.
    """
    candidate, taken = path, 0
    while True:
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            taken += 1
            candidate = path.with_name(f"{path.name}-{taken}")


def run_sweep(overrides: list[str], launcher: str, name: str = "bench") -> list[dict]:
    """Run every combination of ``overrides`` as one job each; returns the sweep report's entries.

    ``name`` names the jobs unless ``hydra.launcher.name`` is overridden.
    """
    run_args = [o for o in overrides if not is_launcher_override(o)]
    launcher_args = [
        f"hydra/launcher=submitit_{launcher}",
        *filter(is_launcher_override, overrides),
    ]
    combos = expand(run_args)
    sweep_dir = claim_sweep_dir(Path(compose([*combos[0], *launcher_args]).hydra.sweep.dir))
    launcher_args.append(f"hydra.sweep.dir={sweep_dir}")
    head = compose([*combos[0], *launcher_args])
    params = OmegaConf.to_container(head.hydra.launcher, resolve=True)
    if not any(o.startswith("hydra.launcher.name=") for o in overrides):
        params["name"] = name
    threads = params.get("cpus_per_task")
    jobs = [RunJob(combo, threads) for combo in combos]
    described = [describe(compose(combo)) for combo in combos]
    executor = make_executor(launcher, params)
    print(f"sweep dir {sweep_dir}: submitting {len(jobs)} jobs ({launcher})", flush=True)
    if launcher == "local":
        submitted = submit_local(executor, jobs, max(1, (os.cpu_count() or 1) // int(threads or 1)))
    else:
        submitted = submit_slurm(executor, jobs)
    wait_all(launcher, submitted)
    entries = [
        report_entry(i, *args)
        for i, args in enumerate(zip(jobs, submitted, described, strict=True))
    ]
    write_json_atomic(sweep_dir / REPORT_FILE, {"launcher": launcher, "jobs": entries})
    print_summary(entries, sweep_dir / REPORT_FILE)
    return entries


def report_entry(index: int, job: RunJob, submitted, run: dict[str, Any]) -> dict[str, Any]:
    state, reason = outcome(submitted)
    return {
        "index": index,
        "job_id": str(submitted.job_id),
        "overrides": job.overrides,
        **run,
        "has_record": (Path(run["run_dir"]) / RECORD_FILE).exists(),
        "outcome": state,
        "reason": reason,
        "log": str(submitted.paths.stderr),
    }


def print_summary(entries: list[dict], report: Path) -> None:
    counts = {k: sum(e["outcome"] == k for e in entries) for k in ("completed", "failed", "died")}
    print(
        f"sweep: {len(entries)} jobs: "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
        + f"; report {report}"
    )
    for e in entries:
        if e["outcome"] != "completed":
            record = "record kept" if e["has_record"] else "no record"
            print(
                f"  #{e['index']} {e['outcome']} ({record}): {' '.join(e['overrides'])}: {e['reason']}"
            )


def unrecorded_jobs(results_dir: str | Path) -> list[dict]:
    """Sweep jobs under ``results_dir`` whose run has left no record, even now (latest report wins).

    Unreadable reports are skipped: they only add to what the records already say.
    """
    results_dir = Path(results_dir)
    latest: dict[str, dict] = {}
    for path in sorted(results_dir.glob(REPORT_GLOB)):
        try:
            latest.update((e["run_id"], e) for e in json.loads(path.read_text())["jobs"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return [
        e
        for run_id, e in sorted(latest.items())
        if not (results_dir / run_id / RECORD_FILE).exists()
    ]


# -- command line -----------------------------------------------------------------------------


def parse_cli(argv: list[str]) -> tuple[str | None, str, bool, list[str]]:
    """Split ``grid=``, ``launcher=`` and ``dry_run=`` from the overrides for the runs."""
    grid, launcher, dry_run, rest = None, "local", False, []
    for item in argv:
        key, _, value = item.partition("=")
        if key == "grid":
            grid = value
        elif key == "launcher":
            launcher = value
        elif key == "dry_run":
            dry_run = value.lower() in ("1", "true", "yes")
        else:
            rest.append(item)
    if launcher not in ("local", "slurm"):
        raise SystemExit(f"launcher must be local or slurm, got {launcher!r}")
    return grid, launcher, dry_run, rest


def main(argv: list[str] | None = None) -> int:
    grid_name, launcher, dry_run, overrides = parse_cli(sys.argv[1:] if argv is None else argv)
    if grid_name is None:
        print(__doc__.split("\n\n")[0])
        print(
            f"usage: python -m bench.sweep grid=<{'|'.join(available_grids())}> [launcher=local|slurm] [overrides...]"
        )
        return 2
    args = grid_overrides(load_grid(grid_name), overrides)
    n_jobs = math.prod(len(g) for g in [expand([a]) for a in args if not is_launcher_override(a)])
    print(f"grid {grid_name}: {n_jobs} jobs on {launcher}: {shlex.join(args)}", flush=True)
    if dry_run:
        return 0
    entries = run_sweep(args, launcher, name=f"bench-{grid_name}")
    return 0 if all(e["outcome"] == "completed" for e in entries) else 1


if __name__ == "__main__":
    sys.exit(main())
