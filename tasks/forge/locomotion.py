"""D4RL locomotion forge: ``{hopper,halfcheetah,walker2d}-{level}-v2`` collected on gymnasium ``*-v5``.

Protocol (D4RL paper, section 5, and ``scripts/generation/mujoco/collect_data.py``), with SAC
behaviour policies trained by :mod:`tasks.forge.sac`, stored by :mod:`tasks.forge.policies` and
rolled out by :mod:`tasks.forge.collect`:

* ``random``: the untrained actor (the SAC run's step-0 checkpoint);
* ``medium``: the checkpoint whose evaluation return is closest to the mean episode return of
  D4RL's ``<env>-medium-v2`` dataset (:data:`D4RL_DATASET_RETURNS`), among the checkpoints up
  to the first that reaches it (:func:`pick_medium`): the level users know, wherever our SAC run
  passes it;
* ``expert``: the first checkpoint whose return reaches the mean of D4RL's ``<env>-expert-v2``
  data, or the final checkpoint of the ``forge.train_steps`` (1M) run, whichever comes first
  (:func:`pick_expert`);
* ``medium-replay``: the replay buffer up to the medium point, re-created from the checkpoints
  saved along the way (every 10k steps up to 100k, then every 50k: :func:`replay_schedule`):
  checkpoint ``k`` (saved at training step ``s_k``) is rolled out with its stochastic actions for
  the ``s_{k+1} - s_k`` env steps it covered during training (times ``scale``), episodes
  continuing from one checkpoint to the next as they did in the buffer;
* ``medium-expert``: the ``medium`` dataset followed by the ``expert`` dataset of the same seed
  and scale (so it equals their concatenation).

``random``, ``medium`` and ``expert`` hold ``1M x scale`` transitions, ``medium-expert`` twice
that, ``medium-replay`` ``medium_step x scale``. Each level's env slots draw their seeds from
``SeedSequence([seed, level])``.

Departures from D4RL's protocol, on purpose:

* gymnasium ``*-v5`` envs on current MuJoCo instead of ``*-v3`` on mujoco-py; the observations
  have D4RL's layout; the data are collected in the same env that evaluates them;
* ``random`` is the untrained SAC actor, as the D4RL paper describes it (its ``collect_data.py``
  also has a uniform-action mode);
* D4RL picked its medium and expert policies by hand; here the levels are defined by D4RL's own
  datasets' mean returns, so a forged level scores what users know of that level. Checkpoints are
  evaluated with stochastic actions (the ones that collect the data), 10 episodes each;
* D4RL kept whole episodes only and cut the file at 1M rows; here each slot's stream ends with a
  cut episode whose last step is flagged ``timeouts``;
* ``medium-replay`` is re-rolled from checkpoints instead of copying SAC's buffer, so within a
  window the behaviour policy is the window's first checkpoint rather than the continuously
  updated one.

The SAC run behind the policies takes longer than a working session: its resume state is packed
into the repository's ``forge-runs/`` at every save (:mod:`tasks.forge.sac_snapshot`) and restored
from there on any machine, so ``python -m bench.forge task=<env>-medium-v2 forge.retrain=true``
goes on where the last machine stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Sequence
from importlib.metadata import version
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file

from tasks.forge import data_root, sac_snapshot
from tasks.forge.collect import GROUP_SIZE, MAX_EPISODE_STEPS, N_ENVS, Phase, collect
from tasks.forge.policies import (
    POLICY_EVAL_EPISODES,
    POLICY_EVAL_SEED,
    BehaviourPoliciesMissingError,
    PolicySet,
    load_policy_set,
    policy_dir,
    policy_tag,
    write_policy_set,
)
from tasks.forge.sac import (
    Checkpoint,
    SACConfig,
    TanhGaussianActor,
    actor_from_tensors,
    evaluate_actor,
    train_sac,
)
from tasks.registry import LOCOMOTION
from tasks.spec import TaskSpec

STEPS_AT_SCALE_1 = 1_000_000
LEVEL_SEEDS = {"random": 0, "medium": 1, "expert": 2, "medium-replay": 3}
REPLAY_DENSE_UNTIL = 100_000
REPLAY_SPARSE_EVERY = 50_000
SNAPSHOT_RECENT_ACTORS = 5
LEVELS_TRAINED = ("medium", "expert")
# Mean episode return of D4RL's released v2 datasets (episodes split at terminals or timeouts, the
# unfinished last segment dropped, each episode weighted equally), the levels ``medium`` and
# ``expert`` match and the returns table shows. Computed from the HDF5 files and printed by the
# Decision Transformer download script; quoted from its logs in YuweiYin/UBC_CPSC_533V
# (commit 9e6d5d5, Project/log/get_offline_data/<env>-<level>.log, "Trajectory rewards: mean"),
# with the same digits in SiliHuang-ai/IDT (commit 96e81ac, gym/data/download_d4rl_datasets.py)
# and RamiRibat/decision-transformer-ammi (commit 0b559e1, gym/config/dt_gym_<env>.py) except
# medium-expert, which only the first prints. No paper tabulates them (D4RL issue #124).
D4RL_DATASET_RETURNS: dict[str, dict[str, float]] = {
    "hopper": {
        "medium": 1422.056,
        "medium-replay": 467.302,
        "expert": 3511.358,
        "medium-expert": 2089.878,
    },
    "halfcheetah": {
        "medium": 4770.335,
        "medium-replay": 3093.286,
        "expert": 10656.426,
        "medium-expert": 7713.380,
    },
    "walker2d": {
        "medium": 2852.088,
        "medium-replay": 682.701,
        "expert": 4920.507,
        "medium-expert": 3796.572,
    },
}


def level_target(env: str, level: str) -> float:
    """The return that defines ``level`` (``medium`` or ``expert``) of ``env``: the mean episode
    return of D4RL's dataset of that name."""
    return D4RL_DATASET_RETURNS[env][level]


