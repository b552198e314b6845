"""Recurrent policies (``--recurrent gru|lstm``, issue 17): the state of every env lives in the shared
buffers, is reset where an episode begins and carried across windows, and the learner re-runs each env's
window from its state at the window start. So everything a feed-forward run guarantees holds: the
determinism matrix, bitwise resume and crash recovery, and one acting path for predict, eval and export.
"""

import json

import numpy as np
import pytest
import torch
from conftest import assert_sigkill_recovered
from test_determinism import _key
from test_faults import FAULTY, SLOW

import htsrl
from htsrl import Config, train
from htsrl.cli import main
from htsrl.errors import ConfigError
from htsrl.nn import bind_params, build_model

CARTPOLE = dict(env="CartPole-v1", preset="classic-ppo", num_envs=8, alpha=32, total_steps=8 * 32 * 6, seed=3)
MEMORY = dict(env="htsrl/MemoryCue-v0", seed=1, progress=False)


@pytest.mark.parametrize("mode", ["hts", "sync"])
def test_gru_matrix(run, mode):
    ref = run(**CARTPOLE, mode=mode, recurrent="gru", serial=True)
    assert ref["episodes"] > 0 and ref["updates"] == 6
    layouts = [(1, 1), (2, 2), (4, 3)] if mode == "hts" else [(1, 1), (2, 1), (4, 1)]
    for executors, actors in layouts:
        got = run(**CARTPOLE, mode=mode, recurrent="gru", num_executors=executors, num_actors=actors)
        assert _key(got) == _key(ref), (executors, actors)
    feed_forward = run(**CARTPOLE, mode=mode, serial=True)
    assert feed_forward["params_sha256"] != ref["params_sha256"]


@pytest.mark.parametrize("algo", ["a2c", "impala"])
def test_lstm_matrix_for_the_whole_window_algorithms(run, algo):
    cfg = dict(env="CartPole-v1", algo=algo, num_envs=8, alpha=5, total_steps=8 * 5 * 12, seed=2, recurrent="lstm")
    ref = run(**cfg, serial=True)
    for executors, actors in [(1, 1), (4, 3)]:
        assert _key(run(**cfg, num_executors=executors, num_actors=actors)) == _key(ref)


def test_hidden_state_is_reset_at_episode_ends_and_carried_across_windows(run):
    """Read the buffers after every window (lock-step, so the published weights are the ones that
    acted): each row's state is zero exactly where an episode begins, row 0 of a window is the last
    row of the one before (never reset at a window edge), and each row is the network's step from the
    row before, so the learner's re-run from row 0 reproduces what the actors did."""
    seen = {"windows": 0, "carried": 0, "resets": 0}
    previous = {}

    def check(window, bufs, buf):
        T = bufs.alpha
        starts, hidden = bufs.starts[buf], bufs.hidden[buf]
        ends = bufs.terminated[buf] | bufs.truncated[buf]
        assert np.array_equal(starts[1:], ends)  # obs[t + 1] begins an episode iff step t ended one
        zero = ~hidden[:T].any(-1)
        assert np.array_equal(zero, starts[:T]), window  # zeroed exactly where an episode begins
        if window == 0:
            assert starts[0].all()
        else:
            assert np.array_equal(starts[0], previous["starts"])
            kept = ~starts[0]
            assert np.array_equal(hidden[0][kept], previous["hidden"][kept])  # carried, not reset
            seen["carried"] += int(kept.sum())
        seen["resets"] += int(starts[1:T].sum())
        previous.update(starts=starts[T].copy(), hidden=hidden[T].copy())
        model = build_model((4,), 2, recurrent="gru")
        bind_params(model, torch.from_numpy(bufs.published().copy()))
        with torch.no_grad():
            _, values, states = model.sequence(
                torch.from_numpy(bufs.obs[buf, :T]), torch.from_numpy(hidden[0]), torch.from_numpy(starts[:T])
            )
        # row t + 1 holds the state step t left, zeroed once step t + 1 began an episode; row T is
        # zeroed (if at all) when the next window's first step takes it
        masked = torch.where(torch.from_numpy(starts[1:T]).unsqueeze(-1), 0.0, states[: T - 1])
        assert torch.allclose(masked, torch.from_numpy(hidden[1:T]), atol=1e-5)
        assert torch.allclose(states[T - 1], torch.from_numpy(hidden[T]), atol=1e-5)
        assert torch.allclose(values, torch.from_numpy(bufs.value[buf]), atol=1e-5)
        seen["windows"] += 1

    run(**CARTPOLE, mode="sync", recurrent="gru", serial=True, on_window=check)
    assert seen["windows"] == 6 and seen["carried"] > 0 and seen["resets"] > 0


