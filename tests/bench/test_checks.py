"""Run knobs are refused before anything loads, in one line naming the knob and valid values."""

import copy

import pytest
import torch

from bench.checks import ConfigError, check_run_config

GOOD = {
    "device": "cpu",
    "threads": "auto",
    "train": {"steps": 10, "log_every": 5, "checkpoint_every": 5, "eval_every": 0},
    "eval": {"episodes": 2, "periodic_episodes": 1, "max_envs": 2},
    "data": {"source": "auto", "scale": 0.1},
}


def with_value(dotted: str, value) -> dict:
    cfg = copy.deepcopy(GOOD)
    if "." in dotted:
        section, key = dotted.split(".")
        cfg[section][key] = value
    else:
        cfg[dotted] = value
    return cfg


def test_a_good_config_passes():
    check_run_config(GOOD)
    check_run_config(with_value("train.eval_every", 5))


@pytest.mark.parametrize(
    ("knob", "value", "valid"),
    [
        ("train.steps", 0, "a positive integer"),
        ("train.steps", -5, "a positive integer"),
        ("eval.episodes", 0, "a positive integer"),
        ("train.eval_every", -1, "0 (no periodic evaluation)"),
        ("data.source", "ftp", "auto, d4rl, minari, forged"),
        ("data.scale", 0, "a positive fraction"),
        ("device", "gpu", "auto, cpu, cuda, cuda:N, mps"),
        ("threads", 0, "a positive integer"),
        ("threads", 10_000, "auto or 1.."),
    ],
)
def test_bad_knobs_name_the_knob_and_the_valid_values(knob, value, valid):
    with pytest.raises(ConfigError) as error:
        check_run_config(with_value(knob, value))
    message = str(error.value)
    assert message.startswith(f"{knob}={value!r}") and valid in message and "\n" not in message


def test_periodic_episodes_matter_only_with_periodic_evaluation():
    cfg = with_value("eval.periodic_episodes", 0)
    check_run_config(cfg)
    cfg["train"]["eval_every"] = 5
    with pytest.raises(ConfigError, match=r"eval\.periodic_episodes=0"):
        check_run_config(cfg)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_says_so():
    with pytest.raises(ConfigError, match="device=cuda is not available on this machine"):
        check_run_config(with_value("device", "cuda"))
