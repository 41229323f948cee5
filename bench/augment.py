"""The augmentation stage: ``augment=<name>`` maps a task's dataset to an augmented one.

``python -m bench.augment task=<id> augment=diffstitch [augment.<field>=...]`` builds the
augmented dataset alone and prints its statistics; ``python -m bench.run ... augment=diffstitch``
builds it (or reuses it) right after loading the data, then trains any algorithm as usual.

A dataset transform (:class:`algorithms.common.contract.DatasetTransform`, registered in
``algorithms.AUGMENTATIONS``) returns the transitions it adds; this stage appends them to the
original data as separate episodes (agents then sample every transition alike) and writes the
whole in the forge's HDF5 layout (:mod:`tasks.hdf5`) with provenance as root attributes: the
source dataset's provenance, the augmentation's name, resolved Config, seed and budget, the
sha256 of every model it trained (the weights are kept beside the file, ``.models.pt``), and the
counts generated / accepted. ``infos/augmented`` flags the added rows (1) and ``augment/*`` holds
the transform's per-row statistics of the added rows (DiffStitch: backed-up and source returns).

The file is cached under ``$DIFFRL_DATA_DIR/augmented/<dataset>/`` keyed by the source dataset's
sha256, the hash of the resolved Config (and name), ``augment.seed`` and the budget; it is written
atomically, so an interrupted build leaves nothing and runs again, and built by one run at a time
(:func:`tasks.hdf5.build_lock`), so seeds started together on a cold cache build it once. ``augment.budget`` scales the
transform's training and generation lengths (1.0: the paper's); ``null`` takes the run budget's
(:data:`BUDGET_SCALE`); a budget may also give a transform reduced sizes, stated in
``conf/budget_augment/<budget>-<name>.yaml`` (``budget=quick``: small networks, so the stage
takes minutes on 2 CPU cores). The augmentation seed is shared by every run seed, as
``data.forge_seed`` is: runs that differ only in their seed train on the same augmented data.
The knobs are checked before anything loads (:func:`bench.checks.check_augment`), the
transform's own fields by its ``resolve`` once the data's statistics exist (before any training).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from rich.console import Console
from rich.table import Table

import algorithms
from algorithms.common.contract import Augmented
from bench.checks import ConfigError
from bench.data import compute_stats, make_sampler
from bench.records import AugmentInfo
from tasks.forge import data_root
from tasks.hdf5 import build_lock, read_d4rl_hdf5, read_hdf5_attrs, write_d4rl_hdf5
from tasks.sources import cached_sha256
from tasks.spec import REQUIRED_FIELDS, Dataset, Provenance, TaskSpec

console = Console(stderr=True, highlight=False, soft_wrap=True)
NONE = "none"
# ``augment.budget=null``: the share of the paper's augmentation schedule each run budget spends
# (quick: minutes on 2 CPU cores; standard and paper: the paper's whole schedule).
BUDGET_SCALE = {"quick": 0.001, "standard": 1.0, "paper": 1.0}
STAGE_KEYS = ("name", "budget", "seed")  # the stage's own knobs; the rest are the Config's
MODELS_SUFFIX = ".models.pt"


def register_augmentations() -> None:
    """Register each transform's Config (plus the stage's knobs) as the Hydra schema
    ``augment/base_<name>`` that ``conf/augment/<name>.yaml`` extends."""
    store = ConfigStore.instance()
    for name in algorithms.augmentations():
        config = algorithms.load_augmentation(name).Config
        node = dataclasses.make_dataclass(
            f"{name.capitalize()}Stage",
            [
                ("name", str, dataclasses.field(default=name)),
                ("budget", float | None, dataclasses.field(default=None)),
                ("seed", int, dataclasses.field(default=0)),
            ],
            bases=(config,),
        )
        store.store(group="augment", name=f"base_{name}", node=node)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One augmentation as a run asks for it: the transform, its Config fields, seed and budget."""

    name: str
    params: dict[str, Any]
    seed: int
    budget: float


def stage_of(cfg: dict[str, Any], budget_name: str | None = None) -> Stage | None:
    """The augmentation a plain run config asks for (``None``: ``augment=none`` or absent)."""
    section = cfg.get("augment") or {}
    name = section.get("name", NONE)
    if name == NONE:
        return None
    budget = section.get("budget")
    if budget is None:
        budget = BUDGET_SCALE.get(budget_name or "standard", 1.0)
    params = {k: v for k, v in section.items() if k not in STAGE_KEYS}
    return Stage(name, params, int(section.get("seed", 0)), float(budget))


def resolved_config(stage: Stage, info, stats) -> Any:
    """The transform's Config from the stage's fields, resolved (a bad value: ConfigError)."""
    module = algorithms.load_augmentation(stage.name)
    try:
        return module.resolve(module.Config(**stage.params), info, stats)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from e


