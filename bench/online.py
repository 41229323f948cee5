"""The online phase: fine-tune an :class:`~algorithms.common.contract.OnlineAgent` in vector envs.

``bench.run`` pre-trains every agent offline and evaluates it; for an online agent that
evaluation becomes the record's pre-trained score (``record.online.pretrained``) and
:func:`run_online` follows. It builds ``online.n_envs`` environments
(:func:`tasks.online_envs.make_online_vector_env`: each step executes one of the agent's action
chunks), calls ``agent.start_online(n_envs)``, then runs iterations until ``online.env_steps``
are spent: ``rollout_steps`` decisions per environment (``agent.explore``), where every
environment whose episode ended is reset before the next decision, then ``agent.improve`` on
the :class:`~algorithms.common.contract.Rollout`. Environment steps are counted as DPPO counts
them, ``n_envs x act_steps`` per decision (a chunk cut short by an episode's end counts whole),
so an iteration is ``n_envs x act_steps x rollout_steps`` steps and the budget gives
``ceil(env_steps / that)`` iterations. Every ``online.eval_every`` steps the agent is evaluated
with ``bench.evaluate`` (``eval.periodic_episodes``); at the end on ``eval.episodes`` episodes
from the same start states as the pre-trained evaluation, the record's ``final`` score. The
curve (``record.online.curve``) runs from the pre-trained point at step 0 to the final one.

A killed run resumes from its last iteration (``online.pt`` in the run directory, written after
each): the agent's state, the random generators, the record so far and every environment as it
was (:func:`tasks.online_envs.snapshot_env`), so that it continues as if never killed. Where an
environment cannot be snapshotted, the resumed run resets all environments with seeds derived
from the run's seed and the iteration and says so in ``record.online.env_resume``
(``seeded-reset``): it then differs from an uninterrupted run from that iteration on.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

import algorithms
from algorithms.common.contract import OnlineAgent, OnlineSpec, Rollout
from bench.evaluate import DivergenceError
from bench.records import Evaluation, OnlineInfo, OnlinePoint, RunRecord
from tasks.online_envs import (
    SnapshotError,
    make_online_vector_env,
    restore_vector_env,
    snapshot_env,
)
from tasks.progress import progress
from tasks.spec import Dataset, TaskSpec

if TYPE_CHECKING:
    import gymnasium as gym

    from bench.run import Trainer

ONLINE_CHECKPOINT = "online.pt"
ONLINE_METHODS = ("start_online", "explore", "improve")


def is_online_algorithm(algo: str) -> bool:
    """Whether ``algorithms.<algo>``'s Agent class has the :class:`OnlineAgent` methods: known
    before any agent is built (the config hash and the knob checks need it)."""
    agent = algorithms.load(algo).Agent
    return all(callable(getattr(agent, name, None)) for name in ONLINE_METHODS)


@dataclass
class Collector:
    """The vector env and what the harness carries from one decision to the next."""

    envs: gym.vector.VectorEnv
    obs: np.ndarray  # [n_envs, obs_dim] the observation the next decision sees
    firsts: np.ndarray  # [n_envs] bool: the next decision starts an episode

    def close(self) -> None:
        self.envs.close()


@dataclass
class Clock:
    """Seconds spent collecting and updating in this process."""

    simulate: float = 0.0
    sample: float = 0.0
    update: float = 0.0


def env_seeds(seed: int, iteration: int, n_envs: int) -> list[int]:
    """Reset seeds of the ``n_envs`` envs when (re)started at ``iteration`` of run ``seed``."""
    return [int(s) for s in np.random.SeedSequence([seed, iteration]).generate_state(n_envs)]


def fresh_collector(spec: TaskSpec, online: OnlineSpec, n_envs: int, seeds: list[int]) -> Collector:
    """New environments, reset with ``seeds``."""
    envs = make_online_vector_env(spec, n_envs, online.act_steps)
    obs, _ = envs.reset(seed=seeds)
    return Collector(envs, np.asarray(obs, dtype=np.float32), np.ones(n_envs, dtype=bool))


def collect(agent: OnlineAgent, collector: Collector, clock: Clock) -> tuple[Rollout, int]:
    """One iteration's ``rollout_steps`` decisions in every env; returns the rollout and the
    number of episodes that ended."""
    steps, (n_envs, obs_dim) = agent.online_spec.rollout_steps, collector.obs.shape
    obs = np.zeros((steps, n_envs, obs_dim), dtype=np.float32)
    rewards = np.zeros((steps, n_envs), dtype=np.float32)
    terminated, truncated, firsts = (np.zeros((steps, n_envs), dtype=bool) for _ in range(3))
    envs = collector.envs
    for s in range(steps):
        tick = time.perf_counter()
        chunks = agent.explore(collector.obs)
        clock.sample += time.perf_counter() - tick
        if not np.all(np.isfinite(chunks)):
            raise DivergenceError("the agent explored with a non-finite action")
        tick = time.perf_counter()
        next_obs, reward, term, trunc, _ = envs.step(chunks)
        ended = np.asarray(term) | np.asarray(trunc)
        if ended.any():
            reset_obs, _ = envs.reset(options={"reset_mask": ended})
            next_obs = np.where(ended[:, None], reset_obs, next_obs)
        clock.simulate += time.perf_counter() - tick
        obs[s], rewards[s], firsts[s] = collector.obs, reward, collector.firsts
        terminated[s], truncated[s] = term, trunc
        collector.obs, collector.firsts = np.asarray(next_obs, dtype=np.float32), ended
    rollout = Rollout(obs, rewards, terminated, truncated, firsts, collector.obs.copy())
    return rollout, int((terminated | truncated).sum())


def curve_point(evaluation: Evaluation, env_steps: int, iteration: int) -> OnlinePoint:
    """The online curve's point for ``evaluation``."""
    names = {f.name for f in dataclasses.fields(OnlinePoint)}
    values = {k: v for k, v in dataclasses.asdict(evaluation).items() if k in names}
    return OnlinePoint(env_steps=env_steps, iteration=iteration, **values)


