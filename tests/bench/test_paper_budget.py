"""``budget=paper``: each algorithm's published training length and evaluation, filled in per task
from its ``PAPER_BUDGET``, recorded under the budget's name and never mixed with other budgets."""

from pathlib import Path

import pytest
from test_leaderboard import read_csv, write_record

import algorithms
from algorithms import diffusion_ql, iql
from algorithms.common.contract import TaskInfo
from algorithms.common.defaults import BUDGET_KEYS, paper_budget
from bench import leaderboard
from bench.checks import ConfigError
from bench.run import apply_paper_budget, run_overrides
from bench.sweep import compose, run_config
from tasks.registry import get_task

POLICIES = ("bc", "iql", "td3bc", "idql", "diffusion_ql")


def composed(*overrides: str) -> tuple[dict, str, str]:
    """The plain run config ``bench.run`` would get for ``overrides``, its algo and budget."""
    from omegaconf import OmegaConf

    cfg, algo, budget = run_config(compose(list(overrides)))
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("algo")
    return plain, algo, budget


@pytest.mark.parametrize("name", POLICIES)
def test_every_policy_algorithm_publishes_its_budget(name):
    budget = algorithms.load(name).PAPER_BUDGET
    values = paper_budget(budget, get_task("hopper-medium-v2"))
    assert set(values) == set(BUDGET_KEYS) and all(v > 0 for v in values.values())
    assert budget.sources(get_task("hopper-medium-v2"))


@pytest.mark.parametrize(
    ("algo", "steps", "every", "episodes"),
    [
        ("idql", 1_500_000, 250_000, 50),  # philippe-eecs/IDQL@9cc91a6 launcher
        ("diffusion_ql", 2_000_000, 50_000, 10),  # num_epochs=2000 x 1000, eval every 50 epochs
        ("iql", 1_000_000, 5000, 10),  # train_offline.py flags
        ("td3bc", 1_000_000, 5000, 10),  # main.py flags
        ("bc", 1_000_000, 5000, 10),  # CORL's BC configs
    ],
)
def test_paper_budget_fills_the_run_from_the_algorithm(algo, steps, every, episodes):
    cfg, algo_name, budget = composed(f"algo={algo}", "task=hopper-medium-v2", "budget=paper")
    assert budget == "paper" and cfg["train"]["steps"] is None  # open until the algorithm fills it
    filled = apply_paper_budget(cfg, algo_name, budget)
    assert filled["train"]["steps"] == steps and filled["train"]["eval_every"] == every
    assert filled["eval"]["episodes"] == filled["eval"]["periodic_episodes"] == episodes
    assert filled["data"]["scale"] == 1.0
    assert cfg["train"]["steps"] is None, "the input config is left as it was"


@pytest.mark.parametrize(
    ("algo", "task", "steps", "episodes"),
    [
        ("diffuser", "hopper-medium-v2", 1_000_000, 150),  # slurm/plan.sh: 3 x 50 trials
        ("decision_diffuser", "hopper-medium-v2", 1_000_000, 10),  # num_eval 10
        ("safediffuser", "ceiling-hopper-medium-v2", 1_000_000, 10),  # range(10)
        ("trebi", "velocity-hopper-medium-v2", 1_000_000, 20),  # test_cost.sh
        ("trebi", "safe-pendulum", 200_000, 40),  # toy_safe_env.py, test_cost_toyenv.sh
    ],
)
def test_planners_evaluate_their_final_checkpoint_on_the_published_episodes(
    algo, task, steps, episodes
):
    cfg, algo_name, budget = composed(f"algo={algo}", f"task={task}", "budget=paper")
    filled = apply_paper_budget(cfg, algo_name, budget)
    assert filled["train"]["steps"] == filled["train"]["eval_every"] == steps
    assert filled["eval"]["episodes"] == episodes


