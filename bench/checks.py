"""Run knobs checked before anything loads: one line naming the knob and its valid values.

A wrong knob should cost a second, not a training run: :func:`check_run_config` looks at the
composed config before any dataset, environment or network is touched, and raises
:class:`ConfigError` on the first wrong value. ``bench.run`` prints the message and exits with
status 2, leaving no run directory and no record.
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch

import algorithms
from tasks.sources import SOURCES


class ConfigError(ValueError):
    """A run knob has a value outside its valid range; the message names both."""


POSITIVE_INTS = (
    "train.steps",
    "train.log_every",
    "train.checkpoint_every",
    "eval.episodes",
    "eval.max_envs",
)
DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def check_run_config(cfg: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for the first knob of ``cfg`` (the plain composed config) that
    no run can use."""
    for knob in POSITIVE_INTS:
        _positive_int(knob, _get(cfg, knob))
    eval_every = _get(cfg, "train.eval_every")
    if not isinstance(eval_every, int) or eval_every < 0:
        raise ConfigError(
            f"train.eval_every={eval_every!r} is not valid; valid: 0 (no periodic evaluation) or "
            "a positive number of steps"
        )
    if eval_every > 0:
        _positive_int("eval.periodic_episodes", _get(cfg, "eval.periodic_episodes"))
    source = _get(cfg, "data.source")
    if source not in ("auto", *SOURCES):
        raise ConfigError(f"data.source={source!r} is not valid; valid: auto, {', '.join(SOURCES)}")
    scale = _get(cfg, "data.scale")
    if not isinstance(scale, int | float) or scale <= 0:
        raise ConfigError(
            f"data.scale={scale!r} is not valid; valid: a positive fraction (e.g. 0.1)"
        )
    check_online(cfg.get("online"))
    check_augment(cfg.get("augment"))
    check_device(str(cfg["device"]))
    if not isinstance(cfg.get("compile", False), bool):
        raise ConfigError(f"compile={cfg['compile']!r} is not valid; valid: true, false")
    threads = cfg.get("threads", "auto")
    if threads != "auto":
        _positive_int("threads", threads)
        if threads > (os.cpu_count() or 1):
            raise ConfigError(
                f"threads={threads} is not valid; valid: auto or 1..{os.cpu_count()} (this "
                "machine's cores)"
            )


def check_online(online: dict[str, Any] | None) -> None:
    """The online phase's knobs (read by online agents only, checked for every run)."""
    if online is None:
        return
    for key in ("n_envs", "env_steps"):
        _positive_int(f"online.{key}", online.get(key))
    every = online.get("eval_every")
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ConfigError(
            f"online.eval_every={every!r} is not valid; valid: 0 (no periodic evaluation) or a "
            "positive number of environment steps"
        )


def check_augment(section: dict[str, Any] | None) -> None:
    """The augmentation stage's knobs (:mod:`bench.augment`): a registered transform, a positive
    budget or null, a non-negative integer seed; the transform's own fields are checked by its
    ``resolve`` once the data's statistics exist."""
    if not section or section.get("name", "none") == "none":
        return
    name = section["name"]
    if name not in algorithms.augmentations():
        raise ConfigError(str(algorithms.UnknownAugmentationError(name)))
    budget = section.get("budget")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0
    ):
        raise ConfigError(
            f"augment.budget={budget!r} is not valid; valid: null (the run budget's share) or a "
            "positive fraction of the paper's schedule (e.g. 0.01)"
        )
    seed = section.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"augment.seed={seed!r} is not valid; valid: a non-negative integer")


def check_device(name: str) -> None:
    """``auto``, ``cpu``, ``mps``, or a CUDA device this machine has."""
    if not DEVICE.match(name):
        raise ConfigError(f"device={name!r} is not valid; valid: auto, cpu, cuda, cuda:N, mps")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= count:
            have = f"cuda:0..cuda:{count - 1}" if count else "no CUDA device"
            raise ConfigError(f"device={name} is not available on this machine ({have}); use auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device=mps is not available on this machine; use auto")


def _positive_int(knob: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{knob}={value!r} is not valid; valid: a positive integer")


def _get(cfg: dict[str, Any], dotted: str) -> Any:
    section, key = dotted.split(".")
    return cfg[section][key]
