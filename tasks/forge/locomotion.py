"""D4RL locomotion forge: ``{hopper,halfcheetah,walker2d}-{level}-v2`` collected on gymnasium ``*-v5``.

Protocol (D4RL paper, section 5, and ``scripts/generation/mujoco/collect_data.py``), with SAC
behaviour policies trained by :mod:`tasks.forge.sac`:

* ``random``: the untrained actor (the SAC run's step-0 checkpoint);
* ``medium``: the first checkpoint whose evaluation return reaches about one third of the
  expert's (:func:`medium_threshold`, :func:`~tasks.forge.sac.select_medium_checkpoint`);
* ``expert``: the final checkpoint of the full run (absent from a set exported before the run
  ended);
* ``medium-replay``: the replay buffer up to the medium point, re-created from the checkpoints
  saved along the way (every 10k steps up to 100k, then every 50k: :func:`replay_schedule`):
  checkpoint ``k`` (saved at training step ``s_k``) is rolled out with its stochastic actions for
  the ``s_{k+1} - s_k`` env steps it covered during training (times ``scale``), episodes
  continuing from one checkpoint to the next as they did in the buffer;
* ``medium-expert``: the ``medium`` dataset followed by the ``expert`` dataset of the same seed
  and scale (so it equals their concatenation).

Actions are sampled from the stochastic policy; episodes are cut at 1000 steps and flagged
``timeouts``, falls are ``terminals``; ``infos/qpos``/``infos/qvel`` are the MuJoCo state before
each step and ``infos/action_log_probs`` the log-probability of the action, as in D4RL's files.
``random``, ``medium`` and ``expert`` hold ``1M x scale`` transitions, ``medium-expert`` twice
that, ``medium-replay`` ``medium_step x scale``.

Collection runs ``N_ENVS`` env slots (:class:`~tasks.forge.sac.EnvBatch`) in groups of
``GROUP_SIZE`` that step in lockstep with one batched policy forward per step; the groups are
spread over ``workers`` processes. Slot ``j`` has its own env seed and its own action-noise
generator, both drawn from ``SeedSequence([seed, level])``, and takes an equal share of every
phase; the file holds slot 0's transitions, then slot 1's, and so on. A dataset is therefore
deterministic for (seed, scale) on a machine, whatever the number of workers (the groups, and so
the inference batches, do not depend on it; the tests check the bits). Across machines, BLAS
kernels may round differently, so only the distribution is reproducible.

Departures from D4RL's protocol, on purpose:

* gymnasium ``*-v5`` envs on current MuJoCo instead of ``*-v3`` on mujoco-py; the observations
  have D4RL's layout;
* ``random`` is the untrained SAC actor, as the D4RL paper describes it (its ``collect_data.py``
  also has a uniform-action mode);
* ``expert`` is SAC after ``forge.train_steps`` (default 1M) env steps; D4RL's experts, HalfCheetah's
  above all, may have trained longer;
* D4RL kept whole episodes only and cut the file at 1M rows; here each slot's stream ends with a
  cut episode whose last step is flagged ``timeouts`` (its true ``next_observations`` is stored);
* ``medium-replay`` is re-rolled from checkpoints instead of copying SAC's buffer, so within a
  window the behaviour policy is the window's first checkpoint rather than the continuously
  updated one;
* the medium threshold is a D4RL-normalized score of 100/3 (one third of the way from D4RL's random
  to its expert reference return, :func:`medium_threshold`) rather than one third of our own
  expert's return (D4RL: "about one third" of its expert, whose return is that reference): the
  level then means the same score whatever our expert reaches, and ``medium`` and
  ``medium-replay`` ship as soon as SAC reaches it (``forge.until=medium``), before the expert run
  ends. Checkpoints are evaluated with stochastic actions.

Shipped behaviour policies live in ``tasks/policies/<env>/`` (``$DIFFRL_POLICY_DIR`` overrides):
``random|medium|expert.safetensors`` (float32 actor weights), ``replay.safetensors`` (the
checkpoints before the medium point, float16 to keep the package small: their rollouts use these
rounded weights) and ``policies.json`` (evaluation returns, sha256 of every file, training
provenance). :func:`retrain_behaviour_policies` writes such a set from a fresh SAC run;
:func:`untrained_policy_set` writes one holding only ``random``, which needs no training.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from importlib.metadata import version
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from tasks.forge import ForgeNotAvailableError, data_root
from tasks.forge.sac import (
    Checkpoint,
    EnvBatch,
    SACConfig,
    TanhGaussianActor,
    actor_from_tensors,
    evaluate_actor,
    make_actor,
    save_actor_weights,
    select_medium_checkpoint,
    train_sac,
)
from tasks.registry import LOCOMOTION
from tasks.spec import TaskSpec

STEPS_AT_SCALE_1 = 1_000_000
N_ENVS = 16
GROUP_SIZE = 8
MAX_EPISODE_STEPS = 1000
MEDIUM_FRACTION = 1 / 3
POLICY_EVAL_EPISODES = 20
POLICY_EVAL_SEED = 2_000_003
LEVEL_SEEDS = {"random": 0, "medium": 1, "expert": 2, "medium-replay": 3}
POLICY_FORMAT = 1
REPLAY_DENSE_UNTIL = 100_000
REPLAY_SPARSE_EVERY = 50_000
BOOL_KEYS = ("terminals", "timeouts")
# Env steps/s of tasks.forge.sac (one thread; 26-34 for Hopper, HalfCheetah and Walker2d alike)
# measured by benchmarks/forge.py on the 2-core development machine while other jobs loaded it.
MEASURED_SAC_STEPS_PER_S = 30
PACKAGE_POLICY_DIR = Path(__file__).resolve().parents[1] / "policies"


class BehaviourPoliciesMissingError(ForgeNotAvailableError):
    """The behaviour policies a locomotion level needs are not shipped; the message says how to
    train them."""


# ---------------------------------------------------------------------------------------------
# Behaviour-policy sets
# ---------------------------------------------------------------------------------------------


def policy_dir(env: str) -> Path:
    """Where ``env``'s behaviour policies live: ``$DIFFRL_POLICY_DIR/<env>`` or the package's."""
    root = os.environ.get("DIFFRL_POLICY_DIR")
    return (Path(root).expanduser() if root else PACKAGE_POLICY_DIR) / env


@dataclass
class ReplayCheckpoint:
    """One actor of the medium-replay schedule and the training steps it covered."""

    actor: TanhGaussianActor
    train_step: int
    covers_steps: int


@dataclass
class PolicySet:
    """An env's behaviour policies as loaded from :func:`policy_dir` (module docstring)."""

    env: str
    directory: Path
    manifest: dict[str, Any]

    def actor(self, name: str) -> TanhGaussianActor:
        entry = self._entry(name)
        return actor_from_tensors(load_file(self._checked(entry)))

    def replay(self) -> list[ReplayCheckpoint]:
        entry = self.manifest.get("replay")
        if entry is None:
            raise self._missing("medium-replay")
        tensors = load_file(self._checked(entry))
        out = []
        for item in entry["checkpoints"]:
            prefix = item["key"] + "/"
            weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            out.append(
                ReplayCheckpoint(
                    actor_from_tensors(weights), item["train_step"], item["covers_steps"]
                )
            )
        return out

    def describe(self, name: str) -> dict[str, Any]:
        """Provenance of one policy (file, sha256, training step, evaluation return)."""
        entry = self.manifest["replay"] if name == "replay" else self._entry(name)
        return {k: v for k, v in entry.items() if k != "checkpoints"}

    def _entry(self, name: str) -> dict[str, Any]:
        entry = self.manifest.get("policies", {}).get(name)
        if entry is None:
            raise self._missing(name)
        return entry

    def _checked(self, entry: dict[str, Any]) -> str:
        path = self.directory / entry["file"]
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            raise ValueError(
                f"{path}: sha256 {digest} does not match {entry['sha256']} in policies.json"
            )
        return str(path)

    def _missing(self, name: str) -> BehaviourPoliciesMissingError:
        return BehaviourPoliciesMissingError(missing_policies_message(self.env, name))


