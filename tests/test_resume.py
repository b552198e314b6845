"""Checkpoints and resume: N updates + resume + N updates == 2N updates in one run, bitwise; a corrupt
or truncated checkpoint is refused; a failed save keeps the previous checkpoint."""

import os
import signal
import time

import pytest
from conftest import assert_resume_is_bitwise, start_cli, wait_for_pids

from htsrl import Config, train
from htsrl.checkpoint import MAGIC, load_checkpoint, save_checkpoint
from htsrl.cli import main
from htsrl.errors import CheckpointError, CheckpointWriteError, ConfigError

KEYS = ("params_sha256", "rollout_sha256", "episodes", "mean_return_last_100", "updates", "env_steps")


def _half_run(run_dir) -> dict:
    """A CartPole run of 4 windows stopped after 2 with a checkpoint; returns its config (without the stop)."""
    base = dict(env="CartPole-v1", total_steps=8 * 32 * 4, alpha=32, progress=False, run_dir=str(run_dir))
    train(Config(**base, stop_at_steps=8 * 32 * 2))
    return base


CARTPOLE = dict(env="CartPole-v1", num_envs=8, alpha=32, total_steps=8 * 32 * 8, seed=7)
CARTPOLE_A2C = dict(env="CartPole-v1", num_envs=8, alpha=5, total_steps=8 * 5 * 8, seed=2)
PENDULUM = dict(env="Pendulum-v1", num_envs=4, alpha=32, total_steps=4 * 32 * 8, seed=3, epochs=2, minibatches=4)
BREAKOUT = dict(env="ALE/Breakout-v5", num_envs=4, alpha=16, total_steps=4 * 16 * 8, seed=5, epochs=1, minibatches=2)
# Every mode, algorithm and feature whose state a checkpoint must carry (issue 28). Football with several
# players and the EnvPool backend run the same check in their own modules (tests/test_football.py,
# tests/test_envpool.py); async mode resumes but is not bitwise by design (tests/test_async.py).
RESUME_MATRIX = {
    "ppo-hts": dict(**CARTPOLE, mode="hts"),
    "ppo-sync": dict(**CARTPOLE, mode="sync"),
    "ppo-hts-proximal-behaviour": dict(**CARTPOLE, mode="hts", proximal="behaviour"),  # learns the actors' values
    "ppo-hts-2-shards": dict(**CARTPOLE, mode="hts", learner_shards=2),
    "a2c-hts": dict(**CARTPOLE_A2C, algo="a2c", mode="hts"),
    "a2c-sync-lstm": dict(**CARTPOLE_A2C, algo="a2c", mode="sync", recurrent="lstm"),
    "impala-hts": dict(**CARTPOLE_A2C, algo="impala", mode="hts"),
    "impala-sync": dict(**CARTPOLE_A2C, algo="impala", mode="sync"),
    "ppo-hts-gru": dict(**CARTPOLE, mode="hts", recurrent="gru"),
    "ppo-hts-box-normalized": dict(**PENDULUM, mode="hts", norm_obs=True, norm_reward=True),
    "ppo-sync-box-normalized": dict(**PENDULUM, mode="sync", norm_obs=True, norm_reward=True),
    "atari-ppo-hts-bf16": dict(**BREAKOUT, mode="hts", precision="bf16"),  # 2 learner shards by default
    "atari-ppo-hts-fp32": dict(**BREAKOUT, mode="hts", precision="fp32"),
}
# Two stops of either parity (both parameter slots), each resumed in another layout.
STOPS, LAYOUTS = (3, 6), [dict(num_executors=1, num_actors=2), dict(serial=True)]


@pytest.mark.parametrize("name", sorted(RESUME_MATRIX))
def test_resume_is_bitwise(tmp_path, name):
    """Stopped after 3 and 6 windows and resumed each time in another layout == one uninterrupted run, bitwise:
    each checkpoint equals the uninterrupted run's state at that barrier field by field, each resumed
    trainer holds exactly what it loaded, and the summaries, progress.csv and final checkpoints match."""
    full = assert_resume_is_bitwise(tmp_path, STOPS, LAYOUTS, **RESUME_MATRIX[name])
    assert full["updates"] == 8 and (full["episodes"] > 0 or name.startswith("atari"))  # no life lost yet


