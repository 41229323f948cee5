"""Portable SAC training state: what lets a behaviour-policy run go on on another machine.

A SAC run takes hours longer than one working session, and the machine it ran on may not come
back, so the run's resume state is committed to the repository (``forge-runs/<run>/``) and
restored from there. The full state (:meth:`tasks.forge.sac.SACTrainer.save_state`) is dominated
by the replay buffer: one float32 row ``obs | action | reward | next_obs | terminal`` per env
step (168 bytes on Walker2d, 40 MB at 250k steps). A snapshot keeps only the buffer's actions
(24 bytes a step on Walker2d) and rebuilds the rest by re-simulating them: the envs are reset
with the run's seeds and stepped with the stored actions, in the lockstep order of training, which
on the same MuJoCo build reproduces every row bit for bit (the sha256 of the original rows is kept
and checked; on another build the re-simulated transitions are still exact transitions of the
stored actions, and the restore says that they differ).

A snapshot directory holds ``state.json`` (the trainer's, pointing at the compact file),
``state-{N}.safetensors`` (the state with ``buffer/actions`` in place of ``buffer/rows``),
``curve.json`` and the actor checkpoints the policy export still needs (``actors/``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tasks.forge.sac import EnvBatch, SACConfig

REPO_SNAPSHOTS = Path(__file__).resolve().parents[2] / "forge-runs"


def snapshot_root() -> Path | None:
    """Where snapshots go: ``$DIFFRL_SAC_SNAPSHOTS``, else ``forge-runs/`` of a source checkout
    (None for an installed package, which has no repository to commit to)."""
    root = os.environ.get("DIFFRL_SAC_SNAPSHOTS")
    if root:
        return Path(root).expanduser()
    return REPO_SNAPSHOTS if (REPO_SNAPSHOTS.parent / ".git").exists() else None


def rows_digest(rows: torch.Tensor) -> str:
    return hashlib.sha256(rows.contiguous().numpy().tobytes()).hexdigest()


def pack(run_dir: str | os.PathLike, dest: str | os.PathLike, actors: Iterable[str]) -> Path:
    """Write the compact snapshot of the run in ``run_dir`` (its latest saved state) to ``dest``,
    with the actor files named in ``actors`` (paths relative to the run), replacing what
    ``dest`` held. Returns ``dest``."""
    run_dir, dest = Path(run_dir), Path(dest)
    meta = json.loads((run_dir / "state.json").read_text())
    tensors = load_file(run_dir / meta["file"])
    rows = tensors.pop("buffer/rows")
    obs_dim = tensors["actor/fc0.weight"].shape[1]
    act_dim = tensors["actor/last_fc.weight"].shape[0]
    tensors["buffer/actions"] = rows[:, obs_dim : obs_dim + act_dim].contiguous()
    meta = {**meta, "buffer": {**meta["buffer"], "rows_sha256": rows_digest(rows)}}
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "actors").mkdir(parents=True)
    save_file(tensors, tmp / meta["file"])
    (tmp / "state.json").write_text(json.dumps(meta, indent=1))
    shutil.copy2(run_dir / "curve.json", tmp / "curve.json")
    for rel in actors:
        shutil.copy2(run_dir / rel, tmp / rel)
    for path in tmp.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    old = dest.with_name(f".{dest.name}.old")
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def saved_step(directory: str | os.PathLike) -> int:
    """The training step of the state saved in ``directory`` (-1 when there is none)."""
    path = Path(directory) / "state.json"
    return json.loads(path.read_text())["step"] if path.exists() else -1


def restore(src: str | os.PathLike, run_dir: str | os.PathLike, progress: bool = True) -> bool:
    """Rebuild the full run state in ``run_dir`` from the snapshot ``src`` (replay buffer
    re-simulated); returns whether the rows match the original bit for bit."""
    src, run_dir = Path(src), Path(run_dir)
    meta = json.loads((src / "state.json").read_text())
    tensors = load_file(src / meta["file"])
    actions = tensors.pop("buffer/actions")
    rows = resimulate(SACConfig(**meta["config"]), actions.numpy(), progress)
    exact = rows_digest(rows) == meta["buffer"]["rows_sha256"]
    tensors["buffer/rows"] = rows
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src / "actors", run_dir / "actors", dirs_exist_ok=True)
    shutil.copy2(src / "curve.json", run_dir / "curve.json")
    save_file(tensors, run_dir / meta["file"])
    (run_dir / "state.json").write_text(json.dumps(meta, indent=1))
    if progress and not exact:
        print(
            f"restored {run_dir} from {src}: the re-simulated replay buffer differs from the "
            "original (another MuJoCo build); its transitions are exact for the stored actions"
        )
    return exact


def resimulate(cfg: SACConfig, actions: np.ndarray, progress: bool = False) -> torch.Tensor:
    """The replay rows that stepping a fresh ``cfg`` env batch with ``actions`` produces, in the
    trainer's lockstep order (``n_envs`` rows per step) and row layout."""
    seeds = np.random.SeedSequence(cfg.seed).generate_state(cfg.n_envs)
    envs = EnvBatch(cfg.env_id, seeds.tolist(), cfg.max_episode_steps)
    n = envs.n
    out = []
    try:
        for start in range(0, len(actions), n):
            obs = envs.obs.astype(np.float32)
            batch = actions[start : start + n]
            step = envs.step(batch)
            out.append(
                np.concatenate(
                    [obs, batch, step.rewards[:, None], step.next_obs, step.terminated[:, None]],
                    axis=1,
                    dtype=np.float32,
                )
            )
    finally:
        envs.close()
    if progress:
        print(f"re-simulated {len(actions):,} replay transitions of {cfg.env_id}")
    return torch.from_numpy(np.concatenate(out))
