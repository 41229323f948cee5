"""``reports/fidelity.md``: current with the code, and every departure from the official code
explained (a default changed without a reason, or a reason left on a value that is now official,
fails here)."""

import dataclasses
import types

import pytest

import algorithms
from algorithms.common.contract import DatasetStats, TaskInfo
from algorithms.common.defaults import Official
from bench import fidelity

REPORTED = [n for n in algorithms.available() if hasattr(algorithms.load(n), "FIDELITY")]
POLICIES = ("bc", "iql", "td3bc", "idql", "diffusion_ql")


def test_the_committed_report_is_current(tmp_path):
    out = tmp_path / "fidelity.md"
    assert fidelity.main(["--out", str(out)]) == 0, "python -m bench.fidelity lists problems"
    committed = fidelity.REPORT.read_text() if fidelity.REPORT.exists() else ""
    assert out.read_text() == committed, "reports/fidelity.md is stale: python -m bench.fidelity"


@pytest.mark.parametrize("name", POLICIES)
def test_policy_algorithms_are_reported_with_their_budget(name):
    module = algorithms.load(name)
    assert name in REPORTED and hasattr(module, "PAPER_BUDGET")
    assert module.FIDELITY_TASKS and module.FIDELITY


@pytest.mark.parametrize("name", REPORTED)
def test_every_departure_is_explained(name):
    assert fidelity.problems(algorithms.load(name)) == []


# -- the checks themselves, on a made-up algorithm -------------------------------------------


@dataclasses.dataclass
class Config:
    lr: float = 1e-3  # learning rate
    scale: float | None = None  # from the data
    width: int = 256  # hidden width


def resolve(cfg: Config, info: TaskInfo, stats: DatasetStats) -> Config:
    return dataclasses.replace(cfg, scale=1000.0 / (stats.return_max - stats.return_min))


def made_up(*rows: Official) -> types.ModuleType:
    """A module with the made-up Config and ``rows`` on hopper."""
    module = types.ModuleType("algorithms.made_up")
    module.Config, module.resolve = Config, resolve
    module.FIDELITY_TASKS, module.FIDELITY = ("hopper-medium-v2",), rows
    return module


def test_a_default_that_moved_without_a_reason_is_a_problem():
    (problem,) = fidelity.problems(made_up(Official("lr", 3e-4, "repo/train.py")))
    assert "'lr'" in problem and "0.001" in problem and "without a departure reason" in problem
    explained = made_up(Official("lr", 3e-4, "repo/train.py", "faster on the toy tasks"))
    assert fidelity.problems(explained) == []


def test_a_reason_left_on_an_official_value_is_a_problem():
    module = made_up(Official("width", 256, "repo/nets.py", "we use a wider net"))
    (problem,) = fidelity.problems(module)
    assert "'width'" in problem and "official value" in problem


def test_described_settings_need_ours_exactly_when_they_depart():
    assert fidelity.problems(made_up(Official("observation normalization", "none", "r"))) == []
    no_ours = made_up(Official("observation normalization", "none", "r", "z-scores help"))
    no_reason = made_up(Official("observation normalization", "none", "r", ours="z-scores"))
    assert len(fidelity.problems(no_ours)) == len(fidelity.problems(no_reason)) == 1


def test_malformed_rows_are_problems():
    typo = made_up(Official("widht", 256, "r"))  # a field name misspelt
    twice = made_up(Official("lr", 1e-3, "r"), Official("lr", 1e-3, "r"))
    elsewhere = made_up(Official("lr", 1e-3, "r", task="walker2d-medium-v2"))
    budget = made_up(Official("training steps", 1_000_000, "r"))
    ours_on_field = made_up(Official("lr", 1e-3, "r", ours="0.001"))
    for module in (typo, twice, elsewhere, budget, ours_on_field):
        assert len(fidelity.problems(module)) == 1, module.FIDELITY


def test_values_computed_from_the_data_are_marked_not_compared():
    module = made_up(Official("scale", 1.0, "repo/train.py"), Official("width", 256, "r"))
    assert fidelity.problems(module) == []
    rows = {r.setting: r for r in fidelity.table_rows(module, "hopper-medium-v2")}
    assert rows["scale"].ours == fidelity.FROM_DATA and rows["width"].ours == "`256`"


def test_rows_for_one_task_stay_in_its_table():
    module = made_up(
        Official("lr", 1e-3, "r"), Official("width", 256, "r", task="hopper-medium-v2")
    )
    module.FIDELITY_TASKS = ("hopper-medium-v2", "walker2d-medium-v2")
    assert [r.setting for r in fidelity.rows_for(module, "walker2d-medium-v2")] == ["lr"]
    assert [r.setting for r in fidelity.rows_for(module, "hopper-medium-v2")] == ["lr", "width"]


def test_the_report_has_a_section_per_reported_algorithm_and_its_budget_rows():
    text = fidelity.render()
    for name in REPORTED:
        assert f"## {name}\n" in text
    missing = [n for n in algorithms.available() if n not in REPORTED]
    if missing:
        assert f"Not reported yet (no `FIDELITY`): {', '.join(missing)}." in text
    idql = text.split("## idql\n", 1)[1].split("\n## ", 1)[0]
    assert "| training steps | `1_000_000` (standard), `1_500_000` (paper) | `1_500_000` |" in idql
