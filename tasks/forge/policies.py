"""Behaviour-policy storage: the shipped actors of the locomotion forge and their manifest.

``tasks/policies/<env>/`` (``$DIFFRL_POLICY_DIR`` overrides) holds
``random|medium|expert.safetensors`` (float32 actor weights), ``replay.safetensors`` (the
checkpoints before the medium point, float16 to keep the package small: their rollouts use these
rounded weights) and ``policies.json`` (evaluation returns, sha256 of every file, training
provenance). Which checkpoint becomes which level is the protocol's business
(:mod:`tasks.forge.locomotion`); this module writes, reads and checks the files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tasks.forge import ForgeNotAvailableError
from tasks.forge.sac import (
    SACConfig,
    TanhGaussianActor,
    actor_from_tensors,
    evaluate_actor,
    make_actor,
    save_actor_weights,
)
from tasks.registry import LOCOMOTION

POLICY_FORMAT = 1
POLICY_EVAL_EPISODES = 20
POLICY_EVAL_SEED = 2_000_003
# Env steps/s of tasks.forge.sac (one thread) measured by benchmarks/forge.py on the 2-core
# development machines: 61-132 idle, 26-34 while other jobs loaded both cores.
MEASURED_SAC_STEPS_PER_S = 30
PACKAGE_POLICY_DIR = Path(__file__).resolve().parents[1] / "policies"


class BehaviourPoliciesMissingError(ForgeNotAvailableError):
    """The behaviour policies a locomotion level needs are not shipped; the message says how to
    train them."""


def policy_dir(env: str) -> Path:
    """Where ``env``'s behaviour policies live: ``$DIFFRL_POLICY_DIR/<env>`` or the package's."""
    root = os.environ.get("DIFFRL_POLICY_DIR")
    return (Path(root).expanduser() if root else PACKAGE_POLICY_DIR) / env


@dataclass
class ReplayCheckpoint:
    """One actor of the medium-replay schedule and the training steps it covered."""

    actor: TanhGaussianActor
    train_step: int
    covers_steps: int


@dataclass
class PolicySet:
    """An env's behaviour policies as loaded from :func:`policy_dir` (module docstring)."""

    env: str
    directory: Path
    manifest: dict[str, Any]

    def actor(self, name: str) -> TanhGaussianActor:
        entry = self._entry(name)
        return actor_from_tensors(load_file(self._checked(entry)))

    def replay(self) -> list[ReplayCheckpoint]:
        entry = self.manifest.get("replay")
        if entry is None:
            raise self._missing("medium-replay")
        tensors = load_file(self._checked(entry))
        out = []
        for item in entry["checkpoints"]:
            prefix = item["key"] + "/"
            weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            out.append(
                ReplayCheckpoint(
                    actor_from_tensors(weights), item["train_step"], item["covers_steps"]
                )
            )
        return out

    def describe(self, name: str) -> dict[str, Any]:
        """Provenance of one policy (file, sha256, training step, evaluation return)."""
        entry = self.manifest["replay"] if name == "replay" else self._entry(name)
        return {k: v for k, v in entry.items() if k != "checkpoints"}

    def _entry(self, name: str) -> dict[str, Any]:
        entry = self.manifest.get("policies", {}).get(name)
        if entry is None:
            raise self._missing(name)
        return entry

    def _checked(self, entry: dict[str, Any]) -> str:
        path = self.directory / entry["file"]
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            raise ValueError(
                f"{path}: sha256 {digest} does not match {entry['sha256']} in policies.json"
            )
        return str(path)

    def _missing(self, name: str) -> BehaviourPoliciesMissingError:
        return BehaviourPoliciesMissingError(missing_policies_message(self.env, name))


def load_policy_set(env: str) -> PolicySet:
    """The behaviour policies of ``env``; raises :class:`BehaviourPoliciesMissingError`."""
    directory = policy_dir(env)
    manifest_path = directory / "policies.json"
    if not manifest_path.exists():
        raise BehaviourPoliciesMissingError(missing_policies_message(env, "any"))
    return PolicySet(env, directory, json.loads(manifest_path.read_text()))


def policy_tag(env: str, parts: Sequence[str]) -> str:
    """12 hex digits of the sha256 of the policy files that collect ``parts`` (level names, or
    ``replay``): forged file names carry it, so a retrained policy never reads a stale file."""
    manifest = load_policy_set(env).manifest
    entries = [manifest["replay"] if p == "replay" else manifest["policies"][p] for p in parts]
    joined = "".join(entry["sha256"] for entry in entries)
    return hashlib.sha256(joined.encode()).hexdigest()[:12]


