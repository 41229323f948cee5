"""Rolling out behaviour policies into D4RL-layout arrays: the locomotion forge's collector.

Collection runs ``N_ENVS`` env slots (:class:`~tasks.forge.sac.EnvBatch`) in groups of
``GROUP_SIZE`` that step in lockstep with one batched policy forward per step; the groups are
spread over ``workers`` processes. Slot ``j`` has its own env seed and its own action-noise
generator, both drawn from the collection seed, and takes an equal share of every phase; the
arrays hold slot 0's transitions, then slot 1's, and so on. A dataset is therefore deterministic
for a seed on a machine, whatever the number of workers (the groups, and so the inference
batches, do not depend on it). Across machines, BLAS kernels may round differently, so only the
distribution is reproducible.

Actions are sampled from the stochastic policy; episodes are cut at ``MAX_EPISODE_STEPS`` and
flagged ``timeouts``, falls are ``terminals``; ``infos/qpos``/``infos/qvel`` are the MuJoCo
state before each step and ``infos/action_log_probs`` the log-probability of the action, as in
D4RL's files. Each slot's stream ends with a cut episode whose last step is flagged ``timeouts``
(its true ``next_observations`` is stored).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from tasks.forge.sac import EnvBatch, TanhGaussianActor, actor_from_tensors
from tasks.progress import progress as progress_bar

N_ENVS = 16
GROUP_SIZE = 8
MAX_EPISODE_STEPS = 1000
BOOL_KEYS = ("terminals", "timeouts")


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
    with progress_bar(total, desc, "step", enabled=progress) as bar:
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
