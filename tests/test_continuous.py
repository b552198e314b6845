"""Box (diagonal Gaussian) and MultiDiscrete (independent categoricals) actions: the distributions
against torch.distributions, the normal draws from the per-env streams, clipping at the env only, the
determinism matrix, resume, raw mode, the Python API and export, refused spaces."""

from __future__ import annotations

import csv
import itertools
import math

import numpy as np
import pytest
import torch

from htsrl import Config, train
from htsrl.distributions import (
    BOX,
    MULTI_DISCRETE,
    ActionSpec,
    Categorical,
    DiagGaussian,
    MultiCategorical,
    action_spec,
    distribution,
    greedy,
)
from htsrl.engine.streams import ActionStreams, sample

FIELDS = ("params_sha256", "rollout_sha256", "episodes", "mean_return_last_100", "updates")
PENDULUM = dict(
    env="Pendulum-v1", num_envs=4, alpha=16, total_steps=4 * 16 * 4, seed=3, epochs=2, minibatches=4, progress=False
)
BOX_SPEC = ActionSpec(BOX, low=(-0.5, -1.0), high=(0.5, 1.0))


def _key(summary):
    return {k: summary[k] for k in FIELDS}


# -- the distributions
def test_gaussian_log_prob_and_entropy_match_torch_normal():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(64, 3, generator=g)
    logstd = torch.randn(3, generator=g) * 0.5
    head = torch.cat([mean, logstd.expand_as(mean)], -1)
    actions = torch.randn(64, 3, generator=g) * 2
    ref = torch.distributions.Normal(mean, logstd.exp().expand_as(mean))
    dist = DiagGaussian(head)
    torch.testing.assert_close(dist.log_prob(actions), ref.log_prob(actions).sum(-1))
    torch.testing.assert_close(dist.entropy(), ref.entropy().sum(-1))
    torch.testing.assert_close(dist.entropy_sum(), ref.entropy().sum())
    assert torch.equal(dist.mode(), mean)


def test_gaussian_sample_is_mean_plus_std_times_the_inverse_normal_cdf():
    mean, logstd = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.1, -0.3]])
    u = torch.tensor([[0.2, 0.9]], dtype=torch.float64)
    actions, logp = DiagGaussian(torch.cat([mean, logstd], -1)).sample(u)
    z = torch.tensor(
        [math.sqrt(2) * torch.special.erfinv(torch.tensor(2 * p - 1.0, dtype=torch.float64)) for p in (0.2, 0.9)]
    )
    torch.testing.assert_close(actions, mean + logstd.exp() * z.float())
    ref = torch.distributions.Normal(mean, logstd.exp())
    torch.testing.assert_close(logp, ref.log_prob(actions).sum(-1))
    assert torch.isfinite(
        DiagGaussian(torch.zeros(2, 2)).sample(torch.tensor([[0.0], [1.0]], dtype=torch.float64))[0]
    ).all()


def test_multicategorical_matches_torch_categoricals():
    nvec = (3, 4, 2)
    g = torch.Generator().manual_seed(1)
    head = torch.randn(50, sum(nvec), generator=g)
    refs = [torch.distributions.Categorical(logits=h) for h in head.split(list(nvec), -1)]
    actions = torch.stack([r.sample() for r in refs], -1)
    dist = MultiCategorical(head, nvec)
    torch.testing.assert_close(dist.log_prob(actions), sum(r.log_prob(actions[:, k]) for k, r in enumerate(refs)))
    torch.testing.assert_close(dist.entropy(), sum(r.entropy() for r in refs))
    assert torch.equal(dist.mode(), torch.stack([h.argmax(-1) for h in head.split(list(nvec), -1)], -1))
    # each sub-action by inverse CDF at its own uniform, as a Discrete action is drawn
    u = torch.rand(50, 3, generator=g, dtype=torch.float64)
    got, logp = dist.sample(u)
    for k, h in enumerate(head.split(list(nvec), -1)):
        assert torch.equal(got[:, k], sample(h, u[:, k])[0])
    torch.testing.assert_close(logp, dist.log_prob(got))


