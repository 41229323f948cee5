"""Progress that shows wherever a long job runs: a live bar on a terminal, plain lines elsewhere.

Training, evaluation and forging take minutes to hours. On a terminal they show tqdm's bar (rate
and time left). Where stderr is not a terminal (a SLURM log, ``nohup``, a CI log) tqdm's bar either
stays silent or fills the file with carriage returns, so there the same bar prints one plain,
newline-terminated line every ``interval`` seconds (and a last one when it closes).
"""

from __future__ import annotations

import sys

from tqdm import tqdm

PLAIN_INTERVAL_S = 30.0


class PlainLines(tqdm):
    """A tqdm whose every refresh is one whole line (at most one per ``mininterval``)."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        print(msg or self.__str__(), file=self.fp, flush=True)
        return True


def progress(
    total: int | None,
    desc: str,
    unit: str = "it",
    initial: int = 0,
    enabled: bool = True,
    interval: float = PLAIN_INTERVAL_S,
) -> tqdm:
    """A progress bar for ``total`` units: tqdm on a terminal, :class:`PlainLines` otherwise."""
    common = {
        "total": total,
        "desc": desc,
        "unit": unit,
        "initial": initial,
        "disable": not enabled,
    }
    if sys.stderr.isatty():
        return tqdm(**common, leave=False, mininterval=0.5)
    return PlainLines(**common, file=sys.stderr, mininterval=interval, maxinterval=interval)
