"""MaMuJoCo HalfCheetah 2x3 ``good`` / ``medium`` / ``poor``: our protocol, closest to OG-MARL's.

MADiff (zbzhu99/madiff, ``exp_specs/mamujoco/2halfcheetah/``) trains on OG-MARL's
``2halfcheetah`` Good / Medium / Poor datasets (Formanek et al. 2023, instadeepai/og-marl).
Those are download-only: OG-MARL trained MATD3 "to a target level of performance", rolled the
learnt policy out with Gaussian action noise (std 0.2) for about 250k transitions, four times, and
published the data, not the policies. This forge builds datasets of the same shape and the same
levels from what the suite has, and is documented as ours:

* behaviour policy: one of the suite's single-agent ``HalfCheetah-v5`` SAC checkpoints (the
  committed run ``forge-runs/halfcheetah-seed0-steps1000000/``, the one behind the locomotion
  forge's policies) acts as the joint policy. MaMuJoCo's HalfCheetah is ``HalfCheetah-v5``
  underneath (:mod:`tasks.mamujoco`), so the SAC actor reads the global state
  (``parallel_env.state()``, the single-agent observation) and its 6-D action is split into the
  two agents' 3-D actions by MaMuJoCo's own partition (``map_global_action_to_local_actions``);
  the stored observations are the agents' own local observations;
* levels: for each level, the checkpoint whose evaluation return (``curve.json``: 10 episodes,
  stochastic actions) is closest to the mean episode return of OG-MARL's dataset of that level
  (:data:`OGMARL_RETURNS`), among the checkpoints whose actor file is committed
  (:func:`pick_checkpoint`). At the committed step (130k) ``poor`` is step 20k (404 vs 400),
  ``medium`` step 30k (2399 vs 1485: the return jumps from 404 to 2399 between checkpoints) and
  ``good`` step 130k (4780 vs 6924: the run has not reached OG-MARL's Good level yet; the pick
  moves on by itself as the run goes on, and forged file names carry the picked actors' hashes,
  so stale data is never read). Measured in MaMuJoCo (5 episodes each, stochastic actions as
  collected / mean actions): poor 280 +- 122 / 406, medium 2382 +- 169 / 2793, good 4755 +- 53 /
  5211;
* exploration: actions are sampled from the stochastic SAC policy (the actions its evaluation
  return was measured with), not OG-MARL's deterministic MATD3 actions plus N(0, 0.2);
* size: ``1M x scale`` transitions in whole 1000-step episodes (at least one), OG-MARL's 1M and
  1000 episodes at scale 1; episode ``j`` of a level resets its env with
  :func:`episode_seeds` ``[j]``; the last step of each episode is flagged ``timeouts``;
* reference scores (team return, :func:`tasks.mamujoco.team_reward`): min the uniform random
  joint action, max the ``good`` checkpoint with its mean (noiseless) actions, as the MPE
  forge's expert; :data:`REF_EPISODES` episodes, env ``i`` reset with ``123 + i``. All three
  levels share them, so their scores are on one scale.

OG-MARL's mean episode returns, ``docs/dataset_cards/og_marl.md`` of instadeepai/og-marl (commit
39e1382), card "2halfcheetah" (MaMuJoCo v0 on Gymnasium MuJoCo v4, 1000 episodes of 1000 steps
each): Poor 400.45 +- 333.96, Medium 1485.00 +- 469.14, Good 6924.11 +- 1270.39.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks.forge import REFERENCE_SEED, ForgeNotAvailableError, sac_snapshot
from tasks.forge.policies import file_sha256
from tasks.forge.sac import TanhGaussianActor, load_actor, sample_actions
from tasks.mamujoco import MaMuJoCoEnvs, split_actions, team_reward
from tasks.progress import progress as progress_bar
from tasks.spec import TaskSpec

OGMARL_SOURCE = (
    "instadeepai/og-marl docs/dataset_cards/og_marl.md (commit 39e1382), card 2halfcheetah"
)
OGMARL_RETURNS = {"poor": 400.45, "medium": 1485.00, "good": 6924.11}
LEVELS = tuple(OGMARL_RETURNS)
LEVEL_SEEDS = {"poor": 0, "medium": 1, "good": 2}
SAC_RUN = "halfcheetah-seed0-steps1000000"
STEPS_AT_SCALE_1 = 1_000_000
N_ENVS = 10  # episodes stepped together (one batched actor forward per step)
REF_EPISODES = 100


@dataclass(frozen=True)
class Checkpoint:
    """One committed SAC actor of the run: training step, file and evaluation return."""

    step: int
    path: Path
    mean_return: float


def sac_run_dir() -> Path:
    """The committed HalfCheetah SAC run (``forge-runs/<SAC_RUN>``); raises
    :class:`ForgeNotAvailableError` outside a source checkout."""
    root = sac_snapshot.snapshot_root()
    if root is None or not (root / SAC_RUN / "curve.json").exists():
        raise ForgeNotAvailableError(
            f"the MaMuJoCo forge rolls out the HalfCheetah SAC checkpoints committed in "
            f"forge-runs/{SAC_RUN}/ of a source checkout (or $DIFFRL_SAC_SNAPSHOTS); none found"
        )
    return root / SAC_RUN


def committed_checkpoints(run_dir: Path) -> list[Checkpoint]:
    """The run's evaluated checkpoints whose actor file is present (``curve.json``)."""
    curve = json.loads((run_dir / "curve.json").read_text())
    return [
        Checkpoint(c["step"], run_dir / c["path"], c["mean_return"])
        for c in curve["checkpoints"]
        if (run_dir / c["path"]).exists()
    ]