def log_losses(info: OnlineInfo, losses: dict[str, torch.Tensor]) -> dict[str, float]:
    """Read the iteration's losses (one host sync), check them, keep them in the record."""
    values = {k: float(v) for k, v in losses.items()}
    bad = [k for k, v in values.items() if not np.isfinite(v)]
    if bad:
        raise DivergenceError(f"non-finite loss {bad} at online iteration {info.iterations_done}")
    info.losses.append(
        {"iteration": info.iterations_done, **{k: round(v, 6) for k, v in values.items()}}
    )
    return values


# -- checkpoints ------------------------------------------------------------------------------


def save_online(trainer: Trainer, agent: OnlineAgent, collector: Collector) -> None:
    """Everything the next iteration needs, written atomically (temp file + rename)."""
    try:
        snapshots = [snapshot_env(env) for env in collector.envs.envs]
    except SnapshotError:
        snapshots = None
    state = {
        "agent": agent.state_dict(),
        "envs": snapshots,
        "obs": collector.obs,
        "firsts": collector.firsts,
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "record": trainer.record.to_dict(),
    }
    tmp = trainer.dir / f".{ONLINE_CHECKPOINT}.tmp"
    torch.save(state, tmp)
    tmp.replace(trainer.dir / ONLINE_CHECKPOINT)