def test_resume_after_ctrl_c(tmp_path):
    args = [
        "--env",
        "synthetic/exponential",
        "--env-kwargs",
        '{"mean_s": 0.001}',
        "--num-envs",
        "8",
        "--alpha",
        "16",
        "--total-steps",
        str(8 * 16 * 40),
        "--seed",
        "3",
        "--epochs",
        "2",
    ]
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
    _half_run(run_dir)
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
    with pytest.raises(CheckpointWriteError, match="previous checkpoint is kept"):
        save_checkpoint(tmp_path, {"v": 2, "big": b"x" * 1000})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert load_checkpoint(tmp_path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_resume_refuses_changed_numerics(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _half_run(run_dir)
    capsys.readouterr()
    before = (run_dir / "progress.csv").read_text()
    assert main(["train", "--resume", str(run_dir), "--lr", "0.1", "--seed", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "--resume cannot change --seed (saved 1, given 3), --lr (saved 0.00025, given 0.1)" in err, err
    assert main(["train", "--resume", str(run_dir), "--total-steps", "99999"]) == 2
    assert "--total-steps (saved 1024, given 99999)" in capsys.readouterr().err
    assert (run_dir / "progress.csv").read_text() == before  # nothing ran


CMD = [
    "--env",
    "CartPole-v1",
    "--algo",
    "ppo",
    "--num-envs",
    "4",
    "--num-executors",
    "2",
    "--alpha",
    "48",
    "--seed",
    "9",
    "--total-steps",
    str(4 * 48 * 4),
    "--no-progress",
]


def test_resume_accepts_the_same_command_line(tmp_path):
    """A job script rerun with --resume added: every flag equals the saved value, so it resumes."""
    run_dir = str(tmp_path / "run")
    assert main(["train", *CMD, "--run-dir", run_dir, "--stop-at-steps", str(4 * 48 * 2)]) == 0
    assert main(["train", *CMD, "--resume", run_dir, "--run-dir", run_dir, "--num-actors", "2"]) == 0
    assert main(["train", *CMD, "--run-dir", str(tmp_path / "full")]) == 0
    a, b = (__import__("json").loads((tmp_path / d / "summary.json").read_text()) for d in ("run", "full"))
    assert a["finished"] and {k: a[k] for k in KEYS} == {k: b[k] for k in KEYS}


def test_library_resume_refuses_changed_numerics(tmp_path):
    """The check is in train(), not only in the CLI: a Python caller cannot resume with another lr."""
    run_dir = tmp_path / "run"
    base = _half_run(run_dir)
    with pytest.raises(ConfigError, match=r"--lr \(saved 0.00025, given 0.001\)"):
        train(Config(**base, lr=1e-3), resume=True)
    with pytest.raises(ConfigError, match="--mode"):
        train(Config(**base, mode="sync"), resume=True)
    assert train(Config(**base, num_executors=1, checkpoint_every=1), resume=True)["finished"]


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    """A shared run directory must not run its author's code on --resume: a checkpoint with a valid header
    and hash whose payload would call os.system when unpickled is refused, and the command never runs."""
    import hashlib
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    payload = pickle.dumps({"format": 2, "learner": Payload()}, protocol=2)  # torch.save's protocol
    run_dir = tmp_path / "shared"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(
        MAGIC + hashlib.sha256(payload).digest() + len(payload).to_bytes(8, "little") + payload
    )
    with pytest.raises(CheckpointError, match="holds objects other than tensors and plain types"):
        load_checkpoint(run_dir)
    assert not marker.exists()


def test_checkpoints_hold_only_tensors_and_plain_types(tmp_path):
    run_dir = tmp_path / "run"
    _half_run(run_dir)
    import io

    import torch

    payload = (run_dir / "checkpoint.pt").read_bytes()[len(MAGIC) + 40 :]
    torch.load(io.BytesIO(payload), weights_only=True)  # raises on anything else


def test_init_from_starts_a_new_run_from_a_runs_final_weights_and_statistics(tmp_path, capsys):
    """--init-from DIR: the first window acts with DIR's final weights (its normalization layer included),
    the learner's observation statistics go on from DIR's count, and the new run resumes bitwise."""
    import numpy as np
    import torch

    from htsrl.nn import build_model, flatten_params

    source = tmp_path / "source"
    base = dict(PENDULUM, mode="hts", norm_obs=True, progress=False)
    train(Config(**{**base, "total_steps": 4 * 32 * 2}, run_dir=str(source)))
    weights = torch.load(source / "model.pt", weights_only=True)
    model = build_model((3,), _pendulum_spec(), obs_norm_clip=10.0)
    model.load_state_dict(weights)
    first_acted_with = {}

    def on_window(window, bufs, buf):
        if window == 0:
            first_acted_with["params"] = np.array(bufs.published())

    train(Config(**base, run_dir=str(tmp_path / "new"), init_from=str(source)), on_window=on_window)
    assert np.array_equal(first_acted_with["params"], flatten_params(model).numpy())
    count = load_checkpoint(tmp_path / "new")["learner"]["normalization"]["obs"]["count"]
    assert count == load_checkpoint(source)["learner"]["normalization"]["obs"]["count"] + 4 * 32 * 8
    assert_resume_is_bitwise(tmp_path / "resumed", STOPS, LAYOUTS, **base, init_from=str(source))

    capsys.readouterr()
    refused = tmp_path / "refused"
    assert main(["train", "--env", "CartPole-v1", "--init-from", str(source), "--run-dir", str(refused)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "its weights do not fit this run's network" in err, err
    assert not (refused / "config.json").exists()


def _pendulum_spec():
    from htsrl.envs import probe_env

    return probe_env("Pendulum-v1").action_spec


CUDA_MATRIX = {
    "ppo-hts-cuda-learner": dict(**CARTPOLE, mode="hts", device="cuda"),
    "ppo-sync-cuda-learner": dict(**CARTPOLE, mode="sync", device="cuda"),
    "atari-ppo-hts-cuda-learner-and-actors": dict(
        **BREAKOUT, mode="hts", device="cuda", actor_device="cuda", start_method="spawn", precision="bf16"
    ),
}


@pytest.mark.parametrize("name", sorted(CUDA_MATRIX))
def test_resume_is_bitwise_on_cuda(tmp_path, name):
    """The same check with the learner (and actors) on a GPU; run by the device script, skipped elsewhere."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device (the GPU machine runs this: see benchmarks/device_check.sh)")
    layouts = [dict(num_executors=1, num_actors=2), dict(num_executors=2, num_actors=1)]
    full = assert_resume_is_bitwise(tmp_path, STOPS, layouts, **CUDA_MATRIX[name])
    assert full["updates"] == 8
