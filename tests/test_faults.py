"""Faults (invariant 6 and issue 6): a role that dies or an env that raises is recovered by restarting
the rollout from the last barrier, with the same numbers as a run without the fault; a fault that
persists stops the run after --max-restarts with the role's traceback; a hang hits the watchdog with
every role's stack; NaN stops before the weights. Never a hang, an orphan or a /dev/shm leak."""

import json
import os
import signal
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import (
    assert_all_gone,
    assert_sigkill_recovered,
    finish_cli,
    learning_rows,
    shm_entries,
    start_cli,
    wait_for_pids,
)

from htsrl.cli import main
from htsrl.envs.debug import FaultyEnv

FAULTY = ["--env", "htsrl/Faulty-v0", "--num-envs", "4", "--alpha", "16", "--epochs", "1", "--minibatches", "1"]
SLOW = ["--env-kwargs", '{"fail_at": -1, "sleep_s": 0.002}']
LONG = ["--total-steps", str(4 * 16 * 60)]


def _finish(proc):
    return finish_cli(proc, timeout=60)


def _summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same run without any fault."""
    run_dir = tmp_path_factory.mktemp("ref")
    assert main(["train", *FAULTY, *SLOW, *LONG, "--run-dir", str(run_dir), "--no-progress"]) == 0
    return _summary(run_dir)


@pytest.mark.parametrize("mode", ["hts", "sync"])
def test_persistent_env_exception_stops_after_max_restarts(tmp_path, mode):
    before = shm_entries()
    proc = start_cli(
        [*FAULTY, *LONG, "--env-kwargs", '{"fail_at": 40}', "--mode", mode, "--max-restarts", "1"], tmp_path
    )
    code, _, err = _finish(proc)
    assert code == 1, err
    assert "restarting the rollout of window 2 from the last barrier (restart 1 of at most 1)" in err
    assert "executor" in err and "failed" in err and "gave up after 1 restarts" in err
    assert "RuntimeError: injected env fault at step 40" in err  # the child's traceback
    assert_all_gone(wait_for_pids(tmp_path).values())
    assert shm_entries() == before


def test_segfault_without_restarts(tmp_path):
    before = shm_entries()
    proc = start_cli(
        [*FAULTY, *LONG, "--env-kwargs", '{"fail_at": 40, "fault": "segfault"}', "--max-restarts", "0"], tmp_path
    )
    code, _, err = _finish(proc)
    assert code == 1
    assert "executor" in err and "SIGSEGV" in err and "gave up after 0 restarts" in err, err
    assert_all_gone(wait_for_pids(tmp_path).values())
    assert shm_entries() == before


def test_transient_env_exception_is_recovered_bitwise(tmp_path, reference):
    once = tmp_path / "fired"
    kwargs = json.dumps({"fail_at": 300, "sleep_s": 0.002, "once_file": str(once)})
    assert (
        main(["train", *FAULTY, *LONG, "--env-kwargs", kwargs, "--run-dir", str(tmp_path / "r"), "--no-progress"]) == 0
    )
    s = _summary(tmp_path / "r")
    assert once.exists() and s["restarts"] == 1
    assert s["params_sha256"] == reference["params_sha256"]
    assert s["rollout_sha256"] == reference["rollout_sha256"]


@pytest.mark.parametrize("victim", ["executor 1", "actor 0"])
def test_sigkill_of_a_role_is_recovered_bitwise(tmp_path, victim, reference):
    assert_sigkill_recovered([*FAULTY, *SLOW, *LONG], tmp_path, victim, reference)


def test_sigkill_of_main_then_resume(tmp_path, reference):
    before = shm_entries()
    proc = start_cli([*FAULTY, *SLOW, *LONG, "--checkpoint-every", "5"], tmp_path)
    pids = wait_for_pids(tmp_path)
    time.sleep(2.0)
    os.kill(pids["main"], signal.SIGKILL)
    proc.communicate(timeout=10)
    assert_all_gone(pids.values())  # children die with the parent
    assert shm_entries() == before
    assert main(["train", "--resume", str(tmp_path), "--no-progress"]) == 0
    s = _summary(tmp_path)
    assert s["params_sha256"] == reference["params_sha256"] and s["rollout_sha256"] == reference["rollout_sha256"]
    # the rows the killed run wrote after its checkpoint were written again, once
    assert learning_rows(tmp_path) == learning_rows(Path(reference["run_dir"]))


def test_hung_env_hits_watchdog_with_stacks(tmp_path):
    proc = start_cli(
        [*FAULTY, *LONG, "--env-kwargs", '{"fail_at": 40, "fault": "hang"}', "--watchdog-s", "3"], tmp_path
    )
    t0 = time.monotonic()
    code, _, err = _finish(proc)
    assert code == 1 and "no progress for 3s" in err, err
    assert "executor 0: File" in err and "debug.py" in err  # where the hung role was
    assert time.monotonic() - t0 < 30
    assert (tmp_path / "stacks" / "stack-executor0.txt").read_text().count("File") > 3
    assert_all_gone(wait_for_pids(tmp_path).values())


def test_nan_reward_stops_before_the_weights(tmp_path):
    proc = start_cli(
        [*FAULTY, *LONG, "--env-kwargs", '{"fail_at": 300, "fault": "nan_reward"}', "--checkpoint-every", "2"], tmp_path
    )
    code, _, err = _finish(proc)
    assert code == 1
    # env step 300 falls in window 18 (16 steps per window): its update is refused
    assert "update 18: the reward of env 0 at step 11 of its window is nan" in err, err
    assert "the last good checkpoint" in err
    import torch

    from htsrl.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path)
    assert ckpt["learner"]["updates"] == 18
    assert all(torch.isfinite(v).all() for v in ckpt["learner"]["model"].values())
    assert_all_gone(wait_for_pids(tmp_path).values())


def test_ctrl_c(tmp_path):
    before = shm_entries()
    proc = start_cli([*FAULTY, *SLOW, *LONG], tmp_path)
    pids = wait_for_pids(tmp_path)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to the whole foreground group
    code, _, err = _finish(proc)
    assert code == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err  # children ignore SIGINT; the parent stops them
    assert_all_gone(pids.values())
    assert shm_entries() == before


def test_second_ctrl_c_before_the_first_checkpoint_says_nothing_can_be_resumed(tmp_path):
    """An env hangs at its first step, so the first window and the first Ctrl-C's barrier never come; the
    second Ctrl-C stops at once and says that no checkpoint exists (none to look for and resume)."""
    hang = ["--env-kwargs", '{"fail_at": 1, "fault": "hang"}', "--watchdog-s", "120"]
    proc = start_cli([*FAULTY, *LONG, *hang], tmp_path)
    pids = wait_for_pids(tmp_path)
    os.kill(pids["main"], signal.SIGINT)
    assert "stopping at the next barrier" in proc.stderr.readline() + proc.stderr.readline()
    os.kill(pids["main"], signal.SIGINT)
    code, _, err = finish_cli(proc)
    assert code == 130, err
    assert "no checkpoint was saved yet, so nothing can be resumed" in err, err
    assert not (tmp_path / "checkpoint.pt").exists()
    assert_all_gone(pids.values())


def test_failed_fork_stops_the_roles_already_started(tmp_path, monkeypatch):
    """A fork that fails midway (EAGAIN at a process limit) leaves no role of the started ones behind."""
    import multiprocessing.context

    from htsrl import Config, train

    real_start, started = multiprocessing.context.ForkProcess.start, []

    def start(self):
        if len(started) == 2:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        real_start(self)
        started.append(self.pid)

    monkeypatch.setattr(multiprocessing.context.ForkProcess, "start", start)
    with pytest.raises(BlockingIOError):
        train(
            Config(
                env="CartPole-v1",
                num_envs=4,
                alpha=8,
                total_steps=64,
                num_executors=2,
                num_actors=2,
                progress=False,
                run_dir=str(tmp_path / "run"),
            )
        )
    assert len(started) == 2
    assert_all_gone(started)


class _NotReplayable(FaultyEnv):
    """A Faulty env whose observation also depends on something outside its seed: whether its
    ``once_file`` exists. Once the transient fault has fired, no replay can retrace the history."""

    def _obs(self):
        obs = super()._obs()
        obs[0] += float(bool(self.once_file) and os.path.exists(self.once_file))
        return obs


NOT_REPLAYABLE = "htsrl-test/NotReplayable-v0"  # registered here: forked roles inherit the registry
if NOT_REPLAYABLE not in gym.registry:
    gym.register(NOT_REPLAYABLE, entry_point=_NotReplayable, disable_env_checker=True)


def test_replay_mismatch_is_a_role_failure_that_no_restart_can_fix(tmp_path):
    """The rollout layer alone: executors asked to rebuild their envs from a history that does not lead
    to the buffer's observations report a ReplayMismatch, not retryable."""
    from htsrl.config import Config, resolve
    from htsrl.engine.history import EnvHistory
    from htsrl.engine.rollout import ParallelRollout
    from htsrl.engine.shm import RolloutBuffers
    from htsrl.errors import RoleFailed
    from htsrl.nn import build_model, flat_size

    cfg = resolve(
        Config(
            env="htsrl/Counter-v0",
            num_envs=4,
            alpha=4,
            num_executors=2,
            num_actors=1,
            progress=False,
            run_dir=str(tmp_path),
        )
    )
    bufs = RolloutBuffers(4, 4, (3,), np.float32, flat_size(build_model((3,), 3)), 4)
    history = EnvHistory(4)
    history.actions = [[0, 1, 2, 0] for _ in range(4)]
    history.dones = [[False] * 4 for _ in range(4)]
    # The buffer's last observations of window 0 are left zero: not where these actions lead.
    rollout = ParallelRollout(cfg, (3,), 3, bufs)
    try:
        with pytest.raises(RoleFailed) as failed:
            rollout.start(history, last_window=0)
        pids = dict(rollout.pids)
    finally:
        rollout.close()
    assert failed.value.retryable is False
    assert "executor" in str(failed.value) and "ReplayMismatch" in str(failed.value)
    assert "did not return to its recorded state on replay" in str(failed.value)
    assert_all_gone(pids.values())


