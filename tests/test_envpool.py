"""The EnvPool executor backend (``--env-backend envpool``): its Atari semantics, the replay that resume
and crash recovery rely on, and the determinism matrix across executors and actors."""

import itertools
import json
import os
import signal
import time

import numpy as np
import pytest

try:
    import envpool  # noqa: F401
except ImportError:
    if os.environ.get("HTSRL_REQUIRE_ENVPOOL"):
        raise
    pytest.skip("envpool is not installed (pip install 'htsrl[envpool]')", allow_module_level=True)

from conftest import assert_all_gone, kill_group, shm_entries, start_cli, wait_for_pids

from htsrl.cli import main
from htsrl.engine.history import replay
from htsrl.envs import EPISODE_KEY, probe_env
from htsrl.envs.envpool_atari import EnvPoolAtari

BREAKOUT = dict(
    env="ALE/Breakout-v5",
    env_backend="envpool",
    algo="ppo",
    num_envs=4,
    alpha=64,
    total_steps=4 * 64 * 3,
    seed=5,
    epochs=1,
    minibatches=2,
)
FIELDS = ("params_sha256", "rollout_sha256", "episodes", "mean_return_last_100", "updates")


def _key(summary):
    return {k: summary[k] for k in FIELDS}


def test_spaces_match_the_python_backend():
    assert probe_env("ALE/Breakout-v5", {}, "envpool") == probe_env("ALE/Breakout-v5", {}, "python")


def test_reset_depends_only_on_its_seed():
    pool = EnvPoolAtari("ALE/Breakout-v5", {}, range(2))
    a, b = pool.envs[0], pool.envs[1]
    starts = []
    for seed in range(8):
        obs_a, _ = a.reset(seed=seed)
        for _ in range(20):  # move b elsewhere, then reset it with the same seed
            b.step(3)
        obs_b, _ = b.reset(seed=seed)
        assert np.array_equal(obs_a, obs_b)
        starts.append(obs_a.tobytes())
    pool.close()
    assert len(set(starts)) > 1  # the no-op start varies with the seed


def test_episode_rebuilds_in_another_pool():
    """Replay (resume, crash recovery): env 5 of a 4-env pool, rebuilt alone in a fresh pool from its
    current game's seed and actions, is in the same state and stays in step."""
    pool = EnvPoolAtari("ALE/Breakout-v5", {}, range(4, 8))
    rng = np.random.default_rng(0)
    seed_of = lambda k: 7000 + k  # noqa: E731
    resets = {i: 0 for i in pool.envs}
    for i in pool.envs:
        pool.envs[i].reset(seed=seed_of(0))
    start, actions, dones, games, last = 0, [], [], 0, None
    while games < 2 or len(actions) < 100:
        acts = rng.integers(0, 4, 4)
        for i, a, (obs, _, term, trunc, info) in zip(range(4, 8), acts, pool.step(range(4, 8), acts)):
            if i == 5:
                actions.append(int(a))
                dones.append(term or trunc)
                last = obs
            if term or trunc:
                resets[i] += 1
                obs, _ = pool.envs[i].reset(seed=seed_of(resets[i]))
                if i == 5:
                    last = obs
                    if EPISODE_KEY in info:
                        games += 1
                        start, actions, dones = resets[i], [], []
    fresh = EnvPoolAtari("ALE/Breakout-v5", {}, range(1))
    obs, k = replay(fresh.envs[0], seed_of, start, actions, dones)
    assert k == resets[5] + 1 and np.array_equal(obs, last)
    for a in rng.integers(0, 4, 50):
        assert np.array_equal(fresh.envs[0].step(int(a))[0], pool.envs[5].step(int(a))[0])
    pool.close()
    fresh.close()


@pytest.mark.parametrize("mode", ["hts", "sync"])
def test_envpool_matrix(run, mode):
    ref = run(**BREAKOUT, mode=mode, serial=True)
    assert ref["episodes"] > 0  # game overs (and, before them, lost lives) happen inside the test
    layouts = itertools.product([1, 2], [1, 2]) if mode == "hts" else [(1, 1), (2, 1)]
    for executors, actors in layouts:
        got = run(**BREAKOUT, mode=mode, num_executors=executors, num_actors=actors)
        assert _key(got) == _key(ref), (executors, actors)
    python = run(**{**BREAKOUT, "env_backend": "python"}, mode=mode, serial=True)
    assert python["params_sha256"] != ref["params_sha256"]  # the backend is a numerics setting


def test_resume_is_bitwise(tmp_path):
    """The resume matrix's check (tests/test_resume.py) on EnvPool executors."""
    from conftest import assert_resume_is_bitwise

    layouts = [dict(num_executors=1, num_actors=2), dict(serial=True)]
    assert_resume_is_bitwise(tmp_path, (2, 3), layouts, **{**BREAKOUT, "total_steps": 4 * 64 * 5})


