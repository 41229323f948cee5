"""Core claims: runs on one machine share its cores instead of oversubscribing them."""

import os
import subprocess
import sys
import threading
import time

import pytest

from bench.threads import CoreClaim, allowed_cores, claim_cores

CORES = os.cpu_count() or 1


@pytest.fixture(autouse=True)
def own_slots(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRL_CORE_SLOTS", str(tmp_path / "slots"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)


def test_allowed_cores_follow_omp_and_slurm(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert allowed_cores() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert allowed_cores() == 1


@pytest.mark.skipif(CORES < 2, reason="needs two cores")
def test_auto_takes_what_is_free_and_a_fixed_claim_waits_for_all_it_wants():
    first = claim_cores("auto")
    assert first.threads == CORES
    first.release()
    one = claim_cores(1)
    second = claim_cores("auto")
    assert second.threads == CORES - 1
    second.release()
    assert CoreClaim.attempt(CORES, at_least=CORES) is None  # all or nothing
    assert CoreClaim.attempt(CORES, at_least=1).threads == CORES - 1
    one.release()


@pytest.mark.skipif(CORES < 2, reason="needs two cores")
def test_a_claim_waits_while_the_cores_are_held_and_a_killed_holder_frees_them():
    code = (
        "from bench.threads import claim_cores; import time; "
        f"c = claim_cores({CORES}); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    threading.Timer(1.0, holder.kill).start()  # kill -9: its locks go with it
    messages = []
    start = time.time()
    claim = claim_cores("auto", log=messages.append)
    assert time.time() - start >= 1.0 and messages == ["waiting for a free core"]
    assert claim.threads == CORES
    claim.release()
    holder.wait()
