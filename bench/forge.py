"""``python -m bench.forge task=<id> [data.scale=1.0] [seed=0] [force=false]``: forge a dataset.

Builds the task's dataset by its published protocol (``tasks.forge``) under ``$DIFFRL_DATA_DIR``
and prints where it went; an existing one is kept unless ``force=true``. Hydra parses the command
line, as for ``bench.run``, but is told to write nothing (no output directory, no log files), so
the dataset is the only thing this command creates. An unknown task id or a task without a forge
exits with status 1 and says why (listing the valid ids).

Locomotion tasks collect with the behaviour policies shipped in ``tasks/policies/<env>/``.
``forge.retrain=true`` first trains them (:mod:`tasks.forge.sac`, ``forge.train_steps`` env steps,
default 1M: hours on a 2-core CPU, see the error message of a missing policy for the measured
estimate; ``forge.train_threads`` torch threads, default 1, the faster setting on a shared
machine, claimed as a run's cores are: :mod:`bench.threads`) until the ``forge.until`` level (``medium`` or ``expert``, the default) is decided
(:mod:`tasks.forge.locomotion`: the levels match D4RL's datasets' mean returns), resuming the run
from ``$DIFFRL_DATA_DIR/sac/`` or from its snapshot committed under ``forge-runs/``, whichever
went further, and packing its resume state into that snapshot at every save. It then writes the
decided levels to the policy directory (``$DIFFRL_POLICY_DIR`` overrides the package's) and
forges the dataset. Forged locomotion files carry the tag of the policies that collected them,
so data from replaced policies is never read again.
"""

from __future__ import annotations

import json
import sys

import hydra
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from bench.threads import claim_cores
from tasks.forge import ForgeNotAvailableError, forge, forged_path
from tasks.forge.locomotion import retrain_behaviour_policies
from tasks.forge.policies import BehaviourPoliciesMissingError
from tasks.registry import get_task
from tasks.sources import not_found_message
from tasks.spec import TaskSpec, UnknownTaskError

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
    "forge": {
        "retrain": False,
        "train_steps": 1_000_000,
        "train_seed": 0,
        "train_threads": 1,
        "until": "expert",
    },
    "hydra": {"run": {"dir": "."}, "output_subdir": None},
}
ConfigStore.instance().store(name="forge", node=CONFIG)


@hydra.main(version_base=None, config_name="forge")
def main(cfg: DictConfig) -> None:
    try:
        spec = get_task(cfg.task)
    except UnknownTaskError as e:
        sys.exit(f"bench.forge: {e}")
    if spec.dataset_task is not None:
        print(f"{spec.task_id} trains on the dataset of {spec.dataset_task}; forging that")
        spec = get_task(spec.dataset_task)
    scale, seed = float(cfg.data.scale), int(cfg.seed)
    force = bool(cfg.force)
    if cfg.forge.retrain:
        # Hours of training: its cores are claimed as a run's are, so that runs started beside it
        # (threads=auto) take the cores left instead of oversubscribing its.
        cores = claim_cores(int(cfg.forge.train_threads))
        try:
            torch.set_num_threads(cores.threads)
            retrain(
                spec, int(cfg.forge.train_steps), int(cfg.forge.train_seed), str(cfg.forge.until)
            )
        finally:
            cores.release()
        force = True
    existed = forged_path(spec, scale, seed).exists() and not force
    try:
        path = forge(spec, scale=scale, seed=seed, force=force, progress=True)
    except BehaviourPoliciesMissingError as e:
        sys.exit(f"bench.forge: {e}")
    except ForgeNotAvailableError as e:
        sys.exit(f"bench.forge: {e}\n{not_found_message(spec, 'auto', scale, seed)}")
    if existed:
        print(f"already forged: {path} (force=true forges it again)")
    else:
        print(f"wrote {path}")


def retrain(spec: TaskSpec, train_steps: int, train_seed: int, until: str = "expert") -> None:
    """Train ``spec``'s behaviour policies from scratch (to the expert, or ``until="medium"``)
    and write them where forges read them."""
    if spec.forge != "locomotion":
        sys.exit(f"bench.forge: forge.retrain applies to locomotion tasks, not {spec.task_id}")
    env = spec.forge_params["env"]
    try:
        manifest = retrain_behaviour_policies(
            env, train_steps, train_seed, progress=True, until=until
        )
    except ValueError as e:  # a bad forge.until, or the run has not reached the medium level
        sys.exit(f"bench.forge: {e}")
    policies = json.loads(manifest.read_text())["policies"]
    summary = ", ".join(f"{k} {v['eval_return_mean']:.0f}" for k, v in policies.items())
    print(f"wrote {manifest} (evaluation returns: {summary})")


if __name__ == "__main__":
    main()
