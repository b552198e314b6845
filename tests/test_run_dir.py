"""A run's folder: a new run never replaces a run by accident (``--overwrite`` to mean it), one trainer at a
time (a lock the kernel drops even on SIGKILL), and a finished run trained longer with ``--resume DIR
--total-steps M`` equals, bitwise, a run trained for M from the start."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import (
    SUMMARY_NUMBERS,
    assert_all_gone,
    assert_same_state,
    finish_cli,
    kill_group,
    learning_rows,
    start_cli,
    wait_for_pids,
)

from htsrl import Config, train
from htsrl.checkpoint import load_checkpoint, save_checkpoint
from htsrl.cli import main
from htsrl.errors import ConfigError
from htsrl.run_dir import RUN_MARKERS

ENVS, ALPHA = 4, 16
WINDOW = ENVS * ALPHA  # steps per window
TINY = ["--env", "CartPole-v1", "--num-envs", str(ENVS), "--alpha", str(ALPHA), "--no-progress"]
# Slow enough (sleeping envs: no CPU) that a run is still going while a test acts on it.
SLOW = [
    "--env",
    "synthetic/constant",
    "--env-kwargs",
    '{"mean_s": 0.003}',
    "--num-envs",
    str(ENVS),
    "--alpha",
    str(ALPHA),
    "--epochs",
    "1",
    "--minibatches",
    "1",
    "--no-lr-decay",
    "--seed",
    "4",
]


def _train(*args) -> int:
    return main(["train", *map(str, args)])


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file under ``run_dir`` and its bytes, but the lock file (which holds the last trainer's pid)."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("htsrl: error:"), err
    return err


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _assert_same_run(got: Path, want: Path) -> None:
    """The two finished runs are bitwise the same: summary numbers, progress.csv learning columns, final state."""
    a, b = _summary(got), _summary(want)
    assert {k: a[k] for k in SUMMARY_NUMBERS} == {k: b[k] for k in SUMMARY_NUMBERS}
    assert learning_rows(got) == learning_rows(want)
    assert_same_state(load_checkpoint(got), load_checkpoint(want), "final checkpoint")


def _updates_column(run_dir: Path) -> list[int]:
    return [int(r["updates"]) for r in learning_rows(run_dir)]


# -- a new run never replaces a run by accident


def test_new_run_refuses_a_folder_that_holds_a_run(tmp_path, capsys):
    """Rerunning a job script without --resume must not clobber the run it wrote: refused with exit 2 and one
    line naming the folder and both ways out, and not one byte of the run changes."""
    run_dir = tmp_path / "run"
    assert _train(*TINY, "--total-steps", 2 * WINDOW, "--run-dir", run_dir) == 0
    before = _snapshot(run_dir)
    capsys.readouterr()
    assert _train(*TINY, "--total-steps", 3 * WINDOW, "--seed", 5, "--run-dir", run_dir) == 2
    err = _one_line(capsys)
    assert f"{run_dir} already holds a run" in err, err
    assert f"htsrl train --resume {run_dir}" in err and "--overwrite" in err, err
    assert _snapshot(run_dir) == before
    with pytest.raises(ConfigError, match="already holds a run"):  # the library refuses too
        train(Config(env="CartPole-v1", num_envs=ENVS, alpha=ALPHA, progress=False, run_dir=str(run_dir)))
    assert _snapshot(run_dir) == before


@pytest.mark.parametrize("marker", RUN_MARKERS)
def test_any_file_of_a_run_marks_the_folder_as_taken(tmp_path, capsys, marker):
    """A folder with only part of a run (a run killed early, a copied progress.csv) still counts as a run."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / marker).write_bytes(b"the user's bytes")
    assert _train(*TINY, "--total-steps", WINDOW, "--run-dir", run_dir) == 2
    err = _one_line(capsys)
    assert f"already holds a run ({marker})" in err, err
    assert _snapshot(run_dir) == {marker: b"the user's bytes"}


