"""Safe-control forge: TREBI's ``medium-replay`` data for ``safe-pendulum`` and ``safe-reacher``.

Protocol (TREBI, Lin et al. 2023, toy safe tasks): the replay buffer of an RL agent trained on
the task's reward, costs ignored while training. Here the agent is our lean SAC
(:mod:`tasks.forge.sac`, rlkit's settings: 2x256 MLPs, batch 256, learning rate 3e-4, discount
0.99, 1,000 steps collected by the untrained policy before the first update, one update per env
step) in one env (``n_envs = 1``) on the task's env (:mod:`tasks.safe_control`), trained for as
many env steps as the dataset holds and returned whole: every transition it collected, in order.
Sizes at scale 1: pendulum 100,000 transitions (500 episodes of 200 steps), reacher 200,000
(4,000 episodes of 50 steps); ``scale`` multiplies the number of episodes (rounded, at least
``MIN_EPISODES``), so the data are whole episodes. Neither env terminates: ``terminals`` are all
False and the last step of every episode is a ``timeouts``. Costs are not stored: loading labels
them from the observations (:func:`tasks.safety.dataset_costs`). Deterministic for a seed (one
thread, one machine; BLAS may round differently elsewhere).

Reference scores (Minari's protocol, :mod:`tasks.forge`; 100 episodes of ``make_env(spec)``):
``ref_min_score`` of the uniform random policy, ``ref_max_score`` of the trained SAC's final
policy acting with its mean action.

Departures from TREBI's code, on purpose: our SAC rather than the agent TREBI trained (its public
``scripts/data_generate.py`` only shows stable-baselines3's DQN for the discrete toy tasks); the
envs' departures are listed in :mod:`tasks.safe_control`; no resumption: an interrupted forge
reruns from scratch (see :mod:`tasks.forge`).

Measured (``forge_safe_control`` at scale 0.1, seed 0, one thread) on the shared 2-core
development machine while other jobs loaded it (load average 3.7 rising to 6.4 during pendulum,
6.4-7.8 during reacher): pendulum 215 s (10,000 steps), reacher 638 s (20,000 steps), reference
scores included (5-10 s). SAC updates dominate and grow linearly with the steps, so scale 1
takes about ten times as long under such load: about 36 min for pendulum and 1.8 h for reacher
(extrapolated from these measurements, not run). That run's reference scores (random / SAC):
pendulum -1267 / -149, reacher -102.0 / -60.8.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks.envs import make_env
from tasks.forge import data_root, random_policy, reference_return
from tasks.forge.sac import SACConfig, SACTrainer, TanhGaussianActor
from tasks.progress import progress as progress_bar
from tasks.spec import TaskSpec

TRANSITIONS_AT_SCALE_1 = {"pendulum": 100_000, "reacher": 200_000}
MIN_EPISODES = 2
REF_EPISODES = 100


def episodes_for(spec: TaskSpec, scale: float) -> int:
    """Whole episodes of ``spec``'s dataset at ``scale`` (at least ``MIN_EPISODES``)."""
    full = TRANSITIONS_AT_SCALE_1[spec.forge_params["system"]] / spec.max_episode_steps
    return max(MIN_EPISODES, round(full * scale))


def sac_config(spec: TaskSpec, n_steps: int, seed: int) -> SACConfig:
    """SAC on ``spec``'s env for ``n_steps`` env steps, keeping every transition."""
    return SACConfig(
        env_id=spec.env_id,
        total_steps=n_steps,
        seed=seed,
        buffer_size=n_steps,
        max_episode_steps=spec.max_episode_steps,
    )


def train_replay(
    cfg: SACConfig, progress: bool, desc: str, run_dir: Path
) -> tuple[SACTrainer, dict[str, np.ndarray]]:
    """Run SAC's collect-and-update loop to ``cfg.total_steps``; returns the trainer and its
    replay buffer as arrays. Nothing is written to ``run_dir`` (checkpoints are not used)."""
    trainer = SACTrainer(cfg, run_dir)
    try:
        with progress_bar(cfg.total_steps, desc, "step", enabled=progress) as bar:
            while trainer.step < cfg.total_steps:
                trainer.collect_step()
                if trainer.step >= cfg.learning_starts:
                    for _ in range(trainer.envs.n):
                        trainer.update()
                bar.update(trainer.envs.n)
    finally:
        trainer.close()
    return trainer, buffer_arrays(trainer)