def load_online(trainer: Trainer, agent: OnlineAgent, spec: TaskSpec) -> Collector | None:
    """Restore the agent, the random generators, the record and the envs of a killed online phase
    (``None`` when none was saved)."""
    path = trainer.dir / ONLINE_CHECKPOINT
    if not path.exists():
        return None
    state = torch.load(path, map_location=trainer.device, weights_only=False)
    agent.load_state_dict(state["agent"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    current = trainer.record  # this process's resume count and timings
    trainer.record = RunRecord.from_dict(state["record"])
    trainer.record.resumed, trainer.record.timings = current.resumed, current.timings
    info = trainer.record.online
    if state["envs"] is not None:
        envs = restore_vector_env(state["envs"])
        return Collector(envs, state["obs"], state["firsts"])
    info.env_resume = "seeded-reset"
    seeds = env_seeds(trainer.cfg["seed"], info.iterations_done, info.n_envs)
    return fresh_collector(spec, agent.online_spec, info.n_envs, seeds)


# -- the phase --------------------------------------------------------------------------------


def start(trainer: Trainer, agent: OnlineAgent, spec: TaskSpec) -> Collector:
    """Begin the online phase: the record's online section, the agent's start, fresh envs."""
    knobs, online = trainer.cfg["online"], agent.online_spec
    per_iteration = knobs["n_envs"] * online.act_steps * online.rollout_steps
    pretrained = trainer.record.final
    trainer.record.online = OnlineInfo(
        n_envs=knobs["n_envs"],
        env_steps=knobs["env_steps"],
        eval_every=knobs["eval_every"],
        act_steps=online.act_steps,
        rollout_steps=online.rollout_steps,
        iterations=math.ceil(knobs["env_steps"] / per_iteration),
        pretrained=pretrained,
        curve=[curve_point(pretrained, 0, 0)],
    )
    agent.start_online(knobs["n_envs"])
    return fresh_collector(
        spec, online, knobs["n_envs"], env_seeds(trainer.cfg["seed"], 0, knobs["n_envs"])
    )


def evaluation_due(info: OnlineInfo, per_iteration: int) -> bool:
    """Whether the iteration just completed crossed a multiple of ``eval_every`` (the last
    iteration is followed by the final evaluation instead)."""
    if not info.eval_every or info.iterations_done == info.iterations:
        return False
    before = info.env_steps_done - per_iteration
    return info.env_steps_done // info.eval_every > before // info.eval_every


def iterate(
    trainer: Trainer, agent: OnlineAgent, spec: TaskSpec, dataset: Dataset, collector: Collector
) -> None:
    """Run the remaining iterations: collect, improve, evaluate when due, checkpoint."""
    info, clock = trainer.record.online, Clock()
    per_iteration = info.n_envs * info.act_steps * info.rollout_steps
    desc = f"online {trainer.algo} {spec.task_id}"
    with progress(info.iterations, desc, "iteration", initial=info.iterations_done) as bar:
        while info.iterations_done < info.iterations:
            rollout, episodes = collect(agent, collector, clock)
            tick = time.perf_counter()
            losses = agent.improve(rollout)
            values = log_losses(info, losses)
            clock.update += time.perf_counter() - tick
            info.iterations_done += 1
            info.env_steps_done += per_iteration
            info.episodes_done += episodes
            for key in ("simulate", "sample", "update"):
                setattr(
                    info, f"{key}_seconds", getattr(info, f"{key}_seconds") + getattr(clock, key)
                )
                setattr(clock, key, 0.0)
            if evaluation_due(info, per_iteration):
                evaluate_online(
                    trainer, agent, spec, dataset, trainer.cfg["eval"]["periodic_episodes"]
                )
            save_online(trainer, agent, collector)
            bar.update()
            bar.set_postfix(values, refresh=False)


def evaluate_online(
    trainer: Trainer, agent: OnlineAgent, spec: TaskSpec, dataset: Dataset, episodes: int
) -> Evaluation:
    """Evaluate the agent now and add the point to the online curve."""
    info, seed = trainer.record.online, trainer.cfg["seed"]
    eval_seed = 2_000_000 + 1000 * seed + 100 * len(info.curve)
    result = trainer.evaluate(agent, spec, dataset, episodes, eval_seed)
    evaluation = Evaluation(step=trainer.cfg["train"]["steps"], **result.summary())
    info.curve.append(curve_point(evaluation, info.env_steps_done, info.iterations_done))
    return evaluation


def run_online(trainer: Trainer, agent: OnlineAgent, spec: TaskSpec, dataset: Dataset) -> RunRecord:
    """Fine-tune ``agent`` online after its offline phase; close and write the record."""
    from bench.run import one_line  # bench.run imports this module

    wall = time.perf_counter()
    collector = None
    try:
        collector = load_online(trainer, agent, spec) or start(trainer, agent, spec)
        iterate(trainer, agent, spec, dataset, collector)
        info, seed = trainer.record.online, trainer.cfg["seed"]
        # The same start states as the pre-trained evaluation: the gain is paired.
        result = trainer.evaluate(
            agent, spec, dataset, trainer.cfg["eval"]["episodes"], 10_000 * (seed + 1)
        )
        final = Evaluation(step=trainer.cfg["train"]["steps"], **result.summary())
        trainer.record.final = final
        info.curve.append(curve_point(final, info.env_steps_done, info.iterations_done))
    except DivergenceError as e:
        return trainer.finish("failed", reason=str(e))
    except Exception as e:
        trainer.record.failure_traceback = traceback.format_exc(limit=5)
        trainer.finish("failed", reason=one_line(e))
        raise
    finally:
        if collector is not None:
            collector.close()
    timings = trainer.record.timings
    timings.wall_seconds = round((timings.wall_seconds or 0.0) + time.perf_counter() - wall, 2)
    return trainer.finish("completed")