@pytest.mark.parametrize(("marker", "what"), [("group.json", "a seed group"), ("sweep.json", "a sweep")])
def test_a_seed_group_or_sweep_folder_is_not_a_run_folder(tmp_path, capsys, marker, what):
    """A run started in a group's or a sweep's folder would mix its files with theirs: refused, nothing written."""
    folder = tmp_path / "many"
    folder.mkdir()
    (folder / marker).write_text("{}")
    assert _train(*TINY, "--total-steps", WINDOW, "--run-dir", folder, "--overwrite") == 2
    assert f"holds {what}; give the run another --run-dir" in _one_line(capsys)
    assert _snapshot(folder) == {marker: b"{}"}


def test_a_folder_with_only_other_files_is_not_a_run(tmp_path):
    """A folder the user made (notes, a job script) may receive a new run; those files stay."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "job.sh").write_text("htsrl train ...\n")
    assert _train(*TINY, "--total-steps", WINDOW, "--run-dir", run_dir) == 0
    assert (run_dir / "job.sh").read_text() == "htsrl train ...\n" and _summary(run_dir)["finished"]


def test_overwrite_replaces_the_run_and_keeps_other_files(tmp_path):
    """--overwrite: the old run's files are gone (no stale progress rows, TensorBoard events, checkpoint or
    half-written checkpoint), the new run is the same as one in an empty folder, and the user's files stay."""
    run_dir, fresh = tmp_path / "run", tmp_path / "fresh"
    assert _train(*TINY, "--total-steps", 3 * WINDOW, "--seed", 1, "--run-dir", run_dir) == 0
    (run_dir / "notes.txt").write_text("lr sweep, take 2\n")
    (run_dir / "mine").mkdir()
    (run_dir / "mine" / "data.txt").write_text("keep me\n")
    (run_dir / "checkpoint.pt.tmp1234").write_bytes(b"half written")
    (run_dir / "tb" / "old-events").write_bytes(b"old")
    (run_dir / "stacks").mkdir(exist_ok=True)  # a healthy run leaves none: as after a hang
    (run_dir / "stacks" / "old-stack.txt").write_bytes(b"old")
    new = ["--total-steps", 2 * WINDOW, "--seed", 2, "--overwrite"]
    assert _train(*TINY, *new, "--run-dir", run_dir) == 0
    assert _train(*TINY, *new, "--run-dir", fresh) == 0  # --overwrite of an empty folder: a plain new run
    _assert_same_run(run_dir, fresh)
    assert _updates_column(run_dir) == [1, 2]
    a, b = (json.loads((d / "config.json").read_text()) for d in (run_dir, fresh))
    assert {**a, "run_dir": None} == {**b, "run_dir": None} and a["seed"] == 2 and a["total_steps"] == 2 * WINDOW
    assert (run_dir / "notes.txt").read_text() == "lr sweep, take 2\n"
    assert (run_dir / "mine" / "data.txt").read_text() == "keep me\n"
    for stale in ("checkpoint.pt.tmp1234", "tb/old-events", "stacks/old-stack.txt"):
        assert not (run_dir / stale).exists(), stale


def test_overwrite_with_resume_is_refused(tmp_path, capsys):
    """--overwrite starts anew, --resume goes on: asked for both, nothing is done."""
    run_dir = tmp_path / "run"
    assert _train(*TINY, "--total-steps", 2 * WINDOW, "--run-dir", run_dir) == 0
    before = _snapshot(run_dir)
    capsys.readouterr()
    assert _train("--resume", run_dir, "--overwrite", "--no-progress") == 2
    err = _one_line(capsys)
    assert "--overwrite" in err and "--resume" in err, err
    assert _snapshot(run_dir) == before


# -- one trainer at a time