def pick_checkpoint(checkpoints: list[Checkpoint], target: float) -> Checkpoint:
    """The checkpoint whose return is closest to ``target`` (the earliest on a tie)."""
    return min(checkpoints, key=lambda c: (abs(c.mean_return - target), c.step))


def behaviour(level: str) -> Checkpoint:
    """The checkpoint that collects ``level`` (module docstring)."""
    if level not in OGMARL_RETURNS:
        raise ValueError(f"unknown MaMuJoCo level {level!r}; valid: {', '.join(LEVELS)}")
    return pick_checkpoint(committed_checkpoints(sac_run_dir()), OGMARL_RETURNS[level])


def data_tag(spec: TaskSpec) -> str:
    """12 hex digits naming the actors a level's file depends on (its own and ``good``'s, which
    sets the reference max) and the env, for the forged file name."""
    level = spec.forge_params["level"]
    digests = [file_sha256(behaviour(name).path) for name in (level, "good")]
    return hashlib.sha256(f"{':'.join(digests)}:{spec.env_id}".encode()).hexdigest()[:12]


def episode_seeds(seed: int, level: str, n_episodes: int) -> list[int]:
    """The env seed of each episode of ``level`` forged with ``seed``."""
    sequence = np.random.SeedSequence([seed, LEVEL_SEEDS[level]])
    return [int(s) for s in sequence.generate_state(n_episodes)]


