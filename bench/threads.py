"""Torch threads that fit the machine: runs on one machine share its cores, never oversubscribe.

Measured on the 2-core development machine: IDQL's training ran at 43.6 steps/s alone and at
3.9 steps/s beside one other 2-thread training process, so two runs that each take every core
are far slower than the same runs one after the other. A run therefore claims cores before it
starts: each core is a slot file under :func:`slot_dir`, held with ``flock`` for the run's
lifetime (the kernel drops the lock when the process ends, also on ``kill -9``).

* ``threads=auto`` (the default) claims every free slot the run may use (:func:`allowed_cores`:
  its CPU affinity, ``SLURM_CPUS_PER_TASK``, ``OMP_NUM_THREADS``), at least one, waiting while
  none is free;
* ``threads=N`` claims N slots, all at once or none (so two runs cannot each hold half of what
  they want), waiting until N are free.

Sweeps give each job ``threads=<cpus_per_task>``, so sweeps and hand-started runs share one pool.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO

POLL_SECONDS = 2.0


def allowed_cores() -> int:
    """The cores this process may use: its affinity, capped by SLURM's and OpenMP's settings."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for var in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            n = min(n, int(value))
    return max(1, n)


def slot_dir() -> Path:
    """Where the core slots of this machine live (``$DIFFRL_CORE_SLOTS`` overrides)."""
    default = Path(tempfile.gettempdir()) / f"diffrl-bench-cores-{os.getuid()}"
    return Path(os.environ.get("DIFFRL_CORE_SLOTS", default))


class CoreClaim:
    """Cores held by this run; :meth:`release` (or process exit) frees them."""

    def __init__(self, handles: list[IO]):
        self.handles = handles

    @property
    def threads(self) -> int:
        return len(self.handles)

    @classmethod
    def attempt(cls, want: int, at_least: int) -> CoreClaim | None:
        """Lock up to ``want`` free slots now; ``None`` (holding nothing) if fewer than
        ``at_least`` were free."""
        directory = slot_dir()
        directory.mkdir(parents=True, exist_ok=True)
        claim = cls([])
        for index in range(os.cpu_count() or 1):
            if claim.threads == want:
                break
            handle = open(directory / f"core-{index}", "a")  # noqa: SIM115 (held until release)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            claim.handles.append(handle)
        if claim.threads >= at_least:
            return claim
        claim.release()
        return None

    def release(self) -> None:
        for handle in self.handles:
            with suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        self.handles = []


def claim_cores(threads: int | str, log: Callable[[str], None] = print) -> CoreClaim:
    """Claim the cores of a run with ``threads`` (``auto`` or a number), waiting while they are
    held by other runs (module docstring)."""
    want = allowed_cores() if threads == "auto" else int(threads)
    at_least = 1 if threads == "auto" else want
    waited = False
    while (claim := CoreClaim.attempt(want, at_least)) is None:
        if not waited:
            log(f"waiting for {'a free core' if threads == 'auto' else f'{want} free cores'}")
            waited = True
        time.sleep(POLL_SECONDS)
    return claim