def test_a_second_trainer_on_a_running_folder_is_refused(tmp_path, capsys):
    """A job started twice, or a --resume while the run still goes (even with --overwrite): refused with exit 2
    and one line naming the running trainer's pid, and the running trainer is not disturbed; once it has
    ended (here: Ctrl-C, with a checkpoint) its folder resumes."""
    run_dir = tmp_path / "run"
    windows = 2000  # minutes of sleeping envs: it cannot end by itself while the test acts
    proc = start_cli([*SLOW, "--total-steps", str(windows * WINDOW)], run_dir)
    try:
        pids = wait_for_pids(run_dir)
        assert pids["main"] == proc.pid
        config = (run_dir / "config.json").read_bytes()
        capsys.readouterr()
        second_trainers = [
            ["--resume", run_dir, "--no-progress"],
            [*SLOW, "--total-steps", windows * WINDOW, "--run-dir", run_dir],
            [*SLOW, "--total-steps", WINDOW, "--seed", 9, "--run-dir", run_dir, "--overwrite"],
        ]
        for args in second_trainers:
            assert _train(*args) == 2, args
            err = _one_line(capsys)
            assert f"{run_dir} is in use by another htsrl trainer (pid {proc.pid})" in err, err
        assert proc.poll() is None
        deadline = time.monotonic() + 60
        while len(_progress_lines(run_dir)) < 2 and time.monotonic() < deadline:  # a window learned
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGINT)  # the first stops at its next barrier, with a checkpoint
    except BaseException:
        kill_group(proc)
        raise
    code, _, err = finish_cli(proc, timeout=120)
    assert code == 130 and "checkpoint saved" in err, err
    assert (run_dir / "config.json").read_bytes() == config
    assert_all_gone(pids.values())
    learned = load_checkpoint(run_dir)["next_window"]  # windows learned before the stop
    assert learned > 0 and _updates_column(run_dir) == list(range(1, learned + 1))
    assert _train("--resume", run_dir, "--stop-at-steps", (learned + 2) * WINDOW, "--no-progress") == 0
    assert _updates_column(run_dir) == list(range(1, learned + 3))


def test_a_sigkilled_trainer_leaves_no_stale_lock(tmp_path):
    """A trainer killed with SIGKILL (the OOM killer, a job's time limit) cannot release anything itself: the
    kernel does, so its folder resumes at once, and the resumed run equals one never killed."""
    run_dir, full = tmp_path / "killed", tmp_path / "full"
    windows = 40  # killed after 3: a margin of seconds even on a loaded machine
    args = [*SLOW, "--total-steps", str(windows * WINDOW), "--checkpoint-every", "1"]
    proc = start_cli(args, run_dir)
    try:
        pids = wait_for_pids(run_dir)
        deadline = time.monotonic() + 60
        while len(_progress_lines(run_dir)) < 4 and time.monotonic() < deadline:  # a few windows in
            time.sleep(0.02)
        os.kill(pids["main"], signal.SIGKILL)  # the trainer alone: its roles die with it (PR_SET_PDEATHSIG)
        code, _, _ = finish_cli(proc, timeout=30)
    except BaseException:
        kill_group(proc)
        raise
    assert code == -signal.SIGKILL
    assert (run_dir / ".lock").read_text().strip() == str(proc.pid)  # the stale pid is still written there
    assert_all_gone(pids.values())
    assert 0 < load_checkpoint(run_dir)["next_window"] < windows, "killed too late to test a resume"
    assert _train("--resume", run_dir, "--no-progress") == 0
    assert _train(*args, "--run-dir", full, "--no-progress") == 0
    _assert_same_run(run_dir, full)


def _progress_lines(run_dir: Path) -> list[str]:
    try:
        return (run_dir / "progress.csv").read_text().splitlines()
    except FileNotFoundError:
        return []


# -- a finished run trained longer

PPO = [*TINY, "--algo", "ppo", "--no-lr-decay", "--epochs", "2", "--minibatches", "2", "--seed", "3"]
A2C = [*TINY, "--algo", "a2c", "--seed", "6"]  # classic-a2c: constant learning rate
LONGER = {
    "ppo-hts": ([*PPO, "--mode", "hts"], [["--num-actors", "2"], ["--serial"]]),
    "ppo-sync": ([*PPO, "--mode", "sync"], [["--num-executors", "1"], ["--serial"]]),
    "a2c-hts": ([*A2C, "--mode", "hts"], [["--num-executors", "1", "--num-actors", "2"], ["--serial"]]),
    "a2c-sync": ([*A2C, "--mode", "sync"], [["--num-executors", "1"], ["--serial"]]),
}