def test_env_exception_is_retryable(tmp_path):
    """The same layer: an env that raises is a failure a restart may fix."""
    from htsrl.config import Config, resolve
    from htsrl.engine.rollout import ParallelRollout
    from htsrl.engine.shm import RolloutBuffers
    from htsrl.errors import RoleFailed
    from htsrl.nn import build_model, flat_size

    cfg = resolve(
        Config(
            env="htsrl/Faulty-v0",
            env_kwargs={"fail_at": 3},
            num_envs=2,
            alpha=4,
            num_executors=1,
            num_actors=1,
            progress=False,
            run_dir=str(tmp_path),
        )
    )
    bufs = RolloutBuffers(2, 4, (3,), np.float32, flat_size(build_model((3,), 2)), 3)
    rollout = ParallelRollout(cfg, (3,), 2, bufs)
    try:
        rollout.start()
        rollout.begin(0)
        with pytest.raises(RoleFailed) as failed:
            rollout.finish(0)
    finally:
        rollout.close()
    assert failed.value.retryable is True
    assert "RuntimeError: injected env fault at step 3" in str(failed.value)


def test_replay_mismatch_is_not_retried(tmp_path, capsys):
    """A transient fault restarts the rollout; the replay of the restart cannot retrace the envs (they are
    not deterministic given their seeds), so the run stops at once, naming the mismatch, instead of
    replaying every env --max-restarts times."""
    before = shm_entries()
    kwargs = json.dumps({"fail_at": 40, "once_file": str(tmp_path / "fired")})
    code = main(
        [
            "train",
            *FAULTY,
            "--env",
            NOT_REPLAYABLE,
            *LONG,
            "--env-kwargs",
            kwargs,
            "--max-restarts",
            "3",
            "--run-dir",
            str(tmp_path / "r"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.count("restarting the rollout") == 1, err  # the transient fault's restart only
    assert "(restart 1 of at most 3)" in err and "restart 2 of" not in err, err
    assert "ReplayMismatch" in err and "did not return to its recorded state on replay" in err, err
    pids = json.loads((tmp_path / "r" / "pids.json").read_text())
    assert_all_gone(pid for role, pid in pids.items() if role != "main")  # main: this test's process
    assert shm_entries() == before


def test_error_channel_puts_a_final_report_first():
    """Several roles failing at once: the report that no restart can fix wins, and makes the whole
    failure final; the others are counted."""
    from htsrl.engine.channels import ErrorChannel

    ch = ErrorChannel()
    try:
        ch.report("executor 0 failed:\nRuntimeError: flaky")
        ch.report("executor 1 failed:\nReplayMismatch: env 3", retryable=False)
        text, retryable = ch.read()
        assert not retryable and text.startswith("executor 1 failed") and "(1 more role(s)" in text
        ch.report("actor 0 failed: " + "x" * 10_000)  # cut to one atomic pipe write, flag kept
        text, retryable = ch.read()
        assert retryable and text.startswith("...") and len(text) <= ErrorChannel.LIMIT
    finally:
        ch.close()


def test_a_suspended_run_is_not_called_hung(tmp_path):
    """Ctrl-Z (SIGTSTP/SIGSTOP to the process group) for longer than the watchdog, then fg (SIGCONT): the
    wall clock ran, the roles did not, so the run goes on and finishes."""
    # windows of about 1 s (16 steps of 60 ms): the main process is almost always inside a watchdog wait
    slow = ["--env-kwargs", '{"fail_at": -1, "sleep_s": 0.06}', "--total-steps", str(4 * 16 * 8)]
    proc = start_cli([*FAULTY, *slow, "--watchdog-s", "3"], tmp_path)
    wait_for_pids(tmp_path)
    time.sleep(2.5)
    os.killpg(proc.pid, signal.SIGSTOP)
    time.sleep(6.0)
    os.killpg(proc.pid, signal.SIGCONT)
    code, _, err = _finish(proc)
    assert code == 0, err
    assert _summary(tmp_path)["finished"]
