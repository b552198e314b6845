"""Observation and reward normalization (issue 16): the statistics against gymnasium's, where they live
(the published weights, the checkpoint, the exported file), and every invariant with them on:
layout determinism, resume and crash recovery bitwise, bad input refused."""

import itertools
import json

import numpy as np
import pytest
import torch
from gymnasium.wrappers.utils import RunningMeanStd as GymRunningMeanStd

from htsrl import Config, train
from htsrl.cli import main
from htsrl.envs import probe_env
from htsrl.nn import bind_params, build_model
from htsrl.normalization import EPS, ObsNormalizer, RewardScaler, RunningMeanStd

FIELDS = ("params_sha256", "rollout_sha256", "episodes", "mean_return_last_100", "updates")
NORM = dict(norm_obs=True, norm_reward=True, norm_clip=10.0)
PENDULUM = dict(
    env="Pendulum-v1", num_envs=4, alpha=16, total_steps=4 * 16 * 4, seed=3, epochs=2, minibatches=4, **NORM
)

PENDULUM_ACTIONS = probe_env("Pendulum-v1", {}, "python").action_spec


def _key(summary):
    return {k: summary[k] for k in FIELDS}


# -- the statistics
def test_running_mean_std_matches_gymnasium():
    rng = np.random.default_rng(0)
    ours, theirs = RunningMeanStd((3,)), GymRunningMeanStd(shape=(3,))
    for n in (1, 7, 64, 300):
        batch = rng.normal(loc=[100.0, -3.0, 0.0], scale=[5.0, 0.01, 1.0], size=(n, 3))
        ours.update(torch.from_numpy(batch))
        theirs.update(batch)
    np.testing.assert_allclose(ours.mean.numpy(), theirs.mean, rtol=1e-12)
    np.testing.assert_allclose(ours.var.numpy(), theirs.var, rtol=1e-10)
    assert ours.count == pytest.approx(theirs.count)


def test_reward_scaler_restarts_the_return_at_terminations_only():
    """gymnasium 1.x NormalizeReward's return, one window at a time."""
    gamma = 0.5
    reward = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    terminated = torch.tensor([[False, False], [True, False], [False, False], [False, False]])
    scaler = RewardScaler(num_envs=2, gamma=gamma, clip=100.0)
    scaled = scaler(reward, terminated)
    # gymnasium.wrappers.NormalizeReward.step: R = R * gamma * (1 - terminated) + r, with this step's flag.
    # env 0: 1, then terminated at row 1: 1 (its own reward), then 1.5, 1.75; env 1: 2, 3, 3.5, 3.75
    returns = np.array([1.0, 1.0, 1.5, 1.75, 2.0, 3.0, 3.5, 3.75])
    expected = GymRunningMeanStd(shape=())
    expected.update(returns)
    std = np.sqrt(expected.var + EPS)
    np.testing.assert_allclose(scaled.numpy(), (reward / std).numpy(), rtol=1e-6)
    np.testing.assert_allclose(scaler.returns.numpy(), [1.75, 3.75])
    clipped = RewardScaler(num_envs=2, gamma=gamma, clip=1.5)(reward, terminated)
    assert clipped.max().item() == 1.5
    np.testing.assert_allclose(clipped.numpy(), (reward / std).clamp(max=1.5).numpy(), rtol=1e-6)


def test_obs_normalizer_clips_and_has_no_gradient():
    norm = ObsNormalizer((2,), clip=5.0)
    rms = RunningMeanStd((2,))
    rms.update(torch.tensor([[0.0, 10.0], [2.0, 30.0]]))
    norm.load_stats(rms)
    out = norm(torch.tensor([[1.0, 20.0], [1000.0, -1000.0]]))
    torch.testing.assert_close(out[0], torch.zeros(2), atol=1e-4, rtol=0)
    assert out[1].tolist() == [5.0, -5.0]
    model = build_model((2,), 3, obs_norm_clip=5.0)
    assert not model.obs_norm.mean.requires_grad and not model.obs_norm.std.requires_grad
    # the statistics are in the published vector (parameters), first, so actors get them with the weights
    assert next(model.parameters()) is model.obs_norm.mean