@pytest.mark.parametrize("algo", ["diffuser", "safediffuser"])
def test_a_task_whose_episode_count_is_unpublished_is_refused(algo):
    """The maze planners' official scripts run one episode per call: no count to follow."""
    cfg, algo_name, budget = composed(f"algo={algo}", "task=maze2d-umaze-v1", "budget=paper")
    with pytest.raises(ConfigError, match=r"budget=paper: .* no published eval_episodes"):
        apply_paper_budget(cfg, algo_name, budget)


def test_paper_budget_is_per_task_where_the_paper_is():
    """Diffusion-QL's antmaze rows train 1000 epochs and evaluate on 100 episodes (-v0 data);
    IQL's antmaze runs evaluate 100 episodes every 100k steps (its README)."""
    ant = TaskInfo("antmaze-large-play-v2", "maze", 29, 8)
    assert paper_budget(diffusion_ql.PAPER_BUDGET, ant) == {
        "train_steps": 1_000_000,
        "eval_every": 50_000,
        "eval_episodes": 100,
    }
    kitchen = TaskInfo("kitchen-complete-v0", "locomotion", 60, 9)
    assert paper_budget(diffusion_ql.PAPER_BUDGET, kitchen)["train_steps"] == 250_000
    assert paper_budget(iql.PAPER_BUDGET, ant)["eval_every"] == 100_000


def test_knobs_set_on_the_command_line_win_and_other_budgets_are_untouched():
    cfg, algo, budget = composed("algo=idql", "task=hopper-medium-v2", "budget=paper")
    cfg["train"]["steps"] = 5000
    filled = apply_paper_budget(cfg, algo, budget)
    assert filled["train"]["steps"] == 5000 and filled["train"]["eval_every"] == 250_000
    standard, algo, budget = composed("algo=idql", "task=hopper-medium-v2", "budget=standard")
    assert apply_paper_budget(standard, algo, budget) == standard


def test_an_algorithm_without_a_published_budget_is_refused(monkeypatch):
    cfg, _, _ = composed("algo=bc", "task=hopper-medium-v2", "budget=paper")
    monkeypatch.delattr(algorithms.load("bc"), "PAPER_BUDGET")
    with pytest.raises(ConfigError, match=r"budget=paper.*PAPER_BUDGET"):
        apply_paper_budget(cfg, "bc", "paper")


def test_a_paper_run_is_recorded_under_its_budget_and_the_published_evaluation(tmp_path):
    """A short paper-budget run on the bandit: the record names ``paper``, the steps it trained
    and the published evaluation (BC: 10 episodes, CORL's)."""
    rec = run_overrides(
        [
            "algo=bc",
            "task=toy-bandit",
            "budget=paper",
            "train.steps=200",
            "train.eval_every=100",
            "data.scale=0.2",
            f"results_dir={tmp_path}",
        ]
    )
    assert rec["status"] == "completed"
    assert rec["budget"]["name"] == "paper" and rec["budget"]["train_steps"] == 200
    assert rec["budget"]["eval_episodes"] == 10 and rec["final"]["episodes"] == 10
    assert [p["step"] for p in rec["curve"]] == [100]
    assert rec["config"]["eval"]["periodic_episodes"] == 10


def test_the_leaderboard_keeps_paper_runs_apart_from_standard_ones(tmp_path):
    """Same task, algorithm and steps: the budget's name alone keeps the rows apart."""
    results = tmp_path / "results"
    for seed, score in enumerate([10.0, 20.0]):
        write_record(results, "hopper-medium-v2", "iql", seed, score, budget="standard")
        write_record(
            results, "hopper-medium-v2", "iql", seed, score + 50, budget="paper", hash="p1"
        )
    out: Path = tmp_path / "reports"
    leaderboard.build(results, out, plots=False)
    rows = read_csv(out / "final_scores.csv")
    cells = {r["budget"]: r["iql"] for r in rows}
    assert cells == {
        "paper (1000000 steps)": "65.0 ± 7.1 (n=2)",
        "standard (1000000 steps)": "15.0 ± 7.1 (n=2)",
    }