def test_feed_forward_checkpoints_from_before_recurrent_states_still_resume(tmp_path):
    """Format 3 (before this state existed) lacks only the recurrent rows: a feed-forward run resumes
    from it bitwise; a recurrent one would need them and refuses it."""
    from htsrl.checkpoint import load_checkpoint, save_checkpoint

    base = dict(**CARTPOLE, progress=False)
    base["total_steps"] = 8 * 32 * 4
    full = train(Config(**base, run_dir=str(tmp_path / "full")))
    train(Config(**base, run_dir=str(tmp_path / "half"), stop_at_steps=8 * 32 * 2))
    ckpt = load_checkpoint(tmp_path / "half")
    del ckpt["window"]["starts"], ckpt["window"]["hidden"]
    save_checkpoint(tmp_path / "half", {**ckpt, "format": 3})
    resumed = train(Config(**base, run_dir=str(tmp_path / "half")), resume=True)
    assert resumed["params_sha256"] == full["params_sha256"]
    assert resumed["rollout_sha256"] == full["rollout_sha256"]
    train(Config(**base, recurrent="gru", run_dir=str(tmp_path / "gru"), stop_at_steps=8 * 32 * 2))
    ckpt = load_checkpoint(tmp_path / "gru")
    save_checkpoint(tmp_path / "gru", {**ckpt, "format": 3})
    with pytest.raises(ConfigError, match="format 3, this one reads 4"):
        train(Config(**base, recurrent="gru", run_dir=str(tmp_path / "gru")), resume=True)


def test_sigkill_of_an_actor_is_recovered_bitwise(tmp_path):
    args = [*FAULTY, *SLOW, "--total-steps", str(4 * 16 * 40), "--recurrent", "gru"]
    assert main(["train", *args, "--run-dir", str(tmp_path / "ref"), "--no-progress"]) == 0
    reference = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert_sigkill_recovered(args, tmp_path / "killed", "actor 0", reference)


def test_async_mode_runs_recurrent(run):
    s = run(
        env="CartPole-v1", mode="async", algo="impala", recurrent="gru", num_envs=8, alpha=16, total_steps=8 * 16 * 6
    )
    assert s["finished"] and s["updates"] == 6


def test_the_memory_task_needs_memory(run):
    """A cue at the first step decides the reward at the last (htsrl/MemoryCue-v0): recurrent PPO (GRU) and
    A2C (LSTM) learn it, feed-forward PPO cannot beat chance (its expected return is 0). PPO's windows
    are short (16 steps), so that its many re-runs of each env's window stay cheap."""
    ppo = dict(**MEMORY, num_envs=8, alpha=16, minibatches=2, total_steps=12288)
    gru = run(**ppo, recurrent="gru")
    lstm = run(**MEMORY, algo="a2c", total_steps=8192, recurrent="lstm")
    feed_forward = run(**ppo)
    assert gru["mean_return_last_100"] >= 0.9, gru
    assert lstm["mean_return_last_100"] >= 0.9, lstm
    assert feed_forward["mean_return_last_100"] < 0.5, feed_forward


def test_predict_eval_and_export_carry_the_state(tmp_path):
    """One acting path: predict with the state passed back, the exported TorchScript and ONNX files, and
    evaluation, on the run's own env."""
    run_dir = tmp_path / "run"
    train(Config(**MEMORY, total_steps=2048, recurrent="lstm", run_dir=str(run_dir)))
    policy = htsrl.load(run_dir)
    assert policy.state_size == 2 * 64
    env = policy.make_env(seed=0)
    obs, _ = env.reset(seed=0)
    state, start, seen = None, True, []
    for _ in range(12):
        action, state = policy.predict(obs, state, episode_start=np.array([start]))
        seen.append((obs.copy(), action, state.copy()))
        obs, _, terminated, truncated, _ = env.step(action)
        start = terminated or truncated
        if start:
            obs, _ = env.reset()
    env.close()
    ts = torch.jit.load(str(policy.export(tmp_path / "p.pt")))
    import onnxruntime

    onnx = onnxruntime.InferenceSession(str(policy.export(tmp_path / "p.onnx", format="onnx")))
    batch_state = np.zeros((1, policy.state_size), np.float32)
    ts_state = torch.zeros(1, policy.state_size)
    for k, (o, action, state) in enumerate(seen):
        if k % 4 == 0:  # episodes of 4 steps: the caller zeros the state where one begins
            batch_state[:] = 0
            ts_state = torch.zeros(1, policy.state_size)
        a, batch_state = onnx.run(None, {"obs": o[None], "state": batch_state})
        t_a, ts_state = ts(torch.from_numpy(o[None]), ts_state)
        assert a[0] == action == t_a[0].item()
        np.testing.assert_allclose(batch_state[0], state, atol=1e-5)
        np.testing.assert_allclose(ts_state[0].numpy(), state, atol=1e-6)
    result = htsrl.evaluate(run_dir, episodes=3)
    assert result["episodes"] == 3 and result["mean_length"] == 4


