"""D4RL's HDF5 dataset layout, read and written with h5py alone (no d4rl, no mujoco-py).

A D4RL file holds per-step arrays ``observations, actions, rewards, terminals, timeouts``,
sometimes ``next_observations``, and groups ``infos/*`` and ``metadata/*``. The reader returns the
per-step arrays as float32 (``terminals``/``timeouts`` as bool), plus ``costs`` and every numeric
per-step ``infos/*`` array when present (``metadata/*`` is skipped: it is not per step).

When ``next_observations`` is absent it is derived as D4RL's ``qlearning_dataset`` does:
``next_observations[t] = observations[t + 1]``, dropping every step flagged ``timeouts`` (its true
successor was never recorded; the row after it starts the next episode) and the file's last row.
Departing from ``qlearning_dataset``, which returns no episode boundaries, the step before a
dropped one inherits its ``timeouts`` flag (unless it is terminal), so episodes stay separable.

Writes are atomic (a temporary file in the same directory, then ``os.replace``), so a reader never
sees a half-written file at the final path. Builders of a cached file (the forge, the augmentation
stage) hold :func:`build_lock` while they build, so runs started together on a cold cache (a
seed grid) build it once: the others wait, then read the first one's file.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tasks.spec import REQUIRED_FIELDS, DatasetFormatError

DERIVABLE_FIELDS = ("next_observations",)
OPTIONAL_FIELDS = ("costs",)
BOOL_FIELDS = ("terminals", "timeouts")


def read_d4rl_hdf5(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Per-step arrays of a D4RL-layout file, validated; see the module docstring."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            arrays = _read_arrays(f, path.name)
    except OSError as e:
        raise DatasetFormatError(
            f"{path.name}: cannot be read as HDF5 ({e}); the file is truncated or corrupt, "
            f"delete {path} and download or forge it again"
        ) from e
    validate_arrays(arrays, path.name)
    if "next_observations" not in arrays:
        arrays = derive_next_observations(arrays)
    return arrays


def read_hdf5_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The root attributes of a file written by :func:`write_d4rl_hdf5` (JSON values decoded)."""
    try:
        with h5py.File(path, "r") as f:
            return {k: _decode_attr(v) for k, v in f.attrs.items()}
    except OSError as e:
        raise DatasetFormatError(f"{Path(path).name}: cannot be read as HDF5 ({e})") from e


def _read_arrays(f: h5py.File, name: str) -> dict[str, np.ndarray]:
    missing = [k for k in REQUIRED_FIELDS if k not in DERIVABLE_FIELDS and k not in f]
    if missing:
        raise DatasetFormatError(
            f"{name}: missing required key(s) {', '.join(missing)}; found {', '.join(sorted(f.keys()))}"
        )
    arrays = {}
    for key in (*REQUIRED_FIELDS, *OPTIONAL_FIELDS):
        if key in f:
            arrays[key] = _as_field(key, f[key][()])
    if "infos" in f and isinstance(f["infos"], h5py.Group):
        n = len(arrays["observations"])
        for key, ds in f["infos"].items():
            if isinstance(ds, h5py.Dataset) and ds.shape[:1] == (n,) and ds.dtype.kind in "biuf":
                arrays[f"infos/{key}"] = ds[()]
    return arrays


def _as_field(key: str, value: np.ndarray) -> np.ndarray:
    if key in BOOL_FIELDS:
        return np.asarray(value).astype(bool)
    return np.asarray(value, dtype=np.float32)


def validate_arrays(arrays: dict[str, np.ndarray], name: str) -> None:
    """Raise :class:`DatasetFormatError` on ragged lengths or non-finite values."""
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise DatasetFormatError(f"{name}: arrays have different lengths ({detail})")
    if lengths.get("observations", 0) == 0:
        raise DatasetFormatError(f"{name}: the dataset is empty")
    for key, value in arrays.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            bad = ~np.isfinite(value.reshape(len(value), -1)).all(axis=1)
            raise DatasetFormatError(
                f"{name}: {key} holds NaN/inf in {int(bad.sum())} row(s), first at index "
                f"{int(np.argmax(bad))}"
            )


def derive_next_observations(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Add ``next_observations`` the way D4RL's ``qlearning_dataset`` does (module docstring)."""
    timeouts, terminals = arrays["timeouts"], arrays["terminals"]
    n = len(timeouts)
    keep = np.flatnonzero(~timeouts[: n - 1])
    out = {k: v[keep] for k, v in arrays.items()}
    out["next_observations"] = arrays["observations"][keep + 1]
    # A kept step whose successor row was dropped (a timeout row, or the file's last row) now ends
    # its episode.
    successor_dropped = np.ones(n, dtype=bool)
    successor_dropped[: n - 1] = timeouts[1:]
    successor_dropped[n - 2 :] = True
    out["timeouts"] = successor_dropped[keep] & ~terminals[keep]
    return out


def write_d4rl_hdf5(
    path: str | os.PathLike, arrays: dict[str, np.ndarray], attrs: dict[str, Any] | None = None
) -> Path:
    """Write ``arrays`` (keys may be ``group/name``) and root ``attrs`` atomically to ``path``.

    Attribute values that HDF5 cannot hold natively (dicts, lists, None) are stored as JSON text
    and decoded again by :func:`read_hdf5_attrs`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            for key, value in arrays.items():
                f.create_dataset(key, data=np.asarray(value))
            for key, value in (attrs or {}).items():
                f.attrs[key] = _encode_attr(value)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextmanager
def build_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold the exclusive right to build ``path`` (an ``flock`` on ``<path>.lock`` beside it,
    released when the block ends or the process dies). A caller checks again inside the block
    whether ``path`` exists: a concurrent builder may have written it while this one waited."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f"{path.name}.lock"), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process building {path}", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


JSON_PREFIX = "json:"


def _encode_attr(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str, np.generic)):
        return value
    return JSON_PREFIX + json.dumps(value, sort_keys=True)


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value.startswith(JSON_PREFIX):
        return json.loads(value[len(JSON_PREFIX) :])
    if isinstance(value, np.generic):
        return value.item()
    return value
