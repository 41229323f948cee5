"""``python -m bench.forge task=<id> [data.scale=1.0] [seed=0] [force=false]``: forge a dataset.

Builds the task's dataset by its published protocol (``tasks.forge``) under ``$DIFFRL_DATA_DIR``
and prints where it went; an existing one is kept unless ``force=true``. Hydra parses the command
line, as for ``bench.run``, but is told to write nothing (no output directory, no log files), so
the dataset is the only thing this command creates. An unknown task id or a task without a forge
exits with status 1 and says why (listing the valid ids).
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from tasks.forge import ForgeNotAvailableError, forge, forged_path
from tasks.registry import get_task
from tasks.sources import not_found_message
from tasks.spec import UnknownTaskError

CONFIG = {
    "defaults": [
        "_self_",
        {"override hydra/job_logging": "disabled"},
        {"override hydra/hydra_logging": "disabled"},
    ],
    "task": "???",
    "seed": 0,
    "force": False,
    "data": {"scale": 1.0},
    "hydra": {"run": {"dir": "."}, "output_subdir": None},
}
ConfigStore.instance().store(name="forge", node=CONFIG)


@hydra.main(version_base=None, config_name="forge")
def main(cfg: DictConfig) -> None:
    try:
        spec = get_task(cfg.task)
    except UnknownTaskError as e:
        sys.exit(f"bench.forge: {e}")
    scale, seed = float(cfg.data.scale), int(cfg.seed)
    existed = forged_path(spec, scale, seed).exists() and not cfg.force
    try:
        path = forge(spec, scale=scale, seed=seed, force=bool(cfg.force), progress=True)
    except ForgeNotAvailableError as e:
        sys.exit(f"bench.forge: {e}\n{not_found_message(spec, 'auto', scale, seed)}")
    if existed:
        print(f"already forged: {path} (force=true forges it again)")
    else:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