def missing_policies_message(env: str, name: str) -> str:
    """What to run when ``env`` has no shipped ``name`` policy, with the expected training time."""
    steps = SACConfig().total_steps
    hours = steps / MEASURED_SAC_STEPS_PER_S / 3600
    return (
        f"no shipped {name} behaviour policy for {env} (looked in {policy_dir(env)}/policies.json). "
        f"Train them (SAC, {steps:,} env steps: about {hours:.0f} h on a shared 2-core "
        f"CPU at the measured ~{MEASURED_SAC_STEPS_PER_S} steps/s, less on an idle one; resumable) "
        "with:\n"
        f"  python -m bench.forge task={env}-medium-v2 forge.retrain=true\n"
        "(add forge.until=medium to stop once the medium level is reached: random, medium and "
        "medium-replay then forge, expert and medium-expert need the full run).\n"
        f"The random level needs no training: python -m bench.forge task={env}-random-v2"
    )


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_policy_set(
    env: str,
    directory: str | os.PathLike,
    actors: dict[str, TanhGaussianActor],
    returns: dict[str, Sequence[float]],
    train_steps: dict[str, int],
    replay: Sequence[tuple[int, int, TanhGaussianActor]] = (),
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a policy set: ``actors`` by name (``random``, ``medium``, ``expert``), their
    evaluation ``returns`` and training steps, the ``replay`` schedule as ``(train_step,
    covers_steps, actor)``, and ``provenance`` (training config, curve, machine) into
    ``policies.json``. Files are written first and the manifest last."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    env_id = LOCOMOTION[env][0]
    manifest: dict[str, Any] = {"format": POLICY_FORMAT, "env": env, "env_id": env_id}
    manifest["policies"] = {}
    for name, actor in actors.items():
        path = save_actor_weights(actor, directory / f"{name}.safetensors", {"env_id": env_id})
        manifest["policies"][name] = {
            "file": path.name,
            "sha256": file_sha256(path),
            "train_step": int(train_steps[name]),
            "eval_return_mean": float(np.mean(returns[name])),
            "eval_returns": [float(r) for r in returns[name]],
            "eval_protocol": f"{len(returns[name])} episodes, stochastic actions, seeds "
            f"{POLICY_EVAL_SEED}+i",
        }
    if replay:
        manifest["replay"] = _write_replay(directory, replay)
    manifest["provenance"] = provenance or {}
    tmp = directory / f".policies.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, directory / "policies.json")
    return directory / "policies.json"


def _write_replay(
    directory: Path, replay: Sequence[tuple[int, int, TanhGaussianActor]]
) -> dict[str, Any]:
    tensors, items = {}, []
    for train_step, covers, actor in replay:
        key = f"step{train_step:09d}"
        for name, value in actor.state_dict().items():
            tensors[f"{key}/{name}"] = value.detach().to(torch.float16).contiguous()
        items.append({"key": key, "train_step": int(train_step), "covers_steps": int(covers)})
    path = directory / "replay.safetensors"
    tmp = directory / f".replay.safetensors.{os.getpid()}.tmp"
    save_file(tensors, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return {
        "file": path.name,
        "sha256": file_sha256(path),
        "dtype": "float16",
        "medium_step": sum(item["covers_steps"] for item in items),
        "checkpoints": items,
    }


def untrained_policy_set(
    env: str, seed: int = 0, directory: str | os.PathLike | None = None
) -> Path:
    """Write a set holding only ``random``: the actor a seed-``seed`` SAC run starts from."""
    env_id = LOCOMOTION[env][0]
    torch.manual_seed(seed)
    actor = make_actor(env_id)
    returns = evaluate_actor(actor, env_id, POLICY_EVAL_EPISODES, POLICY_EVAL_SEED).tolist()
    provenance = {
        "trainer": "tasks.forge.sac (untrained: step 0 of a SAC run)",
        "config": asdict(SACConfig(env_id=env_id, seed=seed)),
        "versions": {p: version(p) for p in ("torch", "gymnasium", "mujoco", "numpy")},
    }
    return write_policy_set(
        env,
        directory or policy_dir(env),
        {"random": actor},
        {"random": returns},
        {"random": 0},
        (),
        provenance,
    )