def test_categorical_is_the_inverse_cdf_sampler_of_old():
    logits = torch.randn(20, 5, generator=torch.Generator().manual_seed(2))
    u = torch.rand(20, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    logp_all = torch.log_softmax(logits, -1)
    cdf = logp_all.double().exp().cumsum(-1)
    expected = (cdf < u.unsqueeze(-1)).sum(-1).clamp_(max=4)
    actions, logp = Categorical(logits).sample(u)
    assert torch.equal(actions, expected)
    assert torch.equal(logp, logp_all.gather(-1, expected.unsqueeze(-1)).squeeze(-1))


def test_normal_draws_from_the_per_env_streams_have_standard_moments():
    """The uniforms each env draws, one per action dimension, turned into the Gaussian's noise."""
    T, n, d = 4000, 4, 3
    u = np.empty((T, n, d))
    ActionStreams(seed=7, num_envs=n).fill(u)
    actions, _ = DiagGaussian(torch.zeros(T * n, 2 * d)).sample(torch.from_numpy(u.reshape(-1, d)))
    z = actions.double().numpy()
    assert np.abs(z.mean(0)).max() < 0.05  # standard error 1/sqrt(16000) = 0.008
    assert np.abs(z.std(0) - 1).max() < 0.05
    assert abs(np.mean(z**3)) < 0.1 and abs(np.mean(z**4) - 3) < 0.3  # skew 0, kurtosis 3
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.05  # dimensions independent


def test_one_uniform_per_step_keeps_the_discrete_layout_and_stream():
    """Discrete: (alpha, n) uniforms, the env's next alpha draws (the layout and numbers of old);
    vectors: the env's draws step by step, consecutive in its stream."""
    a, b = np.empty((5, 2)), np.empty((5, 2, 3))
    ActionStreams(1, 2).fill(a)
    ActionStreams(1, 2).fill(b)
    ref = ActionStreams(1, 2).rngs[1]
    assert np.array_equal(a[:, 1], ref.random(5))
    assert np.array_equal(b[:, 1].ravel(), ActionStreams(1, 2).rngs[1].random(15))


def test_action_specs_of_spaces():
    import gymnasium as gym

    assert action_spec(gym.spaces.Discrete(4)) == ActionSpec.discrete(4)
    md = action_spec(gym.spaces.MultiDiscrete([3, 5]))
    assert md.kind == MULTI_DISCRETE and md.nvec == (3, 5) and md.num_outputs == 8 and md.uniform_shape == (2,)
    box = action_spec(gym.spaces.Box(-np.inf, np.inf, (2,), np.float32))
    assert box.kind == BOX and box.action_dtype == np.float32 and box.uniform_shape == (2,)
    assert np.array_equal(box.to_env(np.array([[1e6, -1e6]], np.float32)), [[1e6, -1e6]])  # inf: no clip
    for space in (
        gym.spaces.Dict({"a": gym.spaces.Discrete(2)}),
        gym.spaces.Tuple([gym.spaces.Discrete(2)]),
        gym.spaces.Box(0, 1, (2, 2)),
        gym.spaces.Discrete(3, start=1),
    ):
        assert action_spec(space) is None, space


def test_raw_actions_with_infinite_bounds_are_normal_draws():
    spec = ActionSpec(BOX, low=(-np.inf, -1.0), high=(np.inf, 3.0))
    u = np.random.default_rng(0).random((20000, 2))
    a = spec.random_actions(u)
    assert a.dtype == np.float32 and np.isfinite(a).all()
    assert abs(a[:, 0].mean()) < 0.05 and abs(a[:, 0].std() - 1) < 0.05  # unbounded: standard normal
    assert a[:, 1].min() >= -1 and a[:, 1].max() <= 3 and abs(a[:, 1].mean() - 1) < 0.05  # uniform in bounds


def test_greedy_box_action_is_the_mean_clipped_to_the_bounds():
    head = torch.tensor([[0.7, -0.2, 0.0, 0.0], [-0.1, -3.0, 0.0, 0.0]])
    assert torch.equal(greedy(BOX_SPEC, head), torch.tensor([[0.5, -0.2], [-0.1, -1.0]]))
    assert torch.equal(distribution(BOX_SPEC, head).mode(), head[:, :2])


# -- in training
def test_the_env_gets_the_clipped_sample_and_the_buffer_keeps_the_sample(run):
    """htsrl/BoxEcho-v0 returns the action it received: it is the buffer's sample clipped to the bounds,
    and the buffer's samples go outside them (with the initial std of 1, often)."""
    seen = {"outside": 0, "checked": 0}
    low, high = np.array(BOX_SPEC.low, np.float32), np.array(BOX_SPEC.high, np.float32)

    def check(window, bufs, buf):
        acts = bufs.actions[buf]
        assert acts.dtype == np.float32 and acts.shape == (bufs.alpha, bufs.num_envs, 2)
        for t in range(bufs.alpha):
            for i in range(bufs.num_envs):
                received = bufs.final_obs[buf, t, i, :2] if bufs.truncated[buf, t, i] else bufs.obs[buf, t + 1, i, :2]
                assert np.array_equal(received, np.clip(acts[t, i], low, high))
                seen["checked"] += 1
        seen["outside"] += int(((acts < low) | (acts > high)).any(-1).sum())

    for serial in (True, False):
        run(env="htsrl/BoxEcho-v0", num_envs=4, alpha=8, total_steps=4 * 8 * 3, serial=serial, on_window=check)
    assert seen["outside"] > 10 and seen["checked"] == 2 * 3 * 8 * 4


def test_stored_log_probs_are_the_learners_of_the_unclipped_samples(run):
    """Lock-step: the actors' log-probabilities equal the learner's on the stored (unclipped) actions."""
    from htsrl.nn import bind_params, build_model

    def check(window, bufs, buf):
        model = build_model((3,), BOX_SPEC)
        bind_params(model, bufs.params_tensor(int(bufs.params_slot[0])))
        head, _ = model(torch.from_numpy(bufs.obs[buf, :-1]).flatten(0, 1))
        logp = DiagGaussian(head).log_prob(torch.from_numpy(bufs.actions[buf]).flatten(0, 1))
        torch.testing.assert_close(logp.view(bufs.alpha, -1), torch.from_numpy(bufs.logp[buf]), rtol=1e-5, atol=1e-5)

    run(env="htsrl/BoxEcho-v0", mode="sync", num_envs=4, alpha=8, total_steps=4 * 8 * 2, serial=True, on_window=check)


@pytest.mark.parametrize("mode", ["hts", "sync"])
def test_pendulum_matrix(run, mode):
    ref = run(**PENDULUM, mode=mode, serial=True)
    assert ref["updates"] == 4
    layouts = itertools.product([1, 2], [1, 2]) if mode == "hts" else [(1, 1), (2, 1)]
    for executors, actors in layouts:
        got = run(**PENDULUM, mode=mode, num_executors=executors, num_actors=actors)
        assert _key(got) == _key(ref), (executors, actors)
    other = run(**{**PENDULUM, "seed": 4}, mode=mode, serial=True)
    assert other["params_sha256"] != ref["params_sha256"]


@pytest.mark.parametrize("algo", ["a2c", "impala"])
def test_pendulum_a2c_and_impala_are_layout_deterministic(run, algo):
    cfg = dict(env="Pendulum-v1", algo=algo, num_envs=4, alpha=5, total_steps=4 * 5 * 6, seed=2)
    ref = run(**cfg, serial=True)
    assert ref["updates"] == 6
    assert _key(run(**cfg, num_executors=2, num_actors=2)) == _key(ref)


def test_multidiscrete_is_layout_deterministic_and_raw_mode_acts(run):
    cfg = dict(env="htsrl/MultiDiscreteEcho-v0", num_envs=4, alpha=8, total_steps=4 * 8 * 3, seed=5, epochs=2)
    seen = []

    def check(window, bufs, buf):
        acts = bufs.actions[buf]
        assert acts.dtype == np.int64 and acts.shape == (bufs.alpha, bufs.num_envs, 2)
        assert (acts >= 0).all() and (acts < np.array([3, 4])).all()
        seen.append(acts.copy())

    ref = run(**cfg, serial=True, on_window=check)
    assert _key(run(**cfg, num_executors=2, num_actors=2)) == _key(ref)
    every = np.concatenate(seen).reshape(-1, 2)
    assert set(every[:, 1]) == {0, 1, 2, 3}  # the sub-actions are all drawn
    seen.clear()
    run(**cfg, mode="raw", serial=True, on_window=check)
    every = np.concatenate(seen).reshape(-1, 2)
    assert set(every[:, 0]) == {0, 1, 2} and set(every[:, 1]) == {0, 1, 2, 3}


def test_raw_mode_box_actions_are_uniform_in_the_bounds(run):
    seen = []
    run(
        env="htsrl/BoxEcho-v0",
        mode="raw",
        num_envs=4,
        alpha=50,
        total_steps=4 * 50 * 2,
        serial=True,
        on_window=lambda w, bufs, buf: seen.append(bufs.actions[buf].copy()),
    )
    a = np.concatenate(seen).reshape(-1, 2)
    assert (a >= np.array(BOX_SPEC.low)).all() and (a <= np.array(BOX_SPEC.high)).all()
    assert abs(a[:, 0].mean()) < 0.05 and abs(a[:, 1].std() - 2 / math.sqrt(12)) < 0.05


def test_mujoco_matrix(run):
    import mujoco  # noqa: F401  (in the test extra: this test runs in CI, it does not skip)

    cfg = dict(env="HalfCheetah-v5", num_envs=4, alpha=16, total_steps=4 * 16 * 3, seed=1, epochs=1, minibatches=4)
    for mode in ("hts", "sync"):
        ref = run(**cfg, mode=mode, serial=True)
        assert ref["updates"] == 3
        layouts = [(1, 1), (2, 2)] if mode == "hts" else [(2, 1)]
        for executors, actors in layouts:
            assert _key(run(**cfg, mode=mode, num_executors=executors, num_actors=actors)) == _key(ref), mode


# -- the Python API and export
def test_predict_and_export_on_a_pendulum_run(tmp_path):
    import htsrl

    run_dir = tmp_path / "run"
    train(Config(**{**PENDULUM, "total_steps": 4 * 16 * 2}, run_dir=str(run_dir)))
    policy = htsrl.load(run_dir)
    assert policy.action_spec.kind == BOX and policy.action_spec.low == (-2.0,)
    env = policy.make_env(seed=0)
    obs, _ = env.reset()
    one = policy.predict(obs)
    assert one.shape == (1,) and one.dtype == np.float32
    batch = np.stack([env.observation_space.sample() for _ in range(64)]).astype(np.float32)
    greedy_actions = policy.predict(batch)
    assert greedy_actions.shape == (64, 1) and np.abs(greedy_actions).max() <= 2.0
    # the deterministic action is the mean, clipped to the bounds
    with torch.no_grad():
        head, _ = policy.network(torch.from_numpy(batch))
    assert np.array_equal(greedy_actions, head[:, :1].clamp(-2, 2).numpy())
    # stochastic: clipped, reproducible from the generator
    a1 = policy.predict(batch, deterministic=False, generator=torch.Generator().manual_seed(5))
    a2 = policy.predict(batch, deterministic=False, generator=torch.Generator().manual_seed(5))
    assert np.array_equal(a1, a2) and np.abs(a1).max() <= 2.0 and not np.array_equal(a1, greedy_actions)
    obs, *_ = env.step(one)
    env.close()

    ts = torch.jit.load(str(policy.export(tmp_path / "p.pt", "torchscript")))
    assert np.array_equal(ts(torch.from_numpy(batch)).numpy(), greedy_actions)
    onnxruntime = pytest.importorskip("onnxruntime")
    sess = onnxruntime.InferenceSession(str(policy.export(tmp_path / "p.onnx", "onnx")))
    got = sess.run(None, {"obs": batch})[0]
    assert got.shape == (64, 1) and np.allclose(got, greedy_actions, atol=1e-5)
    result = htsrl.evaluate(run_dir, episodes=2)
    assert len(result["scores"]) == 2 and all(np.isfinite(result["scores"]))


def test_multidiscrete_predict_and_export(tmp_path):
    import htsrl

    run_dir = tmp_path / "md"
    train(
        Config(
            env="htsrl/MultiDiscreteEcho-v0", num_envs=4, alpha=8, total_steps=64, progress=False, run_dir=str(run_dir)
        )
    )
    policy = htsrl.load(run_dir)
    batch = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    actions = policy.predict(batch)
    assert actions.shape == (16, 2) and actions.dtype == np.int64
    sampled = policy.predict(batch[0], deterministic=False)
    assert sampled.shape == (2,) and 0 <= sampled[0] < 3 and 0 <= sampled[1] < 4
    ts = torch.jit.load(str(policy.export(tmp_path / "p.pt")))
    assert np.array_equal(ts(torch.from_numpy(batch)).numpy(), actions)


# -- refused
def test_dict_actions_and_images_with_box_actions_are_refused(tmp_path, capsys):
    import gymnasium as gym

    from htsrl.cli import main
    from htsrl.envs import _env_info
    from htsrl.errors import ConfigError

    code = main(["train", "--run-dir", str(tmp_path / "r"), "--no-progress", "--env", "htsrl/DictActions-v0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Dict" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()
    image = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    with pytest.raises(ConfigError, match="image observations"):
        _env_info("x", image, gym.spaces.Box(-1, 1, (2,), np.float32))


def test_a_missing_mujoco_install_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    import gymnasium as gym

    import htsrl.envs
    from htsrl.cli import main

    def no_mujoco(*args, **kwargs):
        raise gym.error.DependencyNotInstalled('MuJoCo is not installed, run `pip install "gymnasium[mujoco]"`')

    monkeypatch.setattr(htsrl.envs, "make_env", no_mujoco)
    code = main(["train", "--run-dir", str(tmp_path / "r"), "--no-progress", "--env", "Hopper-v5"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pip install -e '.[mujoco]'" in err, err
    assert not (tmp_path / "r").exists()


# -- learning (not timed)
def test_hts_ppo_learns_pendulum(run, tmp_path):
    """PPO in HTS mode with the pendulum-ppo preset (SB3 zoo's Pendulum-v1 setting, no gSDE) and its
    100k-step budget: the mean return of the last 100 episodes (the last 20k steps) beats -400 (random
    actions: about -1200). Measured: -267 (seed 1).
    One group of 4 envs and one learner thread keep it near a minute on one busy core."""
    s = run(
        env="Pendulum-v1",
        total_steps=100_000,
        seed=1,
        serial=True,
        num_executors=1,
        envs_per_group=4,
        learner_threads=1,
        run_dir=str(tmp_path / "pendulum"),
    )
    assert s["env_steps"] == 102_400  # 25 windows of 4 x 1024
    assert '"preset": "pendulum-ppo"' in (tmp_path / "pendulum" / "config.json").read_text()
    with open(tmp_path / "pendulum" / "progress.csv") as f:
        curve = [float(r["charts/mean_return_last_100"]) for r in csv.DictReader(f) if r["charts/mean_return_last_100"]]
    assert curve[0] < -900, curve[0]  # it starts random
    assert curve[-1] > -400, f"mean return of the last 100 episodes: {curve[-1]:.1f}"