def cache_path(spec: TaskSpec, source: Dataset, stage: Stage, config: Any) -> Path:
    """Where the augmented dataset of ``source`` under ``stage`` lives (the cache key is in the
    name: source sha256, Config hash, seed, budget)."""
    blob = json.dumps(
        {"name": stage.name, **dataclasses.asdict(config)}, sort_keys=True, default=str
    )
    config_hash = hashlib.sha256(blob.encode()).hexdigest()[:10]
    name = (
        f"{stage.name}-{source.provenance.sha256[:12]}-{config_hash}-seed{stage.seed}-"
        f"budget{stage.budget:g}.hdf5"
    )
    return data_root() / "augmented" / spec.data_id / name


@dataclasses.dataclass(frozen=True)
class Plan:
    """An augmentation resolved against its dataset: what to build and where it is cached."""

    stage: Stage
    config: Any  # the transform's resolved Config
    info: Any  # the task's TaskInfo
    stats: Any  # the source dataset's DatasetStats
    path: Path  # the cache file


def plan_augmentation(
    spec: TaskSpec, dataset: Dataset, cfg: dict[str, Any], budget: str | None = None
) -> Plan | None:
    """The augmentation ``cfg["augment"]`` asks for, resolved (``None`` for ``augment=none``);
    a bad field raises :class:`ConfigError` here, before any training."""
    stage = stage_of(cfg, budget)
    if stage is None:
        return None
    if spec.safety is not None or spec.kind == "multi-agent":
        raise ConfigError(
            f"augment={stage.name} is not valid for {spec.task_id}; valid: augment=none on safe "
            "and multi-agent tasks"
        )
    info = _task_info(spec, dataset)
    stats = compute_stats(dataset)
    config = resolved_config(stage, info, stats)
    return Plan(stage, config, info, stats, cache_path(spec, dataset, stage, config))


def materialize(plan: Plan, dataset: Dataset, device: torch.device) -> Dataset:
    """The augmented dataset of ``plan``: the cached file, else built now and cached (one
    builder at a time: runs started together wait for the first, then reuse its file)."""
    if not plan.path.exists():
        with build_lock(plan.path):
            if not plan.path.exists():  # else built by a concurrent run while this one waited
                build(plan.path, plan.stage, plan.config, dataset, plan.info, plan.stats, device)
                return load_augmented(plan.path, dataset)
    console.print(f"[augment] reusing {plan.path}")
    return load_augmented(plan.path, dataset)


def augmented_dataset(
    spec: TaskSpec,
    dataset: Dataset,
    cfg: dict[str, Any],
    device: torch.device,
    budget: str | None = None,
) -> Dataset:
    """``dataset`` augmented as ``cfg["augment"]`` asks (as it is for ``augment=none``): the
    cached file when one exists, else built now and cached (``budget``: the run's preset)."""
    plan = plan_augmentation(spec, dataset, cfg, budget)
    return dataset if plan is None else materialize(plan, dataset, device)


def _task_info(spec: TaskSpec, dataset: Dataset):
    from bench.run import task_info  # bench.run imports this module

    return task_info(spec, dataset)


def build(path: Path, stage: Stage, config: Any, dataset: Dataset, info, stats, device) -> Path:
    """Run the transform on ``dataset`` and write the augmented file (and its models)."""
    module = algorithms.load_augmentation(stage.name)
    console.print(
        f"[augment] {stage.name} on {info.task_id} (budget {stage.budget:g}, seed {stage.seed})"
    )

    def sampler(spec, seed: int):
        return make_sampler(dataset, spec, device, seed)

    start = time.perf_counter()
    out: Augmented = module.augment(
        config, dataset.arrays, info, stats, sampler, device, stage.seed, stage.budget
    )
    seconds = time.perf_counter() - start
    console.print(
        f"[augment] {out.accepted:,} of {out.generated:,} generated transitions accepted "
        f"({seconds:.1f} s; the file keeps no timing, so a seed rebuilds it byte for byte)"
    )
    models = {k: _state_bytes(v) for k, v in out.checkpoints.items()}
    arrays = merged_arrays(dataset.arrays, out.arrays)
    attrs = {
        "task_id": info.data_id,
        "protocol": f"augment:{stage.name}",
        "augment": stage.name,
        "augment_config": dataclasses.asdict(config),
        "augment_seed": stage.seed,
        "augment_budget": stage.budget,
        "source": dataset.provenance.to_dict(),
        "generated": int(out.generated),
        "accepted": int(out.accepted),
        "statistics": _plain(out.stats),
        "checkpoints": {k: hashlib.sha256(v).hexdigest() for k, v in models.items()},
        "ref_min_score": dataset.ref_min_score,
        "ref_max_score": dataset.ref_max_score,
    }
    _write_models(path, models)
    return write_d4rl_hdf5(path, arrays, attrs)


def merged_arrays(original: dict[str, np.ndarray], added: dict[str, np.ndarray]) -> dict:
    """The original transitions then the added ones, D4RL layout; ``infos/augmented`` flags the
    added rows; the added rows' extra statistics go to ``augment/<key>`` (added rows only)."""
    out = {
        k: np.concatenate([original[k], added[k].astype(original[k].dtype)])
        for k in REQUIRED_FIELDS
    }
    flags = np.r_[np.zeros(len(original["rewards"])), np.ones(len(added["rewards"]))]
    out["infos/augmented"] = flags.astype(np.int8)
    for key in sorted(set(added) - set(REQUIRED_FIELDS)):
        out[f"augment/{key}"] = added[key]
    return out