def test_sigkill_of_an_executor_is_recovered_bitwise(tmp_path):
    args = [
        "--env",
        "ALE/Breakout-v5",
        "--env-backend",
        "envpool",
        "--num-envs",
        "4",
        "--alpha",
        "32",
        "--epochs",
        "1",
        "--minibatches",
        "1",
        "--total-steps",
        str(4 * 32 * 40),
        "--seed",
        "2",
    ]
    assert main(["train", *args, "--run-dir", str(tmp_path / "ref"), "--no-progress"]) == 0
    before = shm_entries()
    proc = start_cli(args, tmp_path / "killed")
    pids = wait_for_pids(tmp_path / "killed")
    progress = tmp_path / "killed" / "progress.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not progress.exists() or len(progress.read_text().splitlines()) < 3):
        time.sleep(0.05)  # two windows learned: mid-run (of 40), whatever the machine's speed
    os.kill(pids["executor 1"], signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=120)
    except Exception:
        kill_group(proc)
        raise
    assert proc.returncode == 0, err
    assert "executor 1" in err and "restarting" in err
    got = json.loads((tmp_path / "killed" / "summary.json").read_text())
    ref = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert got["restarts"] == 1
    assert got["params_sha256"] == ref["params_sha256"] and got["rollout_sha256"] == ref["rollout_sha256"]
    assert_all_gone([*pids.values(), *wait_for_pids(tmp_path / "killed").values()])
    assert shm_entries() == before


def test_eval_plays_on_the_runs_backend(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--env",
                "ALE/Breakout-v5",
                "--env-backend",
                "envpool",
                "--num-envs",
                "4",
                "--alpha",
                "16",
                "--total-steps",
                "64",
                "--epochs",
                "1",
                "--minibatches",
                "1",
                "--run-dir",
                str(run_dir),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--episodes", "2", "--video", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 2 and result["mean_score"] >= 0
    assert (run_dir / "eval.mp4").stat().st_size > 1000


@pytest.mark.parametrize(
    "args,message",
    [
        (["--env", "CartPole-v1"], "--env-backend envpool steps Atari only"),
        (
            ["--env", "ALE/Breakout-v5", "--env-kwargs", '{"repeat_action_probability": 0.25}'],
            "needs repeat_action_probability 0",
        ),
        (["--env", "ALE/Breakout-v5", "--env-kwargs", '{"frameskip": 1}'], "are not settings of the envpool backend"),
        (["--env", "ALE/NoSuchGame-v5"], "EnvPool has no Atari game 'NoSuchGame-v5'"),
        (["--env", "ALE/Breakout-v5", "--env-kwargs", '{"mode": 99}'], "cannot build ALE/Breakout-v5 on EnvPool"),
    ],
)
def test_bad_input(tmp_path, capsys, args, message):
    run_dir = tmp_path / "run"
    code = main(["train", "--env-backend", "envpool", "--run-dir", str(run_dir), "--no-progress", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not run_dir.exists()


@pytest.mark.parametrize("module", ["envpool", "ale_py"])
def test_missing_envpool_is_one_line(tmp_path, capsys, monkeypatch, module):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    code = main(["train", "--env-backend", "envpool", "--run-dir", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "pip install 'htsrl[envpool]'" in err and len(err.splitlines()) == 1


def test_forked_roles_never_destroy_a_pool_of_the_parent():
    """A pool the parent left to its garbage collector (here: in a reference cycle) is inherited by
    every forked role; collecting it there would run EnvPool's destructor without its threads and
    crash the role. Roles are forked with the parent's objects frozen."""
    import gc
    import multiprocessing

    from htsrl.engine.processes import start_roles

    gc.disable()  # keep the garbage until the child has forked
    try:
        pool = EnvPoolAtari("ALE/Breakout-v5", {}, range(2), num_threads=2)
        pool.envs[0].reset(seed=1)
        garbage = [pool]
        garbage.append(garbage)
        del pool, garbage
        child = multiprocessing.get_context("fork").Process(target=gc.collect)
        start_roles([child])
        child.join(30)
    finally:
        gc.enable()
        gc.collect()
    assert child.exitcode == 0


def test_close_ends_the_pools_threads_at_once():
    threads = lambda: len(os.listdir("/proc/self/task"))  # noqa: E731
    before = threads()
    pool = EnvPoolAtari("ALE/Breakout-v5", {}, range(4), num_threads=3)
    pool.envs[0].reset(seed=0)
    assert threads() >= before + 3  # its workers (and a thread of its own)
    pool.close()
    assert threads() == before


def test_steps_are_frame_identical_to_the_python_wrappers():
    """Between resets the two backends are one pipeline: from the same start, EnvPool's C++ frame skip,
    max-pool, resize and stack give the very observations, rewards and lives of the Gymnasium wrappers
    the Python backend uses. The backends differ only in their reset sequences (README)."""
    import ale_py
    import gymnasium as gym
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    gym.register_envs(ale_py)
    python = FrameStackObservation(
        AtariPreprocessing(
            gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.0), noop_max=1, frame_skip=4
        ),
        4,
    )
    pool = envpool.make_gymnasium("Breakout-v5", num_envs=1, noop_max=1, use_fire_reset=False)  # 1 no-op frame
    obs_py, _ = python.reset(seed=0)
    obs_ep, _ = pool.reset()
    assert np.array_equal(obs_py, obs_ep[0])
    rng = np.random.default_rng(0)
    score = 0.0
    for _ in range(240):
        a = int(rng.integers(4))
        obs_py, r_py, term_py, _, info_py = python.step(a)
        obs_ep, r_ep, term_ep, _, info_ep = pool.step(np.array([a], dtype=np.int32))
        assert np.array_equal(obs_py, obs_ep[0]) and r_py == r_ep[0] and info_py["lives"] == info_ep["lives"][0]
        assert term_py == term_ep[0]
        score += r_py
    pool.close()
    assert score > 0 and info_py["lives"] < 5  # the comparison covered points scored and lives lost
