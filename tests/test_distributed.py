"""Data-parallel learners over torch.distributed: 2 ranks on localhost with gloo (CPU)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, assert_all_gone, wait_for_pids

ARGS = [
    "--total-steps",
    str(8 * 32 * 6),
    "--alpha",
    "32",
    "--num-envs",
    "8",
    "--num-executors",
    "2",
    "--no-progress",
    "--seed",
    "4",
]


def torchrun(run_dir, extra=(), nproc=2, popen=False):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        "htsrl",
        "train",
        *ARGS,
        "--run-dir",
        str(run_dir),
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if popen:
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env, start_new_session=True
        )
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads((run_dir / d / "summary.json").read_text()) for d in (".", "rank1")]


def single_process(run_dir, extra=()) -> dict:
    """The same run in one process with all the envs; returns its final weights (``model.pt``)."""
    cmd = [sys.executable, "-m", "htsrl", "train", *ARGS, *extra, "--run-dir", str(run_dir)]
    single = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert single.returncode == 0, single.stderr
    return torch.load(run_dir / "model.pt")


@pytest.mark.parametrize("env", ["CartPole-v1", "synthetic/exponential"])
def test_two_ranks_agree_and_repeat(tmp_path, env):
    extra = ["--env", env] + (["--env-kwargs", '{"mean_s": 0.0005}'] if env.startswith("synthetic") else [])
    rank0, rank1 = torchrun(tmp_path / "a", extra)
    assert rank0["world_size"] == 2 and rank0["params_sha256"] == rank1["params_sha256"]
    assert rank0["updates"] == 6 and rank0["env_steps"] == 8 * 32 * 6
    again, _ = torchrun(tmp_path / "b", extra)
    assert again["params_sha256"] == rank0["params_sha256"]  # run after run
    assert again["rollout_sha256"] == rank0["rollout_sha256"]
    # versus one process with the same 8 envs: only the reduction order differs
    b = single_process(tmp_path / "one", extra)
    a = torch.load(tmp_path / "a" / "model.pt")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-3


def test_killing_one_rank_stops_the_job(tmp_path):
    proc = torchrun(
        tmp_path,
        [
            "--env",
            "synthetic/exponential",
            "--env-kwargs",
            '{"mean_s": 0.002}',
            "--total-steps",
            str(8 * 32 * 400),
            "--watchdog-s",
            "20",
        ],
        popen=True,
    )
    pids0 = wait_for_pids(tmp_path)
    pids1 = wait_for_pids(tmp_path / "rank1")
    time.sleep(1.0)
    os.kill(pids1["main"], signal.SIGKILL)
    t0 = time.monotonic()
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the job did not stop after a rank died") from None
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 45
    assert "rank" in err.lower()
    assert_all_gone([*pids0.values(), *pids1.values()], timeout=10)


def test_ctrl_c_stops_both_ranks_at_one_barrier_and_resumes(tmp_path):
    """Ctrl-C in the terminal of a 2-rank job: every rank checkpoints the same window (the stop flag is
    all-reduced), nothing is left running, and the resumed job ends where an uninterrupted one does."""
    extra = [
        "--env",
        "synthetic/exponential",
        "--env-kwargs",
        '{"mean_s": 0.002}',
        "--total-steps",
        str(8 * 32 * 40),
        "--checkpoint-every",
        "1000",
    ]
    proc = torchrun(tmp_path / "stopped", extra, popen=True)
    pids = [*wait_for_pids(tmp_path / "stopped").values(), *wait_for_pids(tmp_path / "stopped" / "rank1").values()]
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal sends to its foreground group
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the job did not stop on Ctrl-C") from None
    assert err.count("checkpoint saved, continue with") == 2, err[-3000:]
    assert_all_gone(pids, timeout=10)
    from htsrl.checkpoint import load_checkpoint

    ckpts = [load_checkpoint(tmp_path / "stopped" / d) for d in (".", "rank1")]
    assert 0 < ckpts[0]["next_window"] < 40
    assert ckpts[0]["next_window"] == ckpts[1]["next_window"]
    assert ckpts[0]["learner"]["updates"] == ckpts[1]["learner"]["updates"]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "htsrl",
        "train",
        "--resume",
        str(tmp_path / "stopped"),
        "--no-progress",
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert out.returncode == 0, out.stderr[-3000:]
    resumed = [json.loads((tmp_path / "stopped" / d / "summary.json").read_text()) for d in (".", "rank1")]
    full = torchrun(tmp_path / "full", extra)
    for r, f in zip(resumed, full):  # each rank: same weights and the same rollout of its own envs
        assert r["finished"]
        assert {k: r[k] for k in ("params_sha256", "rollout_sha256", "env_steps", "updates")} == {
            k: f[k] for k in ("params_sha256", "rollout_sha256", "env_steps", "updates")
        }


def test_two_ranks_share_the_normalization_statistics(tmp_path):
    """--norm-obs/--norm-reward under data parallelism: each rank scales its own envs' rewards, the
    window's observation moments are summed over ranks, so both ranks hold the same statistics, and
    after the first window (acted on by the same initial weights everywhere) those one process with all
    8 envs holds (up to the order of the float64 sums; later windows differ as the weights do)."""
    extra = ["--env", "Pendulum-v1", "--norm-obs", "--norm-reward"]
    rank0, rank1 = torchrun(tmp_path / "a", extra)
    assert rank0["params_sha256"] == rank1["params_sha256"] and rank0["updates"] == 6
    one_window = [*extra, "--total-steps", str(8 * 32)]
    torchrun(tmp_path / "a1", one_window)
    b = single_process(tmp_path / "one", one_window)
    a = torch.load(tmp_path / "a1" / "model.pt")
    for k in ("obs_norm.mean", "obs_norm.std"):
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-6)
    assert a["obs_norm.std"].ne(1).all()  # the statistics moved