# -- in the engine
def test_published_statistics_are_those_of_every_window_learned_before(run, tmp_path):
    """Lock-step: window w is acted on with statistics of windows 0..w-1 exactly, read from the weights
    the actors were given (so PPO's first ratio on it is 1); the run's model.pt holds all windows'."""
    seen, checked = [], []

    def check(window, bufs, buf):
        model = build_model((3,), PENDULUM_ACTIONS, obs_norm_clip=10.0)
        bind_params(model, bufs.params_tensor(int(bufs.params_slot[0])).clone())
        expected = RunningMeanStd((3,))
        for obs in seen:
            expected.update(torch.from_numpy(obs))
        torch.testing.assert_close(model.obs_norm.mean, expected.mean.float(), rtol=0, atol=0)
        torch.testing.assert_close(model.obs_norm.std, expected.std.float(), rtol=0, atol=0)
        seen.append(bufs.obs[buf][: bufs.alpha].reshape(-1, 3).astype(np.float64))
        checked.append(window)

    s = run(**PENDULUM, mode="sync", serial=True, on_window=check, run_dir=str(tmp_path / "sync"))
    assert checked == [0, 1, 2, 3] and s["updates"] == 4
    final = RunningMeanStd((3,))
    for obs in seen:
        final.update(torch.from_numpy(obs))
    state = torch.load(tmp_path / "sync" / "model.pt", weights_only=True)
    torch.testing.assert_close(state["obs_norm.mean"], final.mean.float(), rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["hts", "sync"])
def test_pendulum_matrix_with_normalization(run, mode):
    ref = run(**PENDULUM, mode=mode, serial=True)
    layouts = itertools.product([1, 2], [1, 2]) if mode == "hts" else [(2, 1)]
    for executors, actors in layouts:
        assert _key(run(**PENDULUM, mode=mode, num_executors=executors, num_actors=actors)) == _key(ref)
    plain = run(**{**PENDULUM, "norm_obs": False, "norm_reward": False}, mode=mode, serial=True)
    assert plain["params_sha256"] != ref["params_sha256"]  # normalization changed the numbers


def test_crash_recovery_with_normalization_is_bitwise(tmp_path):
    """An env raises once mid-run: the rollout restarts and replays; the learner's statistics are untouched."""
    args = ["--env", "htsrl/Faulty-v0", "--num-envs", "4", "--alpha", "16", "--epochs", "1", "--minibatches", "1"]
    args += ["--total-steps", str(4 * 16 * 12), "--norm-obs", "--norm-reward", "--no-progress"]
    assert main(["train", *args, "--env-kwargs", '{"fail_at": -1}', "--run-dir", str(tmp_path / "ref")]) == 0
    kwargs = json.dumps({"fail_at": 100, "once_file": str(tmp_path / "fired")})
    assert main(["train", *args, "--env-kwargs", kwargs, "--run-dir", str(tmp_path / "r")]) == 0
    ref, got = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("ref", "r"))
    assert got["restarts"] == 1 and _key(got) == _key(ref)


def test_predict_and_export_use_the_frozen_statistics(tmp_path):
    import htsrl

    run_dir = tmp_path / "run"
    train(Config(**{**PENDULUM, "total_steps": 4 * 16 * 2}, run_dir=str(run_dir), progress=False))
    policy = htsrl.load(run_dir)
    mean = policy.network.model.obs_norm.mean.detach().clone()
    assert mean.abs().sum() > 0  # two windows were folded in
    batch = np.random.default_rng(1).normal(size=(32, 3)).astype(np.float32) * 3
    actions = policy.predict(batch)
    by_hand = build_model((3,), policy.action_spec, obs_norm_clip=10.0)
    by_hand.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    with torch.no_grad():
        head, _ = by_hand(torch.from_numpy(batch))
    assert np.array_equal(actions, head[:, :1].clamp(-2, 2).numpy())
    policy.predict(batch)
    torch.testing.assert_close(policy.network.model.obs_norm.mean, mean, rtol=0, atol=0)  # acting never updates
    ts = torch.jit.load(str(policy.export(tmp_path / "p.pt", "torchscript")))
    assert np.array_equal(ts(torch.from_numpy(batch)).numpy(), actions)
    onnxruntime = pytest.importorskip("onnxruntime")
    sess = onnxruntime.InferenceSession(str(policy.export(tmp_path / "p.onnx", "onnx")))
    assert np.allclose(sess.run(None, {"obs": batch})[0], actions, atol=1e-5)


def test_mujoco_preset_normalizes_by_default():
    from htsrl.config import resolve

    cfg = resolve(Config(env="HalfCheetah-v5"))
    assert cfg.preset == "mujoco-ppo" and cfg.norm_obs and cfg.norm_reward and cfg.norm_clip == 10.0
    assert not resolve(Config(env="CartPole-v1")).norm_obs


# -- refused
@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "ALE/Breakout-v5", "--norm-obs"], "--norm-obs normalizes vector observations"),
        (["--env", "CartPole-v1", "--norm-clip", "0"], "--norm-clip must be positive"),
    ],
)
def test_bad_normalization_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    assert main(["train", *args, "--run-dir", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r").exists()