def buffer_arrays(trainer: SACTrainer) -> dict[str, np.ndarray]:
    """The trainer's replay buffer (never wrapped around) as float32 D4RL arrays."""
    buffer = trainer.buffer
    if buffer.size != trainer.step:
        raise RuntimeError(f"the replay buffer kept {buffer.size} of {trainer.step} transitions")
    rows = buffer.rows[: buffer.size].numpy()
    o, a = buffer.obs_dim, buffer.act_dim
    obs, actions, rewards, next_obs, terminals = np.split(rows, np.cumsum([o, a, 1, o]), axis=1)
    return {
        "observations": obs.astype(np.float32),
        "actions": actions.astype(np.float32),
        "rewards": rewards[:, 0].astype(np.float32),
        "next_observations": next_obs.astype(np.float32),
        "terminals": terminals[:, 0] > 0.5,
    }


def episode_timeouts(n_steps: int, max_episode_steps: int) -> np.ndarray:
    """``timeouts`` of one env's stream of never-terminating episodes cut at the time limit."""
    return (np.arange(1, n_steps + 1) % max_episode_steps) == 0


def check_stream(arrays: dict[str, np.ndarray]) -> None:
    """The buffer is one continuous stream: no terminal, and each step starts where the previous
    one ended unless that one was a timeout (SAC's env batch resets after it)."""
    if arrays["terminals"].any():
        raise RuntimeError("a safe-control env terminated; its episodes should only time out")
    inside = ~arrays["timeouts"][:-1]
    if not np.array_equal(
        arrays["next_observations"][:-1][inside], arrays["observations"][1:][inside]
    ):
        raise RuntimeError("the replay buffer is not one continuous stream of episodes")


def mean_action_policy(actor: TanhGaussianActor) -> Callable[[np.ndarray], np.ndarray]:
    """The actor's deterministic (mean) action for one observation."""

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return actor.mean_action(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    return act


def reference_scores(spec: TaskSpec, actor: TanhGaussianActor) -> tuple[float, float]:
    """(random policy, ``actor``'s mean action) mean returns in ``make_env(spec)``."""
    env = make_env(spec)
    try:
        ref_min = reference_return(env, random_policy(env), REF_EPISODES)
        ref_max = reference_return(env, mean_action_policy(actor), REF_EPISODES)
    finally:
        env.close()
    return ref_min, ref_max


def forge_safe_control(
    spec: TaskSpec, scale: float, seed: int, progress: bool = True
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """SAC's replay buffer on ``spec``'s safe-control env (module docstring)."""
    episodes = episodes_for(spec, scale)
    n_steps = episodes * spec.max_episode_steps
    cfg = sac_config(spec, n_steps, seed)
    run_dir = data_root() / spec.task_id / f"sac-seed{seed}"
    trainer, arrays = train_replay(cfg, progress, f"forge {spec.task_id} (SAC)", run_dir)
    arrays["timeouts"] = episode_timeouts(n_steps, spec.max_episode_steps)
    check_stream(arrays)
    ref_min, ref_max = reference_scores(spec, trainer.actor.eval())
    params = {
        "system": spec.forge_params["system"],
        "env_id": spec.env_id,
        "transitions": n_steps,
        "episodes": episodes,
        "max_episode_steps": spec.max_episode_steps,
        "sac_steps": n_steps,
        "sac": asdict(cfg),
        "dataset": "medium-replay: the whole replay buffer of SAC trained on the reward",
        "ref_episodes": REF_EPISODES,
        "ref_max_policy": "the final SAC actor's mean action",
        "protocol": "TREBI safe toy tasks, see tasks.forge.safe_control",
    }
    return arrays, {"params": params, "ref_min_score": ref_min, "ref_max_score": ref_max}
