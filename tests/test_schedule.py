"""Invariants 2, 3 and 5: the lag of one update, whole windows, and no transition lost or paired
with the wrong action at a window edge, under step-time jitter."""

import numpy as np
import pytest

from htsrl.config import Config, resolve
from htsrl.engine.learner import Learner
from htsrl.nn import flatten_params, params_sha256

COUNTER = dict(
    env="htsrl/Counter-v0",
    env_kwargs={"episode_length": 7, "jitter_s": 0.0005},
    preset="classic-ppo",
    num_envs=6,
    alpha=5,
    epochs=1,
    minibatches=1,
    seed=11,
)


def _record(store):
    def hook(window, bufs, buf):
        win = {
            name: getattr(bufs, name)[buf].copy()
            for name in ("obs", "final_obs", "actions", "reward", "terminated", "truncated", "version")
        }
        win["params"] = bufs.published().copy()  # the weights that drove this window
        store.append(win)

    return hook


@pytest.mark.parametrize("mode,expected_lag", [("hts", 1), ("sync", 0)])
def test_policy_version_per_window(run, mode, expected_lag):
    windows = []
    summary = run(
        **COUNTER, total_steps=6 * 5 * 6, mode=mode, num_executors=2, num_actors=2, on_window=_record(windows)
    )
    assert summary["updates"] == len(windows) == 6
    for k, win in enumerate(windows):
        assert (win["version"] == max(0, k - expected_lag)).all(), (k, np.unique(win["version"]))


def test_first_windows_use_learners_initial_weights(run):
    windows = []
    run(**COUNTER, total_steps=6 * 5 * 2, on_window=_record(windows))
    cfg = resolve(Config(**COUNTER, total_steps=60))
    fresh = Learner(cfg, (3,), 3, total_updates=2)
    flat = flatten_params(fresh.model).numpy()  # the published layout: each parameter 64-byte aligned
    for win in windows:  # windows 0 and 1 both run on theta_0
        assert np.array_equal(win["params"], flat)
    assert params_sha256(fresh.model) == params_sha256(Learner(cfg, (3,), 3, 2).model)


@pytest.mark.parametrize("layout", [dict(serial=True), dict(num_executors=3, num_actors=2)])
def test_window_edges(run, layout):
    windows = []
    T, n, L = 5, 6, 7
    run(
        **COUNTER,
        total_steps=n * T * 8,
        num_executors=layout.get("num_executors", 1),
        num_actors=layout.get("num_actors", 1),
        serial=layout.get("serial", False),
        on_window=_record(windows),
    )
    prev_last = None
    expected_step = np.zeros(n)  # every env starts its first episode at step 0
    for window, win in enumerate(windows):
        obs, act, rew = win["obs"], win["actions"], win["reward"]
        assert obs.shape[:2] == (T + 1, n) and act.shape == (T, n)  # exactly num_envs x alpha per update
        if prev_last is not None:  # the window starts where the last one ended
            assert np.array_equal(obs[0], prev_last)
        for t in range(T):
            step = obs[t, :, 1]
            assert np.array_equal(step, expected_step), (window, t)
            # the reward echoes the observation the action was taken on, and that action
            assert np.array_equal(rew[t], step * 10 + act[t]), (window, t)
            ended = win["terminated"][t] | win["truncated"][t]
            assert np.array_equal(ended, step + 1 == L)
            truncated = win["truncated"][t]
            assert np.all(win["final_obs"][t, truncated, 1] == L)
            expected_step = np.where(ended, 0, step + 1)
        prev_last = obs[T]
    tags = windows[0]["obs"][0, :, 0]
    assert len(set(tags.tolist())) == n  # each env got its own seed