def rollouts(
    scenario: str,
    agent_conf: str,
    actor: TanhGaussianActor,
    seeds: list[int],
    noise_seed: int | list[int],
    progress: bool = False,
    desc: str = "forge",
) -> dict[str, np.ndarray]:
    """One whole episode per seed of the SAC ``actor`` acting for all agents (stochastic
    actions, split per agent), :data:`N_ENVS` at a time; episode-major D4RL arrays."""
    rng = np.random.default_rng(noise_seed)
    envs = MaMuJoCoEnvs(scenario, agent_conf, min(N_ENVS, len(seeds)))
    parts = []
    with progress_bar(len(seeds), desc, "episode", enabled=progress) as bar:
        for first in range(0, len(seeds), envs.n_envs):
            batch = seeds[first : first + envs.n_envs]
            if len(batch) < envs.n_envs:
                envs = MaMuJoCoEnvs(scenario, agent_conf, len(batch))
            parts.append(_episodes(envs, actor, batch, rng))
            bar.update(len(batch))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _episodes(
    envs: MaMuJoCoEnvs, actor: TanhGaussianActor, seeds: list[int], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    obs = envs.reset(seeds)
    act_total = envs.act_index.size
    steps = []
    for _ in range(envs.max_episode_steps):
        noise = rng.standard_normal((len(seeds), act_total))
        action = split_actions(sample_actions(actor, envs.states(), noise), envs.act_index)
        next_obs, rewards, _, truncated = envs.step(action)
        steps.append((obs, action, rewards, next_obs, truncated))
        obs = next_obs
    fields = ("observations", "actions", "rewards", "next_observations", "timeouts")
    n, length = len(seeds), len(steps)
    return {  # [T, n, ...] -> episode-major [n * T, ...]
        f: np.stack([s[j] for s in steps], 1).reshape(n * length, *steps[0][j].shape[1:])
        for j, f in enumerate(fields)
    }


def team_return(envs: MaMuJoCoEnvs, policy) -> float:
    """Mean team return of ``policy(envs) -> actions [E, A, act]`` over one episode in each of
    ``envs``, env ``i`` reset with ``REFERENCE_SEED + i``."""
    envs.reset(REFERENCE_SEED)
    total = np.zeros(envs.n_envs)
    for _ in range(envs.max_episode_steps):
        _, rewards, _, _ = envs.step(policy(envs))
        total += team_reward(rewards)
    return float(total.mean())


def reference_returns(scenario: str, agent_conf: str, expert: TanhGaussianActor) -> dict:
    """``ref_min_score`` (uniform random joint actions, drawn with seed 123) and
    ``ref_max_score`` (``expert``'s mean actions), in the team return over
    :data:`REF_EPISODES` episodes."""
    envs = MaMuJoCoEnvs(scenario, agent_conf, REF_EPISODES)
    rng = np.random.default_rng(REFERENCE_SEED)

    def random_policy(envs: MaMuJoCoEnvs) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, (envs.n_envs, envs.n_agents, envs.act_dim))

    def expert_policy(envs: MaMuJoCoEnvs) -> np.ndarray:
        with torch.inference_mode():
            action = expert.mean_action(torch.from_numpy(envs.states())).numpy()
        return split_actions(action, envs.act_index)

    return {
        "ref_min_score": team_return(envs, random_policy),
        "ref_max_score": team_return(envs, expert_policy),
    }


def forge_mamujoco(
    spec: TaskSpec, scale: float, seed: int, progress: bool
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One level of MaMuJoCo HalfCheetah 2x3 (module docstring)."""
    scenario, agent_conf = spec.env_kwargs["scenario"], spec.env_kwargs["agent_conf"]
    level = spec.forge_params["level"]
    picked, good = behaviour(level), behaviour("good")
    length = MaMuJoCoEnvs(scenario, agent_conf, 1).max_episode_steps
    n_episodes = max(1, round(STEPS_AT_SCALE_1 * scale / length))
    seeds = episode_seeds(seed, level, n_episodes)
    arrays = rollouts(
        scenario,
        agent_conf,
        load_actor(picked.path),
        seeds,
        noise_seed=[seed, LEVEL_SEEDS[level], 1],  # apart from the env seeds' stream
        progress=progress,
        desc=f"forge {spec.task_id}",
    )
    arrays = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in arrays.items()}
    arrays["terminals"] = np.zeros(len(arrays["observations"]), dtype=bool)
    refs = reference_returns(scenario, agent_conf, load_actor(good.path))
    params = {
        "scenario": scenario,
        "agent_conf": agent_conf,
        "level": level,
        "episodes": n_episodes,
        "episode_length": length,
        "behaviour": _describe(picked),
        "reference_max_policy": _describe(good),
        "level_target": {"ogmarl_mean_return": OGMARL_RETURNS[level], "source": OGMARL_SOURCE},
        "actions": "sampled from the stochastic SAC policy on the global state, split per agent "
        "by MaMuJoCo's action partition",
        "metric": "team return: the shared reward summed over the episode",
        "protocol": "ours, closest to OG-MARL's 2halfcheetah levels: see tasks.forge.mamujoco",
    }
    return arrays, {"params": params, **refs}


def _describe(checkpoint: Checkpoint) -> dict[str, Any]:
    run_root = sac_snapshot.snapshot_root().parent
    try:
        path = str(checkpoint.path.relative_to(run_root))
    except ValueError:
        path = str(checkpoint.path)
    return {
        "file": path,
        "sha256": file_sha256(checkpoint.path),
        "train_step": checkpoint.step,
        "eval_return_mean": round(checkpoint.mean_return, 3),
        "eval_protocol": "forge-runs curve.json: 10 episodes, stochastic actions",
    }
