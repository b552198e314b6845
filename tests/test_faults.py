"""Invariant 6: a failing env or process stops the run within seconds, names the role, shows the
child's traceback, and leaves no process and no /dev/shm segment behind; Ctrl-C likewise."""

import os
import signal
import time

import pytest

from conftest import assert_all_gone, kill_group, shm_entries, start_cli, wait_for_pids

FAULTY = ["--env", "htsrl/Faulty-v0", "--num-envs", "4", "--alpha", "16", "--total-steps", "100000",
          "--epochs", "1", "--minibatches", "1"]


def _finish(proc, timeout=30):
    try:
        out, err = proc.communicate(timeout=timeout)
    except Exception:
        kill_group(proc)
        raise AssertionError("run did not stop (hang)")
    return proc.returncode, out, err


@pytest.mark.parametrize("mode", ["hts", "sync"])
def test_env_raises_in_step(tmp_path, mode):
    before = shm_entries()
    proc = start_cli([*FAULTY, "--env-kwargs", '{"fail_at": 40}', "--mode", mode], tmp_path)
    code, _, err = _finish(proc)
    assert code == 1, err
    assert "executor" in err and "failed" in err
    assert "RuntimeError: injected env fault at step 40" in err  # the child's traceback
    assert err.count("Traceback") == 1  # one report, not a cascade
    assert_all_gone(wait_for_pids(tmp_path).values())
    assert shm_entries() == before


def test_env_segfault(tmp_path):
    before = shm_entries()
    proc = start_cli([*FAULTY, "--env-kwargs", '{"fail_at": 40, "fault": "segfault"}'], tmp_path)
    code, _, err = _finish(proc)
    assert code == 1
    assert "executor" in err and "SIGSEGV" in err, err
    assert_all_gone(wait_for_pids(tmp_path).values())
    assert shm_entries() == before


def test_hung_env_hits_watchdog(tmp_path):
    proc = start_cli([*FAULTY, "--env-kwargs", '{"fail_at": 40, "fault": "hang"}', "--watchdog-s", "3"], tmp_path)
    t0 = time.monotonic()
    code, _, err = _finish(proc)
    assert code == 1 and "no progress for 3s" in err, err
    assert time.monotonic() - t0 < 25
    assert_all_gone(wait_for_pids(tmp_path).values())


@pytest.mark.parametrize("victim", ["executor 1", "actor 0"])
def test_sigkill_of_a_role(tmp_path, victim):
    before = shm_entries()
    proc = start_cli([*FAULTY, "--env-kwargs", '{"fail_at": -1, "sleep_s": 0.002}'], tmp_path)
    pids = wait_for_pids(tmp_path)
    time.sleep(1.0)
    os.kill(pids[victim], signal.SIGKILL)
    t0 = time.monotonic()
    code, _, err = _finish(proc)
    assert time.monotonic() - t0 < 10
    assert code == 1
    assert f"{victim} (pid {pids[victim]}) died unexpectedly (killed by SIGKILL)" in err, err
    assert_all_gone(pids.values())
    assert shm_entries() == before


def test_sigkill_of_main_takes_children_down(tmp_path):
    proc = start_cli([*FAULTY, "--env-kwargs", '{"fail_at": -1, "sleep_s": 0.002}'], tmp_path)
    pids = wait_for_pids(tmp_path)
    time.sleep(0.5)
    os.kill(pids["main"], signal.SIGKILL)
    proc.communicate(timeout=10)
    assert_all_gone(pids.values())


def test_ctrl_c(tmp_path):
    before = shm_entries()
    proc = start_cli([*FAULTY, "--env-kwargs", '{"fail_at": -1, "sleep_s": 0.002}'], tmp_path)
    pids = wait_for_pids(tmp_path)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to the whole foreground group
    code, _, err = _finish(proc)
    assert code == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err  # children ignore SIGINT; the parent stops them
    assert_all_gone(pids.values())
    assert shm_entries() == before
