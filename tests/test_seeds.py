"""htsrl train --seeds: one ordinary run per seed in a group folder; a failing seed is reported and the
others still run; --resume GROUP finishes what is unfinished, bitwise; Ctrl-C stops every seed with a
checkpoint and leaves no process behind; a SIGKILLed group takes its seeds with it."""

import json
import os
import signal
import time

import psutil
import pytest
from conftest import assert_all_gone, finish_cli, kill_group, start_cli, wait_for_pids

from htsrl.cli import main

SMALL = ["--env", "CartPole-v1", "--num-envs", "4", "--alpha", "32", "--total-steps", "2048", "--no-progress"]


def _summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def test_a_failing_seed_is_reported_and_the_group_resumes_bitwise(tmp_path, capsys):
    group = tmp_path / "group"
    (group / "seed_2").mkdir(parents=True)
    (group / "seed_2" / "config.json").write_text("{}")  # another run in its folder: seed 2 is refused
    args = ["train", *SMALL, "--seeds", "1", "2", "3", "--jobs", "2", "--run-dir", str(group)]
    assert main([*args, "--stop-at-steps", "1024"]) == 1
    err = capsys.readouterr().err
    assert "seed 2: failed (exit 2)" in err and "1 of 3 seeds failed (2)" in err, err
    for seed in (1, 3):  # the others ran, and stopped where asked
        s = _summary(group / f"seed_{seed}")
        assert s["env_steps"] == 1024 and not s["finished"]
    assert "already holds a run" in (group / "seed_2.log").read_text()
    assert main(["train", "--resume", str(group), "--jobs", "2"]) == 0  # seed 2 starts again, 1 and 3 resume
    err = capsys.readouterr().err
    assert "3 of 3 seeds finished" in err, err
    assert main(["train", *SMALL, "--seed", "3", "--run-dir", str(tmp_path / "alone")]) == 0
    assert _summary(group / "seed_3")["params_sha256"] == _summary(tmp_path / "alone")["params_sha256"]
    assert json.loads((group / "seed_3" / "config.json").read_text())["seed"] == 3
    assert main(["train", "--resume", str(group)]) == 0  # nothing left: every seed is left as it is
    assert capsys.readouterr().err.count("finished before, left as it is") == 3
    assert main(["plot", str(group), "--out", str(tmp_path / "group.png")]) == 0  # the group: its seeds, one curve
    assert (tmp_path / "group.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "args,message",
    [
        (["--seeds", "1", "2", "--seed", "3"], "--seed and --seeds: give one"),
        (["--seeds", "1", "1"], "names a seed twice"),
        (["--seeds", "1", "--jobs", "0"], "--jobs must be a positive integer"),
        (["--seeds", "1", "--json"], "--json prints one run's summary"),
        # the config is checked as a single run's is, before the group folder or any seed exists
        (["--seeds", "1", "2", "--num-envs", "0"], "--num-envs must be a positive integer"),
        (["--seeds", "1", "--env", "Breakout-v4"], "one of Gymnasium's older Atari ids"),
        (["--seeds", "1", "--env-kwargs", '{"bogus": 1}'], "cannot build CartPole-v1"),
    ],
)
def test_bad_group_input_is_refused_in_one_line(tmp_path, capsys, args, message):
    group = tmp_path / "group"
    assert main(["train", *SMALL, "--run-dir", str(group), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not group.exists()


def test_a_group_is_not_replaced_or_changed_by_accident(tmp_path, capsys):
    group = tmp_path / "group"
    assert main(["train", *SMALL, "--total-steps", "128", "--seeds", "1", "--run-dir", str(group)]) == 0
    capsys.readouterr()
    assert main(["train", *SMALL, "--seeds", "1", "--run-dir", str(group)]) == 2
    assert "already holds a seed group; continue it with: htsrl train --resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(group), "--lr", "0.1"]) == 2
    assert "takes only layout and run-control flags, not --lr" in capsys.readouterr().err
    assert main(["train", *SMALL, "--run-dir", str(group)]) == 2  # a single run in a group's folder
    assert "holds a seed group; give the run another --run-dir" in capsys.readouterr().err
    assert main(["train", *SMALL, "--seeds", "1", "--run-dir", str(group / "seed_1")]) == 2  # a group in a run's
    assert "holds a single run (config.json" in capsys.readouterr().err


def test_a_printed_config_with_its_seed_starts_a_group(tmp_path, capsys):
    """The README's chain: --print-config writes seed: 1; --seeds replaces it (only a --seed flag clashes)."""
    assert main(["train", *SMALL, "--total-steps", "128", "--print-config"]) == 0
    config = tmp_path / "run.yaml"
    config.write_text(capsys.readouterr().out)
    group = tmp_path / "group"
    assert main(["train", "--config", str(config), "--seeds", "4", "5", "--run-dir", str(group), "--no-progress"]) == 0
    assert [json.loads((group / f"seed_{s}" / "config.json").read_text())["seed"] for s in (4, 5)] == [4, 5]


def _seed_pids(group, seeds, timeout=90.0):
    return {s: wait_for_pids(group / f"seed_{s}", timeout) for s in seeds}


def test_ctrl_c_stops_every_seed_with_a_checkpoint_and_no_orphan(tmp_path):
    group = tmp_path / "group"
    long = [*SMALL[:-3], "--total-steps", "2000000", "--checkpoint-every", "0", "--seeds", "1", "2", "--jobs", "2"]
    proc = start_cli(long, group)
    try:
        pids = _seed_pids(group, (1, 2))
        time.sleep(1.0)
        # as a terminal's Ctrl-C: to the foreground process group. The seeds run in sessions of their own,
        # so each gets one SIGINT, the group's (two would stop it at once, without a checkpoint)
        os.killpg(proc.pid, signal.SIGINT)
        code, _, err = finish_cli(proc, timeout=120)
    finally:
        kill_group(proc)
    assert code == 130 and "continue with: htsrl train --resume" in err, err
    for seed in (1, 2):
        assert (group / f"seed_{seed}" / "checkpoint.pt").is_file()
        assert f"seed {seed}: stopped (Ctrl-C or SIGTERM); its last checkpoint is kept" in err, err
    assert_all_gone([p for roles in pids.values() for p in roles.values()])


def test_a_killed_group_takes_its_seeds_with_it(tmp_path):
    group = tmp_path / "group"
    long = [*SMALL[:-3], "--total-steps", "2000000", "--seeds", "1", "--jobs", "1"]
    proc = start_cli(long, group)
    try:
        pids = _seed_pids(group, (1,))
        children = [c.pid for c in psutil.Process(proc.pid).children()]
        proc.kill()  # SIGKILL: no handler runs; the kernel tells each seed (PR_SET_PDEATHSIG)
        proc.wait(timeout=10)
        assert_all_gone([*children, *pids[1].values()], timeout=60)
    finally:
        kill_group(proc)
