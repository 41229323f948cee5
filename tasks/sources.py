"""Dataset resolution: a task id -> a :class:`~tasks.spec.Dataset` with its provenance.

``source="auto"`` tries, in order (DESIGN section 3): the D4RL HDF5 file in
``$D4RL_DATASET_DIR`` (default ``~/.d4rl/datasets``); the local Minari dataset (minari's store,
``$MINARI_DATASETS_PATH``; never downloaded here); the dataset already forged at
(``scale``, ``forge_seed``); a fresh forge when the task's forge is cheap or, for locomotion,
when its behaviour policies are shipped (:func:`tasks.forge.forges_on_first_use`). Otherwise
:class:`DatasetNotFoundError` says exactly how to get the data. ``source="d4rl"|"minari"|"forged"``
restricts the search to that source (``forged`` still forges on first use as ``auto`` does);
``scale`` and ``forge_seed`` only concern forged data.

Reference scores are the spec's constants when it has them, else the ones stored with the data
(forge attributes, Minari metadata). Provenance carries the file's sha256; hashes are cached in
``$DIFFRL_DATA_DIR/.sha256`` keyed by path, size and mtime, so a 1 GB file is hashed once.

A safe task (``spec.safety``) gets a ``costs`` array labelled from its transitions by
:func:`tasks.safety.dataset_costs`; one derived from another task (``spec.dataset_task``) reads
and forges that task's data.

Minari data for ``maze2d-*-v1`` (``D4RL/pointmaze/*-v2``, gymnasium-robotics frame) is converted
to D4RL's maze2d layout by :func:`tasks.envs.maze2d_from_pointmaze`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tasks.envs import MAZE2D_ENV_ID, maze2d_from_pointmaze
from tasks.forge import data_root, forge, forge_available, forged_path, forges_on_first_use
from tasks.hdf5 import read_d4rl_hdf5, read_hdf5_attrs, validate_arrays
from tasks.minari_io import minari_dataset_dir, minari_dataset_exists, read_minari
from tasks.safety import dataset_costs
from tasks.spec import (
    Dataset,
    DatasetFormatError,
    DatasetNotFoundError,
    Provenance,
    TaskSpec,
)

SOURCES = ("d4rl", "minari", "forged")
D4RL_URL_DIRS = {
    "locomotion": "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2",
    "maze": "http://rail.eecs.berkeley.edu/datasets/offline_rl/maze2d",
}


def d4rl_dir() -> Path:
    """``$D4RL_DATASET_DIR`` or D4RL's default ``~/.d4rl/datasets``."""
    default = Path.home() / ".d4rl" / "datasets"
    return Path(os.environ.get("D4RL_DATASET_DIR", default)).expanduser()


def load_dataset(
    spec: TaskSpec,
    source: str = "auto",
    scale: float = 1.0,
    forge_seed: int = 0,
    verbose: bool = True,
) -> Dataset:
    """Resolve and load ``spec``'s dataset (module docstring); prints its origin if ``verbose``."""
    if source not in ("auto", *SOURCES):
        raise ValueError(f"unknown data source {source!r}; use auto, {', '.join(SOURCES)}")
    dataset = _find(spec, source, scale, forge_seed)
    if dataset is None and source in ("auto", "forged") and forges_on_first_use(spec):
        forge(spec, scale=scale, seed=forge_seed, progress=verbose)
        dataset = _load_forged(spec, scale, forge_seed)
    if dataset is None:
        raise DatasetNotFoundError(not_found_message(spec, source, scale, forge_seed))
    if spec.safety is not None:
        costs = dataset_costs(spec.safety, dataset.arrays, dataset.episode_ends())
        dataset.arrays["costs"] = costs
    if verbose:
        p = dataset.provenance
        print(
            f"[data] {spec.task_id}: {p.source} {p.path} ({p.n_transitions:,} transitions, "
            f"{p.n_episodes:,} episodes, sha256 {p.sha256[:12]})"
        )
    return dataset


def _find(spec: TaskSpec, source: str, scale: float, forge_seed: int) -> Dataset | None:
    for name in SOURCES if source == "auto" else (source,):
        if name == "d4rl":
            dataset = _load_d4rl(spec)
        elif name == "minari":
            dataset = _load_minari(spec)
        else:
            dataset = _load_forged(spec, scale, forge_seed)
        if dataset is not None:
            return dataset
    return None


def _load_d4rl(spec: TaskSpec) -> Dataset | None:
    if spec.d4rl_file is None or not (d4rl_dir() / spec.d4rl_file).exists():
        return None
    path = d4rl_dir() / spec.d4rl_file
    arrays = read_d4rl_hdf5(path)
    return _dataset(spec, arrays, "d4rl", path, stored_refs={})


