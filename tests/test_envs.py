"""Environment wrappers: Atari preprocessing and true score, synthetic step-time distributions."""

import time

import gymnasium as gym
import numpy as np
import pytest

from htsrl.envs import EPISODE_KEY, make_env, make_env_set, probe_env
from htsrl.envs.synthetic import DISTRIBUTIONS, sample_step_times


@pytest.mark.parametrize(
    "distribution,cv",
    [("exponential", 1.0), ("gamma", 0.3), ("gamma", 2.0), ("lognormal", 0.5), ("lognormal", 3.0), ("constant", 0.0)],
)
def test_synthetic_step_time_moments(distribution, cv):
    rng = np.random.default_rng(0)
    x = sample_step_times(rng, distribution, 0.004, cv if cv else 1.0, size=400_000)
    assert abs(x.mean() / 0.004 - 1) < 0.03
    assert abs(x.std() / x.mean() - cv) < 0.05 * max(cv, 1.0)


def test_synthetic_env_sleeps_its_step_time():
    env = make_env("synthetic/constant", {"mean_s": 0.005})
    env.reset(seed=0)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(100):
        env.step(0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert 0.5 <= wall < 0.75  # sleep overshoots a little, never undershoots
    assert cpu < 0.1 * wall  # sleeping, not spinning


def test_synthetic_straggler():
    slow = make_env("synthetic/straggler", {"mean_s": 0.001, "straggler_factor": 5}, index=0)
    fast = make_env("synthetic/straggler", {"mean_s": 0.001, "straggler_factor": 5}, index=1)
    assert slow.unwrapped.mean_s == pytest.approx(0.005) and fast.unwrapped.mean_s == pytest.approx(0.001)
    assert set(DISTRIBUTIONS) <= {s.split("/")[1] for s in gym.registry if s.startswith("synthetic/")}


@pytest.mark.parametrize("backend", ["python", "envpool"])
def test_atari_preprocessing_and_true_score(backend):
    if backend == "envpool":
        pytest.importorskip("envpool")  # required in CI (tests/test_envpool.py)
    info = probe_env("ALE/Breakout-v5", backend=backend)
    assert info.obs_shape == (4, 84, 84) and info.obs_dtype == np.uint8 and info.num_actions == 4
    envs = make_env_set("ALE/Breakout-v5", {}, backend, range(1))
    env = envs.envs[0]
    obs, _ = env.reset(seed=1)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    rng = np.random.default_rng(0)
    clipped, life_losses, true_score = 0.0, 0, None
    for _ in range(5000):
        obs, r, term, trunc, info = env.step(int(rng.integers(4)))
        assert r in (0.0, 1.0)  # sign-clipped
        clipped += r
        if EPISODE_KEY in info:
            true_score = info[EPISODE_KEY]["r"]
            break
        if term:
            life_losses += 1
            env.reset(seed=2)  # a lost life: the game goes on (the seed is not used)
    envs.close()
    assert life_losses == 4  # five lives: four life losses end a training episode each, the fifth ends the game
    assert true_score is not None and true_score >= clipped  # raw score: bricks are worth 1, 4 or 7


def test_atari_inner_observation_type_does_not_change_the_preprocessed_game():
    """The inner env makes a grayscale observation per emulator frame (cheaper; AtariPreprocessing
    drops it and reads the emulator's screen): every preprocessed step equals the RGB-based one."""
    envs = [make_env("ALE/Breakout-v5", kw) for kw in ({}, {"obs_type": "rgb"})]
    assert envs[0].unwrapped._obs_type == "grayscale"
    first = [env.reset(seed=3)[0] for env in envs]
    assert np.array_equal(*first)
    rng = np.random.default_rng(1)
    for _ in range(1500):
        a = int(rng.integers(4))
        steps = [env.step(a) for env in envs]
        assert np.array_equal(steps[0][0], steps[1][0]) and steps[0][1:4] == steps[1][1:4]
        if steps[0][2] or steps[0][3]:
            assert np.array_equal(*(env.reset(seed=4)[0] for env in envs))


def test_atari_episode_rebuilds_from_its_seed_and_actions():
    """The replay that resume and crash recovery rely on: after several games with cheap reseeding,
    a fresh env reset with the current game's seed and given the same actions is in the same state."""
    from htsrl.engine.history import replay

    rng = np.random.default_rng(0)
    env = make_env("ALE/Breakout-v5")
    reset_index = 0
    env.reset(seed=1000 + reset_index)
    start, actions, dones, games = 0, [], [], 0
    while games < 3 or len(actions) < 120:
        a = int(rng.integers(4))
        obs, _, term, trunc, info = env.step(a)
        actions.append(a)
        dones.append(term or trunc)
        if term or trunc:
            reset_index += 1
            obs, _ = env.reset(seed=1000 + reset_index)
            if EPISODE_KEY in info:  # a real game over: the next game starts from this reset
                games += 1
                start, actions, dones = reset_index, [], []
    fresh = make_env("ALE/Breakout-v5")
    replayed, resets = replay(fresh, lambda k: 1000 + k, start, actions, dones)
    assert resets == reset_index + 1
    assert np.array_equal(replayed, obs)
    assert np.array_equal(fresh.unwrapped.ale.getRAM(), env.unwrapped.ale.getRAM())


class _HeightWidthChannels(gym.Env):
    """An image env in the usual camera layout (H x W x C), which the CNN cannot take as it is."""

    observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


@pytest.mark.parametrize(
    "env_id,message",
    [
        # the id that "did you mean" used to suggest for ALE/Breakot-v5: a torch traceback from the CNN before
        ("Breakout-v4", "Breakout-v4 is one of Gymnasium's older Atari ids (RGB frames, frame skip random 2-4"),
        ("PongNoFrameskip-v0", "takes ALE/Pong-v5 or PongNoFrameskip-v4"),
        ("htsrl-test/HeightWidthChannels-v0", "have shape (64, 64, 3); htsrl's CNN (Nature DQN"),
    ],
)
def test_observations_the_network_cannot_take_are_refused_before_start(tmp_path, capsys, env_id, message):
    from htsrl.cli import main

    if env_id.startswith("htsrl-test/") and env_id not in gym.registry:
        gym.register(env_id, entry_point=_HeightWidthChannels)
    run_dir = tmp_path / "run"
    assert main(["train", "--env", env_id, "--total-steps", "2048", "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not run_dir.exists()  # nothing started, not even the run folder


def test_did_you_mean_suggests_only_ids_htsrl_trains():
    with pytest.raises(Exception, match="did you mean") as refused:
        probe_env("ALE/Breakot-v5")
    assert "ALE/Breakout-v5" in str(refused.value) and "Breakout-v4" not in str(refused.value).replace("ALE/", "")
