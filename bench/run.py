"""``python -m bench.run algo=<name> task=<id> seed=<n>``: train, evaluate, write one run record.

Flow: resolve the config -> the task's spec and dataset (``tasks``) -> the agent (``algorithms``)
-> train with periodic evaluation and checkpoints -> final evaluation -> ``record.json``.
A completed run is not re-run unless ``force=true``; a killed run resumes from its checkpoint;
a run whose losses or actions turn non-finite is recorded as failed, with the reason and no score.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import platform
import resource
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

import algorithms
from algorithms.common.contract import OnlineAgent, TaskInfo
from algorithms.common.defaults import paper_budget
from bench.augment import augment_info, augmented_dataset
from bench.checks import ConfigError, check_run_config
from bench.data import compute_stats, make_sampler
from bench.evaluate import DivergenceError, EvalResult, evaluate
from bench.multiagent import multiagent_task_info
from bench.online import is_online_algorithm, run_online
from bench.records import (
    RECORD_FILE,
    BestEvaluation,
    Budget,
    CurvePoint,
    EnvInfo,
    Evaluation,
    Memory,
    Reference,
    RunRecord,
    SafetyInfo,
    Status,
    read_record,
    write_record,
)
from bench.threads import claim_cores
from tasks.envs import make_env
from tasks.progress import progress
from tasks.registry import get_task
from tasks.safety import resolve_budget
from tasks.sources import load_dataset
from tasks.spec import Dataset, DatasetFormatError, DatasetNotFoundError, TaskSpec, UnknownTaskError

console = Console(stderr=True, highlight=False, soft_wrap=True)
CHECKPOINT_FILE = "checkpoint.pt"
# Keys that do not change what a run computes, so they stay out of the config hash.
UNHASHED_KEYS = ("seed", "results_dir", "device", "force", "threads", "compile")


def register_algorithms() -> None:
    """Register each algorithm's ``Config`` dataclass as the Hydra option ``algo=<name>``."""
    store = ConfigStore.instance()
    for name in algorithms.available():
        store.store(group="algo", name=name, node=algorithms.load(name).Config)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def config_hash(cfg: dict, algo: str, params: dict) -> str:
    """Short hash of everything that changes what a run computes (not its seed or paths).

    Unset safety overrides change nothing, so they stay out of the hash (older runs keep theirs);
    so do the ``online`` knobs of an offline algorithm.
    """
    keyed = {k: v for k, v in cfg.items() if k not in UNHASHED_KEYS}
    if not any((keyed.get("safety") or {}).values()):
        keyed.pop("safety", None)
    if not is_online_algorithm(algo):
        keyed.pop("online", None)
    if (keyed.get("augment") or {}).get("name", "none") == "none":
        keyed.pop("augment", None)  # plain runs keep the hash they had before augmentations
    blob = json.dumps({"algo": algo, "params": params, **keyed}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def run_directory(cfg: dict, algo: str, params: dict) -> Path:
    """``<results_dir>/<task>/<algo>/s<seed>-<config hash>``: one directory per distinct run."""
    name = f"s{cfg['seed']}-{config_hash(cfg, algo, params)}"
    return Path(cfg["results_dir"]) / cfg["task"] / algo / name


def task_info(spec: TaskSpec, dataset: Dataset, safety: dict | None = None) -> TaskInfo:
    """What the agent may know about the task, read off its environment and data (whose widths
    must fit the environment).

    On a safe task the cost budget is resolved here (``safety.budget`` / ``safety.budget_ratio``
    override the task's, see :func:`tasks.safety.resolve_budget`).
    A multi-agent task's info comes from its batched worlds (:mod:`bench.multiagent`).
    """
    if spec.kind == "multi-agent":
        return multiagent_task_info(spec, dataset)
    env = make_env(spec)
    try:
        check_widths(spec, dataset, env)
        budget = None
        if spec.safety is not None:
            budget, _ = safety_budget(spec, dataset, safety or {})
        return env_task_info(spec, env, budget)
    finally:
        env.close()


def env_task_info(spec: TaskSpec, env, cost_budget: float | None = None) -> TaskInfo:
    """The :class:`TaskInfo` of ``spec`` from its environment's spaces; a safe task's also carries
    its constraints and ``cost_budget``."""
    space = env.action_space
    info = TaskInfo(
        task_id=spec.task_id,
        kind=spec.kind,
        obs_dim=int(np.prod(env.observation_space.shape)),
        act_dim=int(np.prod(space.shape)),
        action_low=float(np.min(space.low)),
        action_high=float(np.max(space.high)),
        max_episode_steps=spec.max_episode_steps,
        goal_dims=spec.goal_dims,
    )
    if spec.safety is None:
        return info
    return dataclasses.replace(
        info,
        cost_budget=cost_budget,
        cost_discount=spec.safety.cost_discount,
        barriers=spec.safety.barriers,
        dataset_task=spec.dataset_task,
    )


def check_widths(spec: TaskSpec, dataset: Dataset, env) -> None:
    """Raise :class:`DatasetFormatError` when the data's observation or action width does not
    fit the environment that evaluates the task (one line, before any training)."""
    arrays = dataset.arrays
    for key, space in (("observations", env.observation_space), ("actions", env.action_space)):
        width, expected = arrays[key].shape[-1], int(np.prod(space.shape))
        if width != expected:
            raise DatasetFormatError(
                f"{dataset.provenance.path}: {key} are {width} wide, but {spec.env_id} "
                f"({spec.task_id}) has {expected}; this file is not {spec.task_id}'s data"
            )


def safety_budget(spec: TaskSpec, dataset: Dataset, overrides: dict) -> tuple[float, dict]:
    """A safe task's episode cost budget and how it was set."""
    return resolve_budget(
        spec.safety,
        dataset.arrays["costs"],
        dataset.episode_ends(),
        dataset.provenance.source,
        budget=overrides.get("budget"),
        budget_ratio=overrides.get("budget_ratio"),
    )


def safety_record(spec: TaskSpec, dataset: Dataset, overrides: dict) -> SafetyInfo | None:
    """The record's description of a safe task: cost signal, budget and its rule, constraints."""
    if spec.safety is None:
        return None
    budget, rule = safety_budget(spec, dataset, overrides)
    return SafetyInfo(
        cost=spec.safety.cost,
        cost_discount=spec.safety.cost_discount,
        budget=budget,
        barriers=[repr(b) for b in spec.safety.barriers],
        **rule,
    )


def apply_paper_budget(cfg: dict, algo: str, budget: str) -> dict:
    """``cfg`` with ``budget=paper``'s open knobs (``null`` in ``conf/budget/paper.yaml``) set to
    the algorithm's published budget on the task (its ``PAPER_BUDGET``); other budgets, and knobs
    set on the command line, are left as they are."""
    if budget != "paper":
        return cfg
    module = algorithms.load(algo)
    if not hasattr(module, "PAPER_BUDGET"):
        raise ConfigError(f"budget=paper: algorithms.{algo} publishes no PAPER_BUDGET")
    task = get_task(cfg["task"])
    try:
        published = paper_budget(module.PAPER_BUDGET, task)
    except KeyError as e:
        sources = "; ".join(module.PAPER_BUDGET.sources(task)) or "no source"
        raise ConfigError(f"budget=paper: algorithms.{algo} has {e.args[0]} ({sources})") from e
    train, evaluation = dict(cfg["train"]), dict(cfg["eval"])
    for section, key, value in (
        (train, "steps", published["train_steps"]),
        (train, "eval_every", published["eval_every"]),
        (evaluation, "episodes", published["eval_episodes"]),
        (evaluation, "periodic_episodes", published["eval_episodes"]),
    ):
        if section.get(key) is None:
            section[key] = value
    return {**cfg, "train": train, "eval": evaluation}


def build_agent(module, algo_cfg: DictConfig, info: TaskInfo, dataset: Dataset, device, steps: int):
    """``module.Agent`` built from its resolved Config (contract: ``resolve``, then ``Agent``) and
    told the run's ``steps``; returns ``(agent, resolved config)``."""
    stats = compute_stats(dataset)
    try:
        config = module.resolve(OmegaConf.to_object(algo_cfg), info, stats)
    except ValueError as e:  # a knob outside its valid values, named by the algorithm
        raise ConfigError(str(e)) from e
    return module.Agent(config, info, stats, device, steps), config


def compile_networks(agent, device: torch.device) -> int:
    """``compile=true``: every network the agent declares (``Checkpointable.networks``) compiled
    in place by ``torch.compile`` (CUDA graphs on a GPU); its state keys stay as they were, so
    checkpoints move between compiled and eager runs. Returns how many were compiled."""
    mode = "reduce-overhead" if device.type == "cuda" else None
    networks = agent.networks()
    for net in networks:
        net.compile(mode=mode)
    return len(networks)


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries that decide a result, and the git commit of this checkout."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("diffrl-bench", "torch", "numpy", "gymnasium", "gymnasium-robotics", "mujoco"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    versions["git_commit"] = git_commit()
    return versions


def git_commit() -> str | None:
    """HEAD of the checkout this code runs from (``+dirty`` when it has local changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def peak_memory(device: torch.device) -> Memory:
    """Peak resident memory of this process and peak CUDA memory allocated on ``device``."""
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    cuda_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return Memory(peak_rss_mb=round(rss_mb, 1), peak_cuda_mb=cuda_mb)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Trainer:
    """Owns one run: training loop, periodic evaluation, checkpoints and the record."""

    def __init__(self, cfg: dict, algo: str, budget: str, algo_cfg: DictConfig):
        # Whoever names the run's directory (bench.sweep too) sees the published budget's steps.
        self.cfg = apply_paper_budget(cfg, algo, budget)
        self.algo, self.budget, self.algo_cfg = algo, budget, algo_cfg
        self.params = OmegaConf.to_container(algo_cfg, resolve=True)
        self.dir = run_directory(self.cfg, algo, self.params)
        self.device = resolve_device(self.cfg["device"])
        self.record: RunRecord | None = None  # set once the agent is built, or from a checkpoint

    # -- state -------------------------------------------------------------------------------
    def new_record(
        self, spec: TaskSpec, dataset: Dataset, batch_size: int, resolved: Any
    ) -> RunRecord:
        """The record of a run that starts now: everything known before training (``resolved``:
        the algorithm's Config after ``resolve``)."""
        return RunRecord(
            run_id=str(self.dir.relative_to(self.cfg["results_dir"])),
            algo=self.algo,
            task=self.cfg["task"],
            seed=self.cfg["seed"],
            config={"algo": self.params, **self.cfg, "algo_resolved": dataclasses.asdict(resolved)},
            config_hash=config_hash(self.cfg, self.algo, self.params),
            budget=Budget(
                name=self.budget,
                train_steps=self.cfg["train"]["steps"],
                batch_size=batch_size,
                eval_episodes=self.cfg["eval"]["episodes"],
            ),
            dataset=dataset.provenance,
            env=EnvInfo(id=spec.env_id, kwargs=spec.env_kwargs),
            reference=Reference(
                min=dataset.ref_min_score,
                max=dataset.ref_max_score,
                origin="d4rl" if spec.ref_min_score is not None else "dataset",
            ),
            safety=safety_record(spec, dataset, self.cfg.get("safety") or {}),
            augment=augment_info(dataset),
            versions=library_versions(),
            device=str(self.device),
            started=now(),
        )

    def save_checkpoint(self, step: int, agent, sampler, train_seconds: float) -> None:
        state = {
            "step": step,
            "agent": agent.state_dict(),
            "sampler_rng": sampler.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "train_seconds": train_seconds,
            "record": self.record.to_dict(),
        }
        tmp = self.dir / f".{CHECKPOINT_FILE}.tmp"
        torch.save(state, tmp)
        tmp.replace(self.dir / CHECKPOINT_FILE)

    def load_checkpoint(self, agent, sampler) -> tuple[int, float]:
        path = self.dir / CHECKPOINT_FILE
        if not path.exists():
            return 0, 0.0
        state = torch.load(path, map_location=self.device, weights_only=False)
        agent.load_state_dict(state["agent"])
        sampler.generator.set_state(state["sampler_rng"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        self.record = RunRecord.from_dict(state["record"])  # a version-1 checkpoint too
        self.record.resumed += 1
        console.print(f"resuming from step {state['step']} ({path})")
        return state["step"], state["train_seconds"]

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, agent, spec, dataset, episodes: int, seed: int) -> EvalResult:
        return evaluate(
            agent,
            spec,
            episodes=episodes,
            seed=seed,
            ref_min=dataset.ref_min_score,
            ref_max=dataset.ref_max_score,
            max_envs=self.cfg["eval"]["max_envs"],
            budget=self.record.safety.budget if self.record.safety is not None else None,
        )

    def periodic_eval(self, agent, spec, dataset, step: int) -> None:
        """Evaluate on a few episodes: a point of the curve, and the best so far (optimistic)."""
        seed = 1_000_000 + 1000 * self.cfg["seed"] + len(self.record.curve) * 100
        result = self.evaluate(agent, spec, dataset, self.cfg["eval"]["periodic_episodes"], seed)
        evaluation = BestEvaluation(step=step, **result.summary())  # the best, if it beats it
        self.record.curve.append(CurvePoint.of(evaluation))
        best = self.record.best
        if best is None or evaluation.normalized_mean > best.normalized_mean:
            self.record.best = evaluation

    # -- training ----------------------------------------------------------------------------
    def log_losses(self, step: int, losses: dict[str, torch.Tensor]) -> dict[str, float]:
        values = {k: float(v) for k, v in losses.items()}
        bad = [k for k, v in values.items() if not np.isfinite(v)]
        if bad:
            raise DivergenceError(f"non-finite loss {bad} at step {step}")
        self.record.losses.append({"step": step, **{k: round(v, 6) for k, v in values.items()}})
        return values

    def train(self, agent, sampler, spec, dataset) -> None:
        t = self.cfg["train"]
        step, train_seconds = self.load_checkpoint(agent, sampler)
        bar = progress(t["steps"], f"train {self.algo} {spec.task_id}", "step", initial=step)
        tick = time.perf_counter()
        while step < t["steps"]:
            losses = agent.update(sampler.sample())
            step += 1
            bar.update()
            if step % t["log_every"] == 0 or step == t["steps"]:
                bar.set_postfix(self.log_losses(step, losses), refresh=False)
            if t["eval_every"] and step % t["eval_every"] == 0 and step < t["steps"]:
                train_seconds += time.perf_counter() - tick
                self.periodic_eval(agent, spec, dataset, step)
                tick = time.perf_counter()
            if step % t["checkpoint_every"] == 0 and step < t["steps"]:
                self.save_checkpoint(
                    step, agent, sampler, train_seconds + time.perf_counter() - tick
                )
        bar.close()
        train_seconds += time.perf_counter() - tick
        self.save_checkpoint(step, agent, sampler, train_seconds)  # the trained agent, kept
        self.record.timings.train_seconds = round(train_seconds, 2)
        self.record.timings.train_steps_per_s = round(t["steps"] / max(train_seconds, 1e-9), 2)

    def run(self) -> RunRecord:
        """Train and evaluate; return the final record (already written)."""
        cfg = self.cfg
        spec = get_task(cfg["task"])
        existing = self.dir / RECORD_FILE
        if existing.exists() and not cfg["force"]:
            rec = read_record(existing)
            if rec["status"] == "completed":
                console.print(f"already completed: {existing} (force=true re-runs it)")
                return RunRecord.from_dict(rec)
        wall = time.perf_counter()
        data = cfg["data"]
        dataset = load_dataset(
            spec, source=data["source"], scale=data["scale"], forge_seed=data["forge_seed"]
        )
        dataset = augmented_dataset(spec, dataset, cfg, self.device, self.budget)  # or as it is
        torch.manual_seed(cfg["seed"])
        np.random.seed(cfg["seed"])
        info = task_info(spec, dataset, cfg.get("safety"))
        agent, resolved = build_agent(
            algorithms.load(self.algo),
            self.algo_cfg,
            info,
            dataset,
            self.device,
            cfg["train"]["steps"],
        )
        if cfg["compile"]:
            compile_networks(agent, self.device)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.yaml").write_text(OmegaConf.to_yaml({"algo": self.algo_cfg, **cfg}))
        sampler = make_sampler(dataset, agent.data_spec, self.device, seed=cfg["seed"])
        self.record = self.new_record(spec, dataset, agent.data_spec.batch_size, resolved)
        try:
            self.train(agent, sampler, spec, dataset)
            final = self.evaluate(
                agent, spec, dataset, cfg["eval"]["episodes"], seed=10_000 * (cfg["seed"] + 1)
            )
        except DivergenceError as e:
            return self.finish("failed", reason=str(e))
        except Exception as e:
            self.record.failure_traceback = traceback.format_exc(limit=5)
            self.finish("failed", reason=one_line(e))
            raise
        self.record.final = Evaluation(step=cfg["train"]["steps"], **final.summary())
        timings = self.record.timings
        timings.decisions_per_s = round(final.decisions / max(final.act_seconds, 1e-9), 1)
        timings.wall_seconds = round(time.perf_counter() - wall, 2)
        timings.threads = torch.get_num_threads()
        if isinstance(agent, OnlineAgent):  # fine-tune online; the score above is pre-trained
            return run_online(self, agent, spec, dataset)
        return self.finish("completed")

    def finish(self, status: Status, reason: str | None = None) -> RunRecord:
        """Close the record (a failed run keeps no score) and write it."""
        record = self.record
        record.status, record.failure_reason = status, reason
        record.finished, record.memory = now(), peak_memory(self.device)
        if status == "failed":
            record.final = record.best = None
        write_record(self.dir / RECORD_FILE, record)
        return record


def one_line(error: BaseException) -> str:
    """``Type: message`` on one line (the traceback goes to the record beside it)."""
    return " ".join(f"{type(error).__name__}: {error}".split())


def report(record: RunRecord, path: Path) -> None:
    """Print the outcome of a run: its score, or why it failed, and where the record is."""
    if record.status != "completed":
        console.print(f"[bold red]run failed[/]: {record.failure_reason}\nrecord: {path}")
        return
    final = record.final
    line = f"[bold]{record.algo} on {record.task}[/] (seed {record.seed}, data {record.dataset.source}): "
    line += f"normalized score {final.normalized_mean:.1f} ± {final.normalized_std:.1f}"
    line += f" (return {final.return_mean:.1f}, {final.episodes} episodes)"
    if final.success_rate is not None:
        line += f", success {100 * final.success_rate:.0f}%"
    if final.cost_mean is not None:
        line += f", cost {final.cost_mean:.2f} (budget {final.cost_budget:.2f}"
        line += f", {100 * final.over_budget_rate:.0f}% of episodes over)"
    if final.barrier_min_executed is not None:
        line += f", min barrier {final.barrier_min_executed:.3f}"
    console.print(line)
    console.print(f"record: {path}")


def run(cfg: DictConfig, algo: str, budget: str) -> dict:
    """Run one configuration (the programmatic entry point behind the CLI); returns the record as
    ``record.json`` holds it."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    algo_cfg = cfg.algo
    plain.pop("algo")
    plain = apply_paper_budget(plain, algo, budget)
    check_run_config(plain)
    cores = claim_cores(plain["threads"], log=console.print)
    try:
        torch.set_num_threads(cores.threads)
        trainer = Trainer(plain, algo, budget, algo_cfg)
        record = trainer.run()
    finally:
        cores.release()
    report(record, trainer.dir / RECORD_FILE)
    return record.to_dict()


def run_overrides(overrides: list[str]) -> dict:
    """Compose the CLI config from ``key=value`` overrides and run it in this process."""
    with hydra.initialize_config_module("bench.conf", version_base="1.3"):
        cfg = hydra.compose("config", overrides=overrides, return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    with open_dict(cfg):
        del cfg["hydra"]
    return run(cfg, choices["algo"], choices["budget"])


register_algorithms()


def cli(cfg: DictConfig) -> None:
    """Run the composed config; exit 2 on bad input, 1 when a single run failed."""
    hc = HydraConfig.get()
    try:
        record = run(cfg, hc.runtime.choices["algo"], hc.runtime.choices["budget"])
    except (ConfigError, UnknownTaskError, DatasetNotFoundError, DatasetFormatError) as e:
        console.print(f"[bold red]error[/]: {e}")
        sys.exit(2)
    if record["status"] != "completed" and hc.mode == RunMode.RUN:
        sys.exit(1)


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    cli(cfg)


if __name__ == "__main__":
    # Import by name so that submitit pickles ``main`` by reference, not with its globals.
    from bench.run import main as imported_main

    imported_main()