def test_predict_refuses_a_state_of_the_wrong_shape(tmp_path):
    train(Config(**MEMORY, total_steps=512, recurrent="gru", run_dir=str(tmp_path)))
    policy = htsrl.load(tmp_path)
    with pytest.raises(ConfigError, match=r"this policy's state is \(64,\)"):
        policy.predict(np.zeros(2, np.float32), np.zeros(3, np.float32))


def test_an_unknown_core_is_refused_before_start(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--env", "CartPole-v1", "--recurrent", "transformer", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1
    assert "argument --recurrent: invalid choice: 'transformer'" in err
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="--recurrent must be one of none, gru, lstm"):
        train(Config(env="CartPole-v1", recurrent="rnn", run_dir=str(tmp_path / "r")))


def test_minibatches_that_split_env_columns_are_refused_before_start(tmp_path, capsys):
    args = ["--env", "CartPole-v1", "--recurrent", "gru", "--num-envs", "4", "--minibatches", "8"]
    assert main(["train", *args, "--run-dir", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "PPO minibatches are whole env columns" in err
    assert "--num-envs 4 must be divisible by --minibatches 8" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("core", ["gru", "lstm"])
def test_a_truncated_episode_bootstraps_from_its_final_observation_with_the_state_it_had(core):
    """A time limit is no terminal state: the reward at the truncated step is topped up with the value of the
    env's final observation, stepped from the state the episode had reached there (after its last step),
    not from a reset state (that episode goes on in the value's eyes; the next stored row is a new one)."""
    from htsrl.algos.returns import Window, bootstrap_values

    torch.manual_seed(0)
    model = build_model((4,), 2, recurrent=core)
    T, N, S = 3, 2, model.state_size
    starts = torch.zeros(T + 1, N, dtype=torch.bool)
    starts[2, 0] = True  # env 0 was truncated at step 1, so its next row begins an episode
    truncated = torch.zeros(T, N, dtype=torch.bool)
    truncated[1, 0] = True
    hidden = torch.zeros(T + 1, N, S)
    hidden[0] = torch.randn(N, S)  # the window starts mid-episode, with a state of its own
    w = Window(
        obs=torch.randn(T + 1, N, 4),
        final_obs=torch.randn(T, N, 4),
        actions=torch.zeros(T, N, dtype=torch.int64),
        logp=torch.zeros(T, N),
        reward=torch.zeros(T, N),
        terminated=torch.zeros(T, N, dtype=torch.bool),
        truncated=truncated,
        value=torch.zeros(T, N),
        starts=starts,
        hidden=hidden,
    )
    _, trunc = bootstrap_values(model, w)
    with torch.no_grad():  # env 0 by hand: steps 0 and 1 from hidden[0], then its final observation
        state = hidden[0, :1]
        for t in (0, 1):
            *_, state = model.step(w.obs[t, :1], state, starts[t, :1])
        _, want, _, _ = model.step(w.final_obs[1, :1], state, torch.zeros(1, dtype=torch.bool))
        _, from_reset, _, _ = model.step(w.final_obs[1, :1], state, torch.ones(1, dtype=torch.bool))
    assert torch.allclose(trunc[1, 0], want[0], atol=1e-6)
    assert not torch.allclose(want, from_reset, atol=1e-3)  # the state matters: the test can tell them apart
    assert trunc[0].abs().sum() == 0 and trunc[2].abs().sum() == 0 and trunc[1, 1] == 0  # nowhere else
