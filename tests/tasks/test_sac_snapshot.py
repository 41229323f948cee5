"""Portable SAC state: a run packed mid-way and restored on a clean disk goes on bit for bit."""

import json

import pytest
import torch
from tiny_sac import tiny_sac

from tasks.forge import sac_snapshot
from tasks.forge.sac import SACTrainer

CFG = {"env_id": "Walker2d-v5", "eval_episodes": 1}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_packed_run_restores_and_continues_bit_for_bit(tmp_path):
    cfg = tiny_sac(**CFG)
    straight = SACTrainer(cfg, tmp_path / "straight")
    straight.train(progress=False)

    first = SACTrainer(cfg, tmp_path / "first")
    first.train(progress=False, until=lambda checkpoints: checkpoints[-1].step >= 200)
    actor = "actors/step000000000.safetensors"
    packed = sac_snapshot.pack(tmp_path / "first", tmp_path / "snap", [actor])
    state_file = json.loads((packed / "state.json").read_text())["file"]
    assert (packed / state_file).stat().st_size < (tmp_path / "first" / state_file).stat().st_size
    assert (packed / actor).exists()

    assert sac_snapshot.restore(packed, tmp_path / "elsewhere", progress=False)
    assert sac_snapshot.saved_step(tmp_path / "elsewhere") == 200
    resumed = SACTrainer(cfg, tmp_path / "elsewhere")
    resumed.train(progress=False)
    assert resumed.step == 300
    for key, value in straight.actor.state_dict().items():
        torch.testing.assert_close(resumed.actor.state_dict()[key], value, rtol=0, atol=0)
    for key, value in straight.critic.state_dict().items():
        torch.testing.assert_close(resumed.critic.state_dict()[key], value, rtol=0, atol=0)


def test_resimulation_detects_other_transitions(tmp_path):
    cfg = tiny_sac(**CFG)
    run = SACTrainer(cfg, tmp_path / "run")
    run.train(progress=False, until=lambda checkpoints: checkpoints[-1].step >= 200)
    packed = sac_snapshot.pack(tmp_path / "run", tmp_path / "snap", [])
    meta = json.loads((packed / "state.json").read_text())
    meta["buffer"]["rows_sha256"] = "0" * 64  # as if recorded on another MuJoCo build
    (packed / "state.json").write_text(json.dumps(meta))
    assert not sac_snapshot.restore(packed, tmp_path / "other", progress=False)
