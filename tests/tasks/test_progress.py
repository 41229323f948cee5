"""Progress in logs: plain lines at a steady interval, nothing when disabled."""

import time

from tasks.progress import progress


def test_without_a_terminal_progress_prints_whole_lines(capsys):
    with progress(total=4, desc="forge demo", unit="step", interval=0.05) as bar:
        for _ in range(4):
            time.sleep(0.06)
            bar.update()
    err = capsys.readouterr().err
    lines = [line for line in err.split("\n") if line]
    assert "\r" not in err and len(lines) >= 2
    assert lines[-1].startswith("forge demo") and "4/4" in lines[-1]


def test_disabled_progress_prints_nothing(capsys):
    with progress(total=3, desc="quiet", enabled=False) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""