def pick_medium(returns: Sequence[float], target: float) -> int | None:
    """Index of the checkpoint whose return is closest to ``target`` among those up to the first
    one that reaches it (the untrained index 0 excluded); ``None`` while none has reached it."""
    for first, value in enumerate(returns[1:], start=1):
        if value >= target:
            return min(range(1, first + 1), key=lambda i: abs(returns[i] - target))
    return None


def pick_expert(returns: Sequence[float], target: float, finished: bool) -> int | None:
    """Index of the first checkpoint that reaches ``target``, else the last one once the run has
    finished; ``None`` while neither holds."""
    for i, value in enumerate(returns[1:], start=1):
        if value >= target:
            return i
    return len(returns) - 1 if finished and len(returns) > 1 else None


def pick_levels(env: str, returns: Sequence[float], finished: bool) -> dict[str, int]:
    """Checkpoint index of every level decided so far: ``random`` always, ``medium`` and
    ``expert`` once :func:`pick_medium` / :func:`pick_expert` decide them."""
    picks = {"random": 0}
    medium = pick_medium(returns, level_target(env, "medium"))
    if medium is not None:
        picks["medium"] = medium
    expert = pick_expert(returns, level_target(env, "expert"), finished)
    if expert is not None:
        picks["expert"] = expert
    return picks


def policies_shipped(spec: TaskSpec) -> bool:
    """Whether every behaviour policy that ``spec``'s level collects with is shipped."""
    try:
        manifest = load_policy_set(spec.forge_params["env"]).manifest
    except BehaviourPoliciesMissingError:
        return False
    available = {*manifest.get("policies", {}), *(["replay"] if "replay" in manifest else [])}
    return set(policy_parts(spec.forge_params["level"])) <= available


def level_parts(level: str) -> tuple[str, ...]:
    """The levels a level's data is collected as, in order: ``medium-expert`` is both."""
    return ("medium", "expert") if level == "medium-expert" else (level,)


def policy_parts(level: str) -> tuple[str, ...]:
    """The shipped policy entries a level is collected with (``replay`` for medium-replay)."""
    return ("replay",) if level == "medium-replay" else level_parts(level)


def data_tag(spec: TaskSpec) -> str:
    """The tag of the policies ``spec``'s level collects with and of the env it collects in,
    for forged file names (data from other policies or other dynamics is never read)."""
    tag = policy_tag(spec.forge_params["env"], policy_parts(spec.forge_params["level"]))
    return hashlib.sha256(f"{tag}:{spec.env_id}".encode()).hexdigest()[:12]