@pytest.mark.parametrize("name", sorted(LONGER))
def test_a_finished_run_trained_longer_equals_a_longer_run(tmp_path, name):
    """2 windows, then --resume --total-steps of 3 windows, then of 5, each time in another layout == a run of 3,
    and of 5, windows from the start, bitwise (the continuations start from either parameter slot)."""
    args, layouts = LONGER[name]
    run_dir = tmp_path / "longer"
    assert _train(*args, "--total-steps", 2 * WINDOW, "--run-dir", run_dir) == 0
    for windows, layout in zip((3, 5), layouts):
        ckpt = load_checkpoint(run_dir)
        assert ckpt["finished"]
        if "hts" in name:  # the weights that collect the next window, for exactly this
            assert ckpt["next_behaviour"] is not None
        assert _train("--resume", run_dir, "--total-steps", windows * WINDOW, "--no-progress", *layout) == 0
        s = _summary(run_dir)
        assert s["finished"] and s["updates"] == windows and s["resumed_at_steps"] > 0
        assert json.loads((run_dir / "config.json").read_text())["total_steps"] == windows * WINDOW
        full = tmp_path / f"full{windows}"
        assert _train(*args, "--total-steps", windows * WINDOW, "--run-dir", full) == 0
        _assert_same_run(run_dir, full)


def test_a_finished_run_resumed_without_more_steps_is_refused(tmp_path, capsys):
    """--resume of a finished run with no larger --total-steps has nothing to do: exit 2, one line saying it
    finished and how to go on (a larger --total-steps, or --init-from); nothing in the folder changes."""
    run_dir = tmp_path / "run"
    assert _train(*A2C, "--total-steps", 3 * WINDOW, "--run-dir", run_dir) == 0
    before = _snapshot(run_dir)
    capsys.readouterr()
    for more in ([], ["--total-steps", 3 * WINDOW], ["--total-steps", 2 * WINDOW]):
        assert _train("--resume", run_dir, "--no-progress", *more) == 2, more
        err = _one_line(capsys)
        assert f"the run in {run_dir} already finished ({3 * WINDOW} steps, 3 updates)" in err, err
        assert "--total-steps" in err and f"--init-from {run_dir}" in err, err
        assert _snapshot(run_dir) == before, more
    assert _train("--resume", run_dir, "--no-progress", "--total-steps", 4 * WINDOW) == 0  # the way out works
    assert _summary(run_dir)["updates"] == 4


def test_with_lr_decay_total_steps_cannot_change_on_resume(tmp_path, capsys):
    """The default PPO decays the learning rate to 0 over --total-steps, so a longer run would have had another
    rate at every update: changing --total-steps on --resume is refused, and nothing changes."""
    run_dir = tmp_path / "run"
    ppo = [a for a in PPO if a != "--no-lr-decay"]
    assert _train(*ppo, "--total-steps", 2 * WINDOW, "--run-dir", run_dir) == 0
    before = _snapshot(run_dir)
    capsys.readouterr()
    assert _train("--resume", run_dir, "--no-progress", "--total-steps", 4 * WINDOW) == 2
    err = _one_line(capsys)
    assert f"--total-steps (saved {2 * WINDOW}, given {4 * WINDOW})" in err, err
    assert "the learning-rate decay spans the run" in err, err
    assert _snapshot(run_dir) == before


def test_a_finished_hts_run_without_next_behaviour_is_refused(tmp_path, capsys):
    """A run finished by htsrl before 0.3 lacks the weights that act next in HTS mode: training it longer is
    refused (it could not be bitwise), pointing to --init-from; nothing changes."""
    run_dir = tmp_path / "run"
    assert _train(*A2C, "--mode", "hts", "--total-steps", 2 * WINDOW, "--run-dir", run_dir) == 0
    ckpt = load_checkpoint(run_dir)
    del ckpt["next_behaviour"]
    save_checkpoint(run_dir, ckpt)
    before = _snapshot(run_dir)
    capsys.readouterr()
    assert _train("--resume", run_dir, "--no-progress", "--total-steps", 3 * WINDOW) == 2
    err = _one_line(capsys)
    assert "finished before htsrl 0.3" in err and f"--init-from {run_dir}" in err, err
    assert _snapshot(run_dir) == before
