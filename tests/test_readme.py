"""The README's quickstart stays true: CI runs its test command verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands() -> list[str]:
    section = (ROOT / "README.md").read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_quickstart_is_two_commands_and_ci_runs_the_test_one():
    install_and_run, install_and_test = quickstart_commands()
    assert install_and_run.endswith("python -m bench.run")
    assert "torch==2.13.0" in install_and_run and "torch==2.13.0" in install_and_test
    assert install_and_test in (ROOT / ".ci" / "run").read_text()


def test_every_grid_is_named_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    grids = sorted(p.stem for p in (ROOT / "bench" / "conf" / "grid").glob("*.yaml"))
    assert grids
    missing = [g for g in grids if f"`{g}`" not in readme and f"grid={g} " not in readme]
    assert missing == []
