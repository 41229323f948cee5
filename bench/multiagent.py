"""The harness's multi-agent side: task info and evaluation on batches of parallel multi-agent envs.

Multi-agent tasks (``spec.kind == "multi-agent"``) step ``n_envs`` worlds together: OMAR's
particle worlds (:mod:`tasks.multiagent`, ``mpe-*``) or MaMuJoCo robots (:mod:`tasks.mamujoco`,
``mamujoco-*``), chosen by the task's env id (:func:`make_envs`). The agent sees observations
``[n_envs, n_agents, obs_dim]`` and answers actions ``[n_envs, n_agents, act_dim]`` with one
``act`` per step. Every episode lasts the task's fixed length (OMAR's 25 steps; MaMuJoCo
HalfCheetah's 1000, it never terminates), so a wave of episodes ends together. The score of an
episode is the metric MADiff reports, summed over the episode (:func:`step_score`: for MPE
:func:`tasks.multiagent.team_score`, e.g. spread's per-step mean over agents; for MaMuJoCo the
shared team reward, :func:`tasks.mamujoco.team_reward`), normalized with the random and expert
reference returns the forge measured.
"""

from __future__ import annotations

import time

import numpy as np

from algorithms.common.contract import Agent, TaskInfo
from bench.evaluate import DivergenceError, EvalResult
from tasks.mamujoco import MaMuJoCoEnvs, team_reward
from tasks.multiagent import ParticleEnvs, team_score
from tasks.progress import progress
from tasks.spec import Dataset, DatasetFormatError, TaskSpec, normalized_score

MPE_PREFIX, MAMUJOCO_PREFIX = "diffrl/mpe-", "diffrl/mamujoco-"


def make_envs(spec: TaskSpec, n_envs: int) -> ParticleEnvs | MaMuJoCoEnvs:
    """``n_envs`` parallel worlds of a multi-agent task, by its env id's family."""
    if spec.env_id.startswith(MPE_PREFIX):
        return ParticleEnvs(spec.env_kwargs["scenario"], n_envs)
    if spec.env_id.startswith(MAMUJOCO_PREFIX):
        return MaMuJoCoEnvs(spec.env_kwargs["scenario"], spec.env_kwargs["agent_conf"], n_envs)
    raise ValueError(
        f"{spec.task_id}: env id {spec.env_id!r} is no multi-agent family; valid prefixes: "
        f"{MPE_PREFIX}, {MAMUJOCO_PREFIX}"
    )


def step_score(spec: TaskSpec, rewards: np.ndarray) -> np.ndarray:
    """The per-step team score of rewards ``[n_envs, n_agents]`` (module docstring)."""
    if spec.env_id.startswith(MAMUJOCO_PREFIX):
        return team_reward(rewards)
    return team_score(rewards, spec.env_kwargs["scenario"])


def multiagent_task_info(spec: TaskSpec, dataset: Dataset) -> TaskInfo:
    """The :class:`TaskInfo` of a multi-agent task (:func:`multiagent_env_info`), after checking
    that the data's ``[N, n_agents, width]`` arrays fit the environment."""
    info = multiagent_env_info(spec)
    for key, width in (("observations", info.obs_dim), ("actions", info.act_dim)):
        shape = dataset.arrays[key].shape
        if shape[1:] != (info.n_agents, width):
            raise DatasetFormatError(
                f"{dataset.provenance.path}: {key} are {shape[1:]} per step, but {spec.task_id} "
                f"has {info.n_agents} agents of width {width}"
            )
    return info


def multiagent_env_info(spec: TaskSpec) -> TaskInfo:
    """What an agent may know of a multi-agent task: per-agent widths and the number of agents."""
    envs = make_envs(spec, 1)
    return TaskInfo(
        task_id=spec.task_id,
        kind=spec.kind,
        obs_dim=envs.obs_dim,
        act_dim=envs.act_dim,
        max_episode_steps=envs.max_episode_steps,
        n_agents=envs.n_agents,
    )


def _run_wave(agent: Agent, spec: TaskSpec, n_envs: int, seed: int) -> tuple[np.ndarray, float]:
    """One episode in each of ``n_envs`` worlds (world ``i`` reset with ``seed + i``): the
    episodes' team scores and the seconds spent in ``act``."""
    envs = make_envs(spec, n_envs)
    obs = envs.reset(seed)
    agent.reset()
    scores, act_seconds = np.zeros(n_envs), 0.0
    for _ in range(envs.max_episode_steps):
        t0 = time.perf_counter()
        actions = np.asarray(agent.act(obs))
        act_seconds += time.perf_counter() - t0
        if not np.all(np.isfinite(actions)):
            raise DivergenceError("the agent produced a non-finite action")
        obs, rewards, _, _ = envs.step(actions)
        scores += step_score(spec, rewards)
    return scores, act_seconds


def evaluate_multiagent(
    agent: Agent,
    spec: TaskSpec,
    episodes: int,
    seed: int,
    ref_min: float,
    ref_max: float,
    max_envs: int = 50,
    desc: str = "evaluate",
) -> EvalResult:
    """Evaluate ``agent`` on ``episodes`` episodes, at most ``max_envs`` at a time (episode ``i``
    seeded ``seed + i``, as :func:`bench.evaluate.evaluate`)."""
    scores, seconds = [], 0.0
    length = make_envs(spec, 1).max_episode_steps
    with progress(episodes, desc, "episode") as bar:
        for first in range(0, episodes, max_envs):
            n = min(max_envs, episodes - first)
            wave, act_seconds = _run_wave(agent, spec, n, seed + first)
            scores.append(wave)
            seconds += act_seconds
            bar.update(n)
    returns = np.concatenate(scores)
    return EvalResult(
        returns=returns,
        lengths=np.full(len(returns), length),
        normalized=normalized_score(returns, ref_min, ref_max),
        successes=None,
        decisions=len(returns) * length,
        act_seconds=seconds,
    )
