"""Async mode (issue 15): executors go from window to window without a barrier, actors act with the
newest weights, the learner takes each window when it is complete. It cannot be layout-deterministic
(which weights an action sees depends on timing), so these tests check what does hold: the lag
statistics, learning, no spin, faults, Ctrl-C and resume, bad input."""

import os
import signal
import time

import pytest
from conftest import assert_all_gone, finish_cli, shm_entries, start_cli, wait_for_pids

from htsrl.cli import main

FAULTY = ["--env", "htsrl/Faulty-v0", "--num-envs", "4", "--alpha", "16", "--epochs", "1", "--minibatches", "1"]
SLOW = ["--env-kwargs", '{"fail_at": -1, "sleep_s": 0.002}']
LONG = ["--total-steps", str(4 * 16 * 60)]
ASYNC = ["--mode", "async"]


def _finish(proc):
    return finish_cli(proc, timeout=90)


def _slow_learner(seconds):
    """A window hook (called in the main process before each update): the learner falls behind."""

    def hook(window, bufs, buf):
        time.sleep(seconds)

    return hook


# a small async PPO run on the counting env; each test sets its slots, layout and learner delay
COUNTER_ASYNC = dict(
    env="htsrl/Counter-v0", preset="classic-ppo", num_envs=4, alpha=8, epochs=1, minibatches=1, mode="async"
)


def test_executors_run_ahead_of_a_slow_learner(run):
    """With 4 slots and a learner slower than the rollout, windows are collected up to 3 ahead, so
    their actions are up to 3 updates old; the summary says the run is not layout-deterministic."""
    s = run(
        **COUNTER_ASYNC,
        total_steps=4 * 8 * 16,
        async_slots=4,
        num_executors=2,
        num_actors=1,
        on_window=_slow_learner(0.1),
    )
    assert s["finished"] and s["updates"] == 16 and s["env_steps"] == 4 * 8 * 16
    assert s["deterministic"] is False
    lag = s["policy_lag"]
    assert lag["max"] >= 2 and lag["mean"] > 1, lag
    assert lag["max"] <= 3  # never more than the slots ahead allow
    assert sum(lag["histogram"].values()) == 4 * 8 * 16


def test_two_slots_bound_the_lag(run):
    """With 2 slots a window is collected while the one before it is learned: lag at most 2."""
    s = run(
        **COUNTER_ASYNC,
        total_steps=4 * 8 * 12,
        num_executors=1,
        num_actors=2,
        on_window=_slow_learner(0.05),
    )
    assert s["finished"] and s["policy_lag"]["max"] <= 2


def test_blocked_roles_burn_no_cpu(run):
    """Invariant 4 in async mode: executors and actors that wait for envs or for a free slot block."""
    s = run(
        env="htsrl/Counter-v0",
        env_kwargs={"sleep_s": 0.02},
        preset="classic-ppo",
        num_envs=2,
        alpha=20,
        total_steps=2 * 20 * 6,
        mode="async",
        num_executors=1,
        num_actors=2,
        epochs=1,
        minibatches=1,
    )
    wall, split = s["wall_time_s"], s["time_split"]
    assert wall > 2.0
    assert split["actors"]["cpu_s"] / 2 < 0.05 * wall, split
    assert split["executors"]["cpu_s"] < 0.05 * wall + 0.5, split
    assert split["learner"]["cpu_s"] - split["learner"]["learn_s"] < 0.05 * wall + 0.5, split


def test_sigkill_of_an_executor_is_recovered(tmp_path):
    before = shm_entries()
    proc = start_cli([*FAULTY, *SLOW, *LONG, *ASYNC, "--async-slots", "3", "--num-executors", "2"], tmp_path)
    pids = wait_for_pids(tmp_path)
    time.sleep(1.0)
    os.kill(pids["executor 1"], signal.SIGKILL)
    code, _, err = _finish(proc)
    assert code == 0, err
    assert f"executor 1 (pid {pids['executor 1']}) died unexpectedly (killed by SIGKILL); restarting" in err
    import json

    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["restarts"] == 1 and s["finished"] and s["env_steps"] == 4 * 16 * 60
    assert_all_gone([*pids.values(), *wait_for_pids(tmp_path).values()])
    assert shm_entries() == before


def test_persistent_env_exception_is_named(tmp_path):
    proc = start_cli([*FAULTY, *LONG, *ASYNC, "--env-kwargs", '{"fail_at": 40}', "--max-restarts", "1"], tmp_path)
    code, _, err = _finish(proc)
    assert code == 1, err
    assert "gave up after 1 restarts" in err and "RuntimeError: injected env fault at step 40" in err
    assert_all_gone(wait_for_pids(tmp_path).values())


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path):
    """Ctrl-C drains the windows in flight (each is learned), saves, exits 130; --resume goes on to the
    end (not bitwise: async never is)."""
    before = shm_entries()
    proc = start_cli([*FAULTY, *SLOW, *LONG, *ASYNC, "--async-slots", "3"], tmp_path)
    pids = wait_for_pids(tmp_path)
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGINT)
    code, _, err = _finish(proc)
    assert code == 130, err
    assert "checkpoint saved" in err and "Traceback" not in err
    assert_all_gone(pids.values())
    assert shm_entries() == before
    assert main(["train", "--resume", str(tmp_path), "--no-progress"]) == 0
    import json

    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["finished"] and s["env_steps"] == 4 * 16 * 60 and s["updates"] == 60
    assert s["resumed_at_steps"] > 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--serial"], "--mode async runs the roles in processes"),
        (["--async-slots", "1"], "--async-slots must be at least 2"),
    ],
)
def test_bad_input_is_refused_before_start(tmp_path, capsys, args, message):
    code = main(["train", "--env", "CartPole-v1", *ASYNC, *args, "--run-dir", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # nothing started


def test_async_impala_solves_cartpole(run, tmp_path):
    """Learning, not just running (issue 15): V-trace in async mode reaches a mean return of 475 on
    CartPole-v1. Async runs differ run to run; two trials reached 475 after 136k and 157k steps, so the
    budget is 250k. The flags as in test_learning.py: classic-a2c with a larger learning rate."""
    import csv

    s = run(
        env="CartPole-v1",
        algo="impala",
        mode="async",
        total_steps=250_000,
        lr=1e-3,
        num_executors=1,
        run_dir=str(tmp_path / "impala"),
    )
    with open(tmp_path / "impala" / "progress.csv") as f:
        curve = [float(r["charts/mean_return_last_100"]) for r in csv.DictReader(f) if r["charts/mean_return_last_100"]]
    assert s["finished"] and s["policy_lag"]["max"] >= 1
    assert max(curve) >= 475, f"best mean return over 100 episodes: {max(curve):.1f}"
