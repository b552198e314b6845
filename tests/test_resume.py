"""Checkpoints and resume: N updates + resume + N updates == 2N updates in one run, bitwise; a corrupt
or truncated checkpoint is refused; a failed save keeps the previous checkpoint."""

import os
import signal
import time

import pytest

from htsrl import Config, train
from htsrl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from htsrl.cli import main

from conftest import start_cli, wait_for_pids

KEYS = ("params_sha256", "rollout_sha256", "episodes", "mean_return_last_100", "updates", "env_steps")


def _resume(run_dir, **layout):
    cfg = Config.from_dict({**__import__("json").loads((run_dir / "config.json").read_text()),
                            "stop_at_steps": None, **layout})
    return train(cfg, resume=True)


@pytest.mark.parametrize("env,mode,extra", [
    ("CartPole-v1", "hts", dict(alpha=32, num_envs=8)),
    ("CartPole-v1", "sync", dict(alpha=32, num_envs=8)),
    ("ALE/Breakout-v5", "hts", dict(alpha=16, num_envs=4, epochs=1, minibatches=2)),
])
def test_resume_is_bitwise(tmp_path, env, mode, extra):
    total = extra["num_envs"] * extra["alpha"] * 8
    base = dict(env=env, mode=mode, total_steps=total, seed=7, progress=False, checkpoint_every=3, **extra)
    full = train(Config(**base, run_dir=str(tmp_path / "full")))
    half = train(Config(**base, run_dir=str(tmp_path / "half"), stop_at_steps=total // 2))
    assert not half["finished"] and half["updates"] == 4
    resumed = _resume(tmp_path / "half", num_executors=1, num_actors=2)  # another layout, same numbers
    assert resumed["finished"]
    assert {k: resumed[k] for k in KEYS} == {k: full[k] for k in KEYS}


def test_resume_after_ctrl_c(tmp_path):
    args = ["--env", "synthetic/exponential", "--env-kwargs", '{"mean_s": 0.001}', "--num-envs", "8",
            "--alpha", "16", "--total-steps", str(8 * 16 * 40), "--seed", "3", "--epochs", "2"]
    proc = start_cli(args, tmp_path / "stopped")
    wait_for_pids(tmp_path / "stopped")
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "checkpoint saved, continue with: htsrl train --resume" in err
    ckpt = load_checkpoint(tmp_path / "stopped")
    assert 0 < ckpt["next_window"] < 40
    assert main(["train", "--resume", str(tmp_path / "stopped"), "--no-progress", "--num-actors", "2"]) == 0
    assert main(["train", *args, "--run-dir", str(tmp_path / "full"), "--no-progress"]) == 0
    import json
    a = json.loads((tmp_path / "stopped" / "summary.json").read_text())
    b = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert {k: a[k] for k in KEYS} == {k: b[k] for k in KEYS}


def test_corrupt_and_truncated_checkpoints_are_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(Config(env="CartPole-v1", total_steps=8 * 32 * 4, alpha=32, progress=False, run_dir=str(run_dir),
                 stop_at_steps=8 * 32 * 2))
    path = run_dir / "checkpoint.pt"
    good = path.read_bytes()
    path.write_bytes(good[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(run_dir)
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(run_dir)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not an htsrl checkpoint"):
        load_checkpoint(run_dir)
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refusing to load it" in err


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, {"v": 1})
    real_fsync = os.fsync

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(CheckpointError, match="previous checkpoint is kept"):
        save_checkpoint(tmp_path, {"v": 2, "big": b"x" * 1000})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert load_checkpoint(tmp_path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_resume_refuses_changed_numerics(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(Config(env="CartPole-v1", total_steps=8 * 32 * 4, alpha=32, progress=False, run_dir=str(run_dir),
                 stop_at_steps=8 * 32 * 2))
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--lr", "0.1"]) == 2
    assert "--resume cannot change --lr" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--total-steps", "99999"]) == 2
    assert "the learning-rate decay spans the whole run" in capsys.readouterr().err