def _load_minari(spec: TaskSpec) -> Dataset | None:
    if spec.minari_id is None or not minari_dataset_exists(spec.minari_id):
        return None
    arrays, metadata = read_minari(spec.minari_id, spec.obs_keys)
    if spec.env_id == MAZE2D_ENV_ID:
        arrays = maze2d_from_pointmaze(arrays, spec.env_kwargs["maze"])
    validate_arrays(arrays, f"Minari dataset {spec.minari_id}")
    path = minari_dataset_dir(spec.minari_id)
    return _dataset(spec, arrays, "minari", path, stored_refs=metadata)


def _load_forged(spec: TaskSpec, scale: float, forge_seed: int) -> Dataset | None:
    path = forged_path(spec, scale, forge_seed)
    if not path.exists():
        return None
    arrays = read_d4rl_hdf5(path)
    attrs = read_hdf5_attrs(path)
    params = {"scale": attrs.get("scale"), "seed": attrs.get("seed"), **attrs.get("params", {})}
    return _dataset(
        spec,
        arrays,
        "forged",
        path,
        stored_refs=attrs,
        protocol=attrs.get("protocol"),
        params=params,
    )


def _dataset(
    spec: TaskSpec,
    arrays: dict[str, np.ndarray],
    source: str,
    path: Path,
    stored_refs: dict[str, Any],
    protocol: str | None = None,
    params: dict[str, Any] | None = None,
) -> Dataset:
    ref_min, ref_max = _reference_scores(spec, stored_refs, source, path)
    provenance = Provenance(
        source=source,
        path=str(path),
        sha256=cached_sha256(path),
        n_transitions=len(arrays["observations"]),
        n_episodes=_count_episodes(arrays),
        protocol=protocol,
        params=params or {},
    )
    return Dataset(
        arrays=arrays, provenance=provenance, ref_min_score=ref_min, ref_max_score=ref_max
    )


def _reference_scores(
    spec: TaskSpec, stored: dict[str, Any], source: str, path: Path
) -> tuple[float, float]:
    ref_min = spec.ref_min_score if spec.ref_min_score is not None else stored.get("ref_min_score")
    ref_max = spec.ref_max_score if spec.ref_max_score is not None else stored.get("ref_max_score")
    if ref_min is None or ref_max is None:
        raise DatasetFormatError(
            f"{spec.task_id}: the {source} dataset at {path} stores no reference scores "
            "(ref_min_score/ref_max_score) and the task defines none"
        )
    return float(ref_min), float(ref_max)


def _count_episodes(arrays: dict[str, np.ndarray]) -> int:
    ends = arrays["terminals"] | arrays["timeouts"]
    return int(ends[:-1].sum()) + 1


def not_found_message(spec: TaskSpec, source: str, scale: float, forge_seed: int) -> str:
    """What to run to get ``spec``'s data from ``source`` (every source for ``auto``)."""
    wanted = SOURCES if source == "auto" else (source,)
    lines = [f"no dataset for {spec.task_id} (data.source={source}). To get one:"]
    if "d4rl" in wanted and spec.d4rl_file:
        url = f"{D4RL_URL_DIRS[spec.kind]}/{spec.d4rl_file}"
        lines.append(
            f"  D4RL file:  download {url}\n"
            f"              and put it at {d4rl_dir() / spec.d4rl_file} (directory: $D4RL_DATASET_DIR)"
        )
    if "minari" in wanted and spec.minari_id:
        lines.append(
            f"  Minari:     minari download {spec.minari_id}   (store: $MINARI_DATASETS_PATH, "
            "default ~/.minari/datasets)"
        )
    if "forged" in wanted and forge_available(spec):
        lines.append(
            f"  forge:      python -m bench.forge task={spec.task_id} data.scale={scale:g} "
            f"seed={forge_seed}   (writes {forged_path(spec, scale, forge_seed)})"
        )
    elif "forged" in wanted and spec.forge:
        lines.append(
            f"  forge:      not available yet for {spec.task_id} (protocol {spec.forge!r})"
        )
    if len(lines) == 1:
        lines.append(f"  {spec.task_id} has no {source} source; try data.source=auto")
    return "\n".join(lines)


def cached_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file (or of a directory's files, names included), cached by size and mtime."""
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stamp = [
        [str(p.relative_to(path.parent)), p.stat().st_size, p.stat().st_mtime_ns] for p in files
    ]
    key = hashlib.sha1(str(path).encode()).hexdigest()
    cache_file = data_root() / ".sha256" / f"{key}.json"
    if cache_file.exists():
        cached = json.loads(cache_file.read_text())
        if cached.get("stamp") == stamp:
            return cached["sha256"]
    digest = _hash_files(files, path.parent)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"path": str(path), "stamp": stamp, "sha256": digest}))
    tmp.replace(cache_file)
    return digest


def _hash_files(files: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for file in files:
        if len(files) > 1:
            digest.update(str(file.relative_to(root)).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