def load_policy_set(env: str) -> PolicySet:
    """The behaviour policies of ``env``; raises :class:`BehaviourPoliciesMissingError`."""
    directory = policy_dir(env)
    manifest_path = directory / "policies.json"
    if not manifest_path.exists():
        raise BehaviourPoliciesMissingError(missing_policies_message(env, "any"))
    return PolicySet(env, directory, json.loads(manifest_path.read_text()))


def policies_shipped(spec: TaskSpec) -> bool:
    """Whether every behaviour policy that ``spec``'s level collects with is shipped."""
    try:
        manifest = load_policy_set(spec.forge_params["env"]).manifest
    except BehaviourPoliciesMissingError:
        return False
    level = spec.forge_params["level"]
    if level == "medium-replay":
        return "replay" in manifest
    return all(part in manifest.get("policies", {}) for part in level_parts(level))


def level_parts(level: str) -> tuple[str, ...]:
    """The levels a level's data is collected as, in order: ``medium-expert`` is both."""
    return ("medium", "expert") if level == "medium-expert" else (level,)


def missing_policies_message(env: str, name: str) -> str:
    """What to run when ``env`` has no shipped ``name`` policy, with the expected training time."""
    hours = STEPS_AT_SCALE_1 / MEASURED_SAC_STEPS_PER_S / 3600
    return (
        f"no shipped {name} behaviour policy for {env} (looked in {policy_dir(env)}/policies.json). "
        f"Train them (SAC, {STEPS_AT_SCALE_1:,} env steps: about {hours:.0f} h on a shared 2-core "
        f"CPU at the measured ~{MEASURED_SAC_STEPS_PER_S} steps/s, less on an idle one; resumable) "
        "with:\n"
        f"  python -m bench.forge task={env}-medium-v2 forge.retrain=true\n"
        "(add forge.until=medium to stop once the medium level is reached: random, medium and "
        "medium-replay then forge, expert and medium-expert need the full run).\n"
        f"The random level needs no training: python -m bench.forge task={env}-random-v2"
    )


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_policy_set(
    env: str,
    directory: str | os.PathLike,
    actors: dict[str, TanhGaussianActor],
    returns: dict[str, Sequence[float]],
    train_steps: dict[str, int],
    replay: Sequence[tuple[int, int, TanhGaussianActor]] = (),
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a policy set: ``actors`` by name (``random``, ``medium``, ``expert``), their
    evaluation ``returns`` and training steps, the ``replay`` schedule as ``(train_step,
    covers_steps, actor)``, and ``provenance`` (training config, curve, machine) into
    ``policies.json``. Files are written first and the manifest last."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    env_id = LOCOMOTION[env][0]
    manifest: dict[str, Any] = {"format": POLICY_FORMAT, "env": env, "env_id": env_id}
    manifest["policies"] = {}
    for name, actor in actors.items():
        path = save_actor_weights(actor, directory / f"{name}.safetensors", {"env_id": env_id})
        manifest["policies"][name] = {
            "file": path.name,
            "sha256": file_sha256(path),
            "train_step": int(train_steps[name]),
            "eval_return_mean": float(np.mean(returns[name])),
            "eval_returns": [float(r) for r in returns[name]],
            "eval_protocol": f"{len(returns[name])} episodes, stochastic actions, seeds "
            f"{POLICY_EVAL_SEED}+i",
        }
    if replay:
        manifest["replay"] = _write_replay(directory, replay)
    manifest["provenance"] = provenance or {}
    tmp = directory / f".policies.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, directory / "policies.json")
    return directory / "policies.json"


def _write_replay(
    directory: Path, replay: Sequence[tuple[int, int, TanhGaussianActor]]
) -> dict[str, Any]:
    tensors, items = {}, []
    for train_step, covers, actor in replay:
        key = f"step{train_step:09d}"
        for name, value in actor.state_dict().items():
            tensors[f"{key}/{name}"] = value.detach().to(torch.float16).contiguous()
        items.append({"key": key, "train_step": int(train_step), "covers_steps": int(covers)})
    path = directory / "replay.safetensors"
    tmp = directory / f".replay.safetensors.{os.getpid()}.tmp"
    save_file(tensors, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return {
        "file": path.name,
        "sha256": file_sha256(path),
        "dtype": "float16",
        "medium_step": sum(item["covers_steps"] for item in items),
        "checkpoints": items,
    }


def export_policy_set(
    env: str, run_dir: str | os.PathLike, directory: str | os.PathLike | None = None
) -> Path:
    """Pick random / medium / expert and the replay schedule from a finished SAC run in
    ``run_dir``, evaluate the three policies again and write them as ``env``'s policy set."""
    run_dir = Path(run_dir)
    curve = json.loads((run_dir / "curve.json").read_text())
    checkpoints = curve["checkpoints"]
    means = [c["mean_return"] for c in checkpoints]
    threshold = medium_threshold(env)
    medium = select_medium_checkpoint(means, threshold)
    if medium == 0:
        raise ValueError(f"{run_dir}: the untrained actor already reaches the medium threshold")
    finished = checkpoints[-1]["step"] >= curve["config"]["total_steps"]
    picks = {"random": 0, "medium": medium}
    if finished:
        picks["expert"] = len(checkpoints) - 1
    env_id = LOCOMOTION[env][0]
    actors = {name: _load_run_actor(run_dir, checkpoints[i]) for name, i in picks.items()}
    returns = {
        name: evaluate_actor(actor, env_id, POLICY_EVAL_EPISODES, POLICY_EVAL_SEED).tolist()
        for name, actor in actors.items()
    }
    by_step = {c["step"]: c for c in checkpoints}
    schedule = replay_schedule(
        [c["step"] for c in checkpoints[:medium]], checkpoints[medium]["step"]
    )
    replay = [(step, covers, _load_run_actor(run_dir, by_step[step])) for step, covers in schedule]
    provenance = {
        "trainer": "tasks.forge.sac (lean SAC, rlkit settings)",
        "config": curve["config"],
        "medium_selection": {
            "rule": "first checkpoint whose return reaches fraction of D4RL's normalized range",
            "fraction": MEDIUM_FRACTION,
            "d4rl_ref_min_max": list(LOCOMOTION[env][1:]),
            "threshold": threshold,
            "checkpoint_index": medium,
        },
        "expert": "final checkpoint"
        if finished
        else f"not yet trained (run at step {checkpoints[-1]['step']:,} of "
        f"{curve['config']['total_steps']:,})",
        "curve": [{"step": c["step"], "mean_return": c["mean_return"]} for c in checkpoints],
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "versions": {p: version(p) for p in ("torch", "gymnasium", "mujoco", "numpy")},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    steps = {name: checkpoints[i]["step"] for name, i in picks.items()}
    return write_policy_set(
        env, directory or policy_dir(env), actors, returns, steps, replay, provenance
    )


def medium_threshold(env: str) -> float:
    """The return that makes a checkpoint ``medium``: ``MEDIUM_FRACTION`` of the way from D4RL's
    random to its expert reference return, i.e. a D4RL-normalized score of 100/3."""
    _, ref_min, ref_max = LOCOMOTION[env]
    return ref_min + MEDIUM_FRACTION * (ref_max - ref_min)


def replay_schedule(steps: Sequence[int], medium_step: int) -> list[tuple[int, int]]:
    """``(train_step, covers_steps)`` of the checkpoints that re-create the medium-replay buffer.

    Every checkpoint before ``REPLAY_DENSE_UNTIL`` (where SAC changes fastest), then one per
    ``REPLAY_SPARSE_EVERY`` steps, keeps the shipped set small; each covers the steps up to the
    next kept one, the last up to ``medium_step``.
    """
    kept = [s for s in steps if s < REPLAY_DENSE_UNTIL or s % REPLAY_SPARSE_EVERY == 0]
    return [(s, nxt - s) for s, nxt in pairwise([*kept, medium_step])]


def _load_run_actor(run_dir: Path, checkpoint: dict[str, Any]) -> TanhGaussianActor:
    return actor_from_tensors(load_file(run_dir / checkpoint["path"]))


def sac_run_dir(env: str, seed: int, total_steps: int) -> Path:
    """Where :func:`retrain_behaviour_policies` trains (and resumes) SAC for ``env``."""
    return data_root() / "sac" / f"{env}-seed{seed}-steps{total_steps}"


def retrain_behaviour_policies(
    env: str,
    total_steps: int = STEPS_AT_SCALE_1,
    seed: int = 0,
    progress: bool = True,
    directory: str | os.PathLike | None = None,
    until: str = "expert",
) -> Path:
    """Train SAC on ``env`` from scratch (resuming an interrupted run of the same settings) and
    write its behaviour-policy set; returns the ``policies.json`` path. ``until="medium"`` stops
    once a checkpoint reaches :func:`medium_threshold` and writes a set without ``expert``
    (``random``, ``medium``, ``medium-replay`` forge from it); a later call resumes the run."""
    if until not in ("medium", "expert"):
        raise ValueError(f"until must be 'medium' or 'expert', got {until!r}")
    cfg = SACConfig(env_id=LOCOMOTION[env][0], total_steps=total_steps, seed=seed)
    run_dir = sac_run_dir(env, seed, total_steps)
    run_dir.mkdir(parents=True, exist_ok=True)
    threshold = medium_threshold(env)

    def medium_reached(checkpoints: list[Checkpoint]) -> bool:
        return any(c.mean_return >= threshold for c in checkpoints[1:])

    train_sac(cfg, run_dir, progress, medium_reached if until == "medium" else None)
    return export_policy_set(env, run_dir, directory)


# ---------------------------------------------------------------------------------------------
# Collection
# ---------------------------------------------------------------------------------------------


@dataclass
class Phase:
    """Roll ``actor`` for ``steps`` transitions in total, shared equally by the env slots."""

    actor: TanhGaussianActor
    steps: int


def slot_counts(steps: int, n_slots: int) -> np.ndarray:
    """``steps`` split over slots: equal shares, the first ``steps % n_slots`` slots one more."""
    counts = np.full(n_slots, steps // n_slots)
    counts[: steps % n_slots] += 1
    return counts


def collect(
    env_id: str,
    phases: Sequence[Phase],
    seed: int,
    n_envs: int = N_ENVS,
    workers: int = 1,
    group_size: int = GROUP_SIZE,
    progress: bool = False,
    desc: str = "collect",
) -> dict[str, np.ndarray]:
    """Roll out ``phases`` in ``n_envs`` env slots (module docstring) and return D4RL arrays.

    Slots run in groups of ``group_size`` that share one batched policy forward per step; the
    groups are spread over ``workers`` processes (1: in this process, one group after another).
    """
    n_envs = min(n_envs, max(phase.steps for phase in phases))
    slots = [slot.spawn(2) for slot in np.random.SeedSequence(seed).spawn(n_envs)]
    seeds = [(int(env_seq.generate_state(1)[0]), noise_seq) for env_seq, noise_seq in slots]
    counts = np.stack([slot_counts(phase.steps, n_envs) for phase in phases])  # [phase, slot]
    tensors = [{k: v.clone() for k, v in phase.actor.state_dict().items()} for phase in phases]
    jobs = [
        (env_id, tensors, seeds[start : start + group_size], counts[:, start : start + group_size])
        for start in range(0, n_envs, group_size)
    ]
    total = int(counts.sum())
    with tqdm(total=total, desc=desc, unit="step", disable=not progress, mininterval=0.5) as bar:
        if workers <= 1:
            parts = [_collect_slots(*job, report=bar.update) for job in jobs]
        else:
            parts = _collect_in_workers(jobs, min(workers, len(jobs)), bar)
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _collect_in_workers(jobs: list[tuple], workers: int, bar: tqdm) -> list[dict[str, np.ndarray]]:
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(counter,)
    ) as pool:
        futures = [pool.submit(_collect_slots_in_worker, *job) for job in jobs]
        while not all(f.done() for f in futures):
            wait(futures, timeout=0.5)
            bar.update(counter.value - bar.n)
        parts = [f.result() for f in futures]
    bar.update(bar.total - bar.n)
    return parts


_COUNTER = None


def _init_worker(counter) -> None:
    global _COUNTER
    _COUNTER = counter


def _collect_slots_in_worker(*job) -> dict[str, np.ndarray]:
    def report(n: int) -> None:
        with _COUNTER.get_lock():
            _COUNTER.value += n

    return _collect_slots(*job, report=report)


def _collect_slots(
    env_id: str,
    phase_tensors: list[dict[str, torch.Tensor]],
    seeds: list[tuple[int, np.random.SeedSequence]],
    counts: np.ndarray,
    report: Callable[[int], None],
) -> dict[str, np.ndarray]:
    """Collect ``counts[phase, slot]`` steps per phase in lockstep; arrays ordered slot-major.

    ``seeds`` holds, per slot, the env's reset seed and the seed of its action noise. Inference
    runs on one thread (restored afterwards), in workers and in-process alike, so the bits do not
    depend on where a group runs.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _collect_slots_single_thread(env_id, phase_tensors, seeds, counts, report)
    finally:
        torch.set_num_threads(threads)


def _collect_slots_single_thread(
    env_id: str,
    phase_tensors: list[dict[str, torch.Tensor]],
    seeds: list[tuple[int, np.random.SeedSequence]],
    counts: np.ndarray,
    report: Callable[[int], None],
) -> dict[str, np.ndarray]:
    envs = EnvBatch(env_id, [env_seed for env_seed, _ in seeds], MAX_EPISODE_STEPS)
    rngs = [np.random.default_rng(noise_seq) for _, noise_seq in seeds]
    n_slots, obs_dim = envs.obs.shape
    act_dim = phase_tensors[0]["last_fc.weight"].shape[0]
    model = envs.envs[0].model
    horizon = int(counts.max(axis=1).sum())
    shapes = {
        "observations": (obs_dim,),
        "actions": (act_dim,),
        "rewards": (),
        "terminals": (),
        "timeouts": (),
        "next_observations": (obs_dim,),
        "infos/qpos": (model.nq,),
        "infos/qvel": (model.nv,),
        "infos/action_log_probs": (),
    }
    buf = {
        key: np.zeros((horizon, n_slots, *shape), bool if key in BOOL_KEYS else np.float32)
        for key, shape in shapes.items()
    }
    valid = np.zeros((horizon, n_slots), bool)
    t, pending = 0, 0
    for tensors, phase_counts in zip(phase_tensors, counts, strict=True):
        actor = actor_from_tensors(tensors)
        noise = [
            rng.standard_normal((int(c), act_dim))
            for rng, c in zip(rngs, phase_counts, strict=True)
        ]
        for k in range(int(phase_counts.max())):
            live = np.flatnonzero(phase_counts > k)
            obs = envs.obs[live].astype(np.float32)
            qpos, qvel = envs.physics()
            eps = np.stack([noise[j][k] for j in live]).astype(np.float32)
            with torch.inference_mode():
                action, logp = actor.sample(torch.from_numpy(obs), torch.from_numpy(eps))
            action = action.numpy()
            out = envs.step(action, live)
            row = {
                "observations": obs,
                "actions": action,
                "rewards": out.rewards,
                "terminals": out.terminated,
                "timeouts": out.truncated,
                "next_observations": out.next_obs,
                "infos/qpos": qpos[live],
                "infos/qvel": qvel[live],
                "infos/action_log_probs": logp.numpy(),
            }
            for key, value in row.items():
                buf[key][t, live] = value
            valid[t, live] = True
            t += 1
            pending += len(live)
            if t % 100 == 0:
                report(pending)
                pending = 0
    envs.close()
    report(pending)
    return _slot_major(buf, valid)


def _slot_major(buf: dict[str, np.ndarray], valid: np.ndarray) -> dict[str, np.ndarray]:
    """Per-slot streams concatenated in slot order; each stream's last step ends its episode."""
    out = {}
    for key, value in buf.items():
        out[key] = np.concatenate([value[valid[:, j], j] for j in range(valid.shape[1])])
    lengths = valid.sum(axis=0)
    ends = (np.cumsum(lengths) - 1)[lengths > 0]
    out["timeouts"][ends] |= ~out["terminals"][ends]
    return out


# ---------------------------------------------------------------------------------------------
# The forge protocol
# ---------------------------------------------------------------------------------------------


def forge_locomotion(
    spec: TaskSpec,
    scale: float,
    seed: int,
    progress: bool = True,
    n_envs: int = N_ENVS,
    workers: int = 1,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Collect ``spec``'s level with the shipped behaviour policies (module docstring).

    ``workers`` > 1 spreads the env groups over processes (the data do not change). It pays on an
    idle multi-core machine; on the shared 2-core development machine one in-process worker was
    faster (each spawned worker also needs seconds to import torch and gymnasium).
    """
    env, level = spec.forge_params["env"], spec.forge_params["level"]
    policies = load_policy_set(env)
    steps = max(1, round(STEPS_AT_SCALE_1 * scale))
    parts = level_parts(level)
    arrays_parts, used = [], []
    for part in parts:
        phases, described = _phases(policies, part, scale, steps)
        total = sum(p.steps for p in phases)
        arrays_parts.append(
            collect(
                spec.env_id,
                phases,
                _level_seed(seed, part),
                n_envs=n_envs,
                workers=workers,
                progress=progress,
                desc=f"forge {spec.task_id} ({part})"
                if len(parts) > 1
                else f"forge {spec.task_id}",
            )
        )
        used.append({"level": part, "transitions": total, "policy": described})
    arrays = {k: np.concatenate([a[k] for a in arrays_parts]) for k in arrays_parts[0]}
    params = {
        "env": env,
        "env_id": spec.env_id,
        "level": level,
        "transitions": len(arrays["observations"]),
        "max_episode_steps": MAX_EPISODE_STEPS,
        "n_envs": n_envs,
        "group_size": GROUP_SIZE,
        "workers": workers,
        "actions": "sampled from the stochastic (tanh-Gaussian) policy",
        "parts": used,
        "policy_set": {"directory": str(policies.directory), "format": policies.manifest["format"]},
        "protocol": "D4RL locomotion (SAC behaviour policies), see tasks.forge.locomotion",
    }
    return arrays, {"params": params}


def _phases(
    policies: PolicySet, level: str, scale: float, steps: int
) -> tuple[list[Phase], dict[str, Any]]:
    if level != "medium-replay":
        return [Phase(policies.actor(level), steps)], policies.describe(level)
    replay = policies.replay()
    phases = [Phase(c.actor, max(1, round(c.covers_steps * scale))) for c in replay]
    return phases, policies.describe("replay")


def _level_seed(seed: int, level: str) -> int:
    return int(np.random.SeedSequence([seed, LEVEL_SEEDS[level]]).generate_state(1)[0])


def untrained_policy_set(
    env: str, seed: int = 0, directory: str | os.PathLike | None = None
) -> Path:
    """Write a set holding only ``random``: the actor a seed-``seed`` SAC run starts from."""
    env_id = LOCOMOTION[env][0]
    torch.manual_seed(seed)
    actor = make_actor(env_id)
    returns = evaluate_actor(actor, env_id, POLICY_EVAL_EPISODES, POLICY_EVAL_SEED).tolist()
    provenance = {
        "trainer": "tasks.forge.sac (untrained: step 0 of a SAC run)",
        "config": asdict(SACConfig(env_id=env_id, seed=seed)),
        "versions": {p: version(p) for p in ("torch", "gymnasium", "mujoco", "numpy")},
    }
    return write_policy_set(
        env,
        directory or policy_dir(env),
        {"random": actor},
        {"random": returns},
        {"random": 0},
        (),
        provenance,
    )