def export_policy_set(
    env: str, run_dir: str | os.PathLike, directory: str | os.PathLike | None = None
) -> Path:
    """Pick the levels the SAC run in ``run_dir`` has decided (:func:`pick_levels`) and the
    replay schedule, evaluate the picked policies again and write them as ``env``'s policy set.
    Raises ``ValueError`` while the run has not reached the medium level."""
    run_dir = Path(run_dir)
    curve = json.loads((run_dir / "curve.json").read_text())
    checkpoints = curve["checkpoints"]
    means = [c["mean_return"] for c in checkpoints]
    finished = checkpoints[-1]["step"] >= curve["config"]["total_steps"]
    picks = pick_levels(env, means, finished)
    if "medium" not in picks:
        raise ValueError(
            f"{run_dir}: no checkpoint reaches the medium return {level_target(env, 'medium'):.0f} "
            f"yet (best {max(means):.0f} at step {checkpoints[-1]['step']:,}); train longer"
        )
    env_id = LOCOMOTION[env][0]
    actors = {name: _load_run_actor(run_dir, checkpoints[i]) for name, i in picks.items()}
    returns = {
        name: evaluate_actor(actor, env_id, POLICY_EVAL_EPISODES, POLICY_EVAL_SEED).tolist()
        for name, actor in actors.items()
    }
    medium = picks["medium"]
    by_step = {c["step"]: c for c in checkpoints}
    schedule = replay_schedule(
        [c["step"] for c in checkpoints[:medium]], checkpoints[medium]["step"]
    )
    replay = [(step, covers, _load_run_actor(run_dir, by_step[step])) for step, covers in schedule]
    provenance = {
        "trainer": "tasks.forge.sac (lean SAC, rlkit settings)",
        "config": curve["config"],
        "level_selection": {
            "rule": "medium: closest to D4RL's medium-v2 dataset mean return among checkpoints up "
            "to the first reaching it; expert: first reaching D4RL's expert-v2 dataset mean, or "
            "the final checkpoint",
            "d4rl_dataset_returns": D4RL_DATASET_RETURNS[env],
            "targets": {level: level_target(env, level) for level in LEVELS_TRAINED},
            "checkpoint_index": {k: v for k, v in picks.items() if k != "random"},
        },
        "expert": f"checkpoint at step {checkpoints[picks['expert']]['step']:,}"
        if "expert" in picks
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


def replay_schedule(steps: Sequence[int], medium_step: int) -> list[tuple[int, int]]:
    """``(train_step, covers_steps)`` of the checkpoints that re-create the medium-replay buffer.

    Every checkpoint before ``REPLAY_DENSE_UNTIL`` (where SAC changes fastest), then one per
    ``REPLAY_SPARSE_EVERY`` steps, keeps the shipped set small; each covers the steps up to the
    next kept one, the last up to ``medium_step``.
    """
    kept = [s for s in steps if _replay_kept(s)]
    return [(s, nxt - s) for s, nxt in pairwise([*kept, medium_step])]


def snapshot_actors(env: str, checkpoints: Sequence[Checkpoint]) -> list[str]:
    """The actor files a run's snapshot carries: every one the replay schedule may use, the
    levels picked so far (:func:`pick_levels`: the export needs them however far the run has
    gone on since), and the last :data:`SNAPSHOT_RECENT_ACTORS` (among which a pick falls when
    it is made)."""
    steps = [c.step for c in checkpoints]
    picks = pick_levels(env, [c.mean_return for c in checkpoints], finished=False)
    kept = {s for s in steps if _replay_kept(s)} | set(steps[-SNAPSHOT_RECENT_ACTORS:])
    kept |= {steps[i] for i in picks.values()}
    return [c.path for c in checkpoints if c.step in kept]


def _replay_kept(step: int) -> bool:
    return step < REPLAY_DENSE_UNTIL or step % REPLAY_SPARSE_EVERY == 0


def _load_run_actor(run_dir: Path, checkpoint: dict[str, Any]) -> TanhGaussianActor:
    return actor_from_tensors(load_file(run_dir / checkpoint["path"]))


def sac_run_dir(env: str, seed: int, total_steps: int) -> Path:
    """Where :func:`retrain_behaviour_policies` trains (and resumes) SAC for ``env``."""
    return data_root() / "sac" / f"{env}-seed{seed}-steps{total_steps}"


def sac_snapshot_dir(env: str, seed: int, total_steps: int) -> Path | None:
    """Where the run's portable state is committed (None outside a source checkout)."""
    root = sac_snapshot.snapshot_root()
    return None if root is None else root / f"{env}-seed{seed}-steps{total_steps}"


def retrain_behaviour_policies(
    env: str,
    total_steps: int = STEPS_AT_SCALE_1,
    seed: int = 0,
    progress: bool = True,
    directory: str | os.PathLike | None = None,
    until: str = "expert",
) -> Path:
    """Train SAC on ``env`` (resuming the run from this machine's disk or from its committed
    snapshot, whichever is further) until the ``until`` level (``medium`` or ``expert``) is
    decided, packing the resume state into the snapshot at every save, then write the
    behaviour-policy set of the levels decided so far; returns the ``policies.json`` path."""
    if until not in LEVELS_TRAINED:
        raise ValueError(f"forge.until={until!r} is not valid; valid: {', '.join(LEVELS_TRAINED)}")
    cfg = SACConfig(env_id=LOCOMOTION[env][0], total_steps=total_steps, seed=seed)
    run_dir = sac_run_dir(env, seed, total_steps)
    snapshot = sac_snapshot_dir(env, seed, total_steps)
    if snapshot is not None and sac_snapshot.saved_step(snapshot) > sac_snapshot.saved_step(
        run_dir
    ):
        sac_snapshot.restore(snapshot, run_dir, progress)
    run_dir.mkdir(parents=True, exist_ok=True)

    def decided(checkpoints: list[Checkpoint]) -> bool:
        return until in pick_levels(env, [c.mean_return for c in checkpoints], finished=False)

    def pack(checkpoints: list[Checkpoint]) -> None:
        if snapshot is not None:
            sac_snapshot.pack(run_dir, snapshot, snapshot_actors(env, checkpoints))

    train_sac(cfg, run_dir, progress, decided, on_save=pack)
    return export_policy_set(env, run_dir, directory)


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
        "policy_tag": data_tag(spec),
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