def load_augmented(path: Path, source: Dataset) -> Dataset:
    """The augmented dataset at ``path``: its arrays, provenance and the source's references."""
    arrays = read_d4rl_hdf5(path)
    attrs = read_hdf5_attrs(path)
    provenance = Provenance(
        source=source.provenance.source,
        path=str(path),
        sha256=cached_sha256(path),
        n_transitions=len(arrays["observations"]),
        n_episodes=int((arrays["terminals"] | arrays["timeouts"])[:-1].sum()) + 1,
        protocol=attrs["protocol"],
        params={k: attrs[k] for k in PROVENANCE_KEYS},
    )
    return Dataset(arrays, provenance, source.ref_min_score, source.ref_max_score)


PROVENANCE_KEYS = (
    "augment",
    "augment_config",
    "augment_seed",
    "augment_budget",
    "source",
    "generated",
    "accepted",
    "checkpoints",
    "statistics",
)


def augment_info(dataset: Dataset) -> AugmentInfo | None:
    """The record's description of the augmentation a dataset went through (``None``: plain)."""
    params = dataset.provenance.params
    if not (dataset.provenance.protocol or "").startswith("augment:"):
        return None
    return AugmentInfo(
        name=params["augment"],
        path=dataset.provenance.path,
        sha256=dataset.provenance.sha256,
        source_sha256=params["source"]["sha256"],
        config=params["augment_config"],
        seed=params["augment_seed"],
        budget=params["augment_budget"],
        generated=params["generated"],
        accepted=params["accepted"],
        checkpoints=params["checkpoints"],
    )


def _state_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
    return buffer.getvalue()


def _write_models(path: Path, models: dict[str, bytes]) -> None:
    """The trained models beside the dataset (atomic), so provenance hashes can be checked."""
    target = path.with_name(path.name + MODELS_SUFFIX)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    torch.save(models, tmp)
    tmp.replace(target)


def _plain(value: Any) -> Any:
    """JSON-ready copy of a statistics dict (numpy scalars as Python numbers)."""
    return json.loads(
        json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v))
    )


# ---------------------------------------------------------------------------------- CLI


def statistics_table(dataset: Dataset) -> Table:
    """The augmented dataset's statistics: counts, acceptance, returns of the added stitches."""
    p = dataset.provenance.params
    table = Table(title=f"augment={p['augment']} ({dataset.provenance.path})")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    generated, accepted = p["generated"], p["accepted"]
    rows = [
        ("source transitions", f"{p['source']['n_transitions']:,}"),
        ("generated transitions", f"{generated:,}"),
        ("accepted transitions", f"{accepted:,}"),
        ("acceptance rate", f"{accepted / generated:.1%}" if generated else "n/a"),
        ("augmented dataset", f"{dataset.provenance.n_transitions:,} transitions"),
        ("budget / seed", f"{p['augment_budget']:g} / {p['augment_seed']}"),
    ]
    rows += [(k, str(v)) for k, v in p["statistics"].items()]
    for row in rows:
        table.add_row(*row)
    return table


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.augment task=... augment=<name> [...]``: build (or reuse) the augmented
    dataset and print its statistics; exit 2 on bad input."""
    import hydra
    from omegaconf import OmegaConf, open_dict

    from bench.checks import check_run_config
    from bench.run import apply_paper_budget, resolve_device
    from bench.threads import claim_cores
    from tasks.registry import get_task
    from tasks.sources import load_dataset
    from tasks.spec import DatasetFormatError, DatasetNotFoundError, UnknownTaskError

    argv = sys.argv[1:] if argv is None else argv
    with hydra.initialize_config_module("bench.conf", version_base="1.3"):
        cfg = hydra.compose("config", overrides=argv, return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    with open_dict(cfg):
        del cfg["hydra"]
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("algo")
    try:
        plain = apply_paper_budget(plain, choices["algo"], choices["budget"])
        check_run_config(plain)
        if stage_of(plain) is None:
            raise ConfigError(
                f"augment=none builds nothing; valid: {', '.join(algorithms.augmentations())}"
            )
        spec = get_task(plain["task"])
        data = plain["data"]
        source = load_dataset(
            spec, source=data["source"], scale=data["scale"], forge_seed=data["forge_seed"]
        )
        plan = plan_augmentation(spec, source, plain, choices["budget"])
        cores = claim_cores(plain["threads"], log=console.print)  # as bench.run: no oversubscribing
        try:
            torch.set_num_threads(cores.threads)
            dataset = materialize(plan, source, resolve_device(plain["device"]))
        finally:
            cores.release()
    except (ConfigError, UnknownTaskError, DatasetNotFoundError, DatasetFormatError) as e:
        console.print(f"[bold red]error[/]: {e}")
        return 2
    Console(highlight=False).print(statistics_table(dataset))
    return 0


register_augmentations()

if __name__ == "__main__":
    sys.exit(main())
