"""Google Research Football: wrapper API, per-episode engine seeding, an HTS-PPO smoke run, bad input."""

import json
import os

import numpy as np
import pytest

from htsrl.cli import main
from htsrl.envs import EPISODE_KEY, make_env
from htsrl.envs.football import football_installed

if not football_installed():
    if os.environ.get("HTSRL_REQUIRE_FOOTBALL"):
        raise RuntimeError("gfootball is required here (HTSRL_REQUIRE_FOOTBALL=1) but does not import")
    pytest.skip("gfootball not installed (scripts/install_football.sh)", allow_module_level=True)


def _rollout(seed, steps=200, representation="extracted"):
    env = make_env("football/academy_3_vs_1_with_keeper", {"representation": representation})
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    observations, rewards, resets = [obs], [], 0
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(19)))
        assert isinstance(terminated, bool) and truncated is False
        observations.append(obs)
        rewards.append(reward)
        if terminated:
            resets += 1
            obs, _ = env.reset(seed=seed * 1000 + resets)
            observations.append(obs)
    env.close()
    return np.stack(observations), np.array(rewards)


def test_api_and_spaces():
    env = make_env("football/academy_empty_goal_close")
    obs, info = env.reset(seed=0)
    assert obs.shape == (16, 72, 96) and obs.dtype == np.uint8 and isinstance(info, dict)
    assert env.action_space.n == 19 and env.observation_space.contains(obs)
    for _ in range(500):  # the episode ends (a goal, or the ball out) and reports the score difference
        obs, r, term, trunc, info = env.step(12)  # 12 = shot
        if term:
            assert info[EPISODE_KEY]["s"] in (-1.0, 0.0, 1.0)
            break
    else:
        pytest.fail("academy episode never ended")
    env.close()
    vec = make_env("football/academy_empty_goal_close", {"representation": "simple115", "rewards": "scoring"})
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (115,) and obs.dtype == np.float32
    vec.close()


def test_same_seed_same_first_200_steps():
    obs_a, rew_a = _rollout(seed=3)
    obs_b, rew_b = _rollout(seed=3)
    obs_c, _ = _rollout(seed=4)
    assert np.array_equal(obs_a, obs_b) and np.array_equal(rew_a, rew_b)
    assert not np.array_equal(obs_a, obs_c)


def test_an_episode_does_not_depend_on_the_episodes_before_it():
    """Resume and crash recovery rebuild an env's current episode in a fresh env from the episode's seed
    and actions. gfootball draws its team-processing order from the seed of the env's first episode
    only, unless told per episode: an episode with a seed of the other parity then diverged."""

    def play(env, seed, actions=None, steps=120):
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        seen, taken = [obs], []
        for t in range(steps if actions is None else len(actions)):
            a = int(rng.integers(19)) if actions is None else actions[t]
            obs, _, terminated, truncated, _ = env.step(a)
            seen.append(obs)
            taken.append(a)
            if terminated or truncated:
                break
        return np.stack(seen), taken

    env = make_env("football/academy_run_to_score_with_keeper")
    play(env, seed=2)  # first episode: an even seed
    later, actions = play(env, seed=3)  # an odd seed, after it
    env.close()
    fresh = make_env("football/academy_run_to_score_with_keeper")
    rebuilt, _ = play(fresh, seed=3, actions=actions)
    fresh.close()
    assert len(actions) > 10
    assert np.array_equal(rebuilt, later)


def test_hts_ppo_smoke_and_determinism(run):
    cfg = dict(
        env="football/academy_3_vs_1_with_keeper",
        num_envs=4,
        alpha=32,
        total_steps=4 * 32 * 8,
        epochs=1,
        minibatches=2,
        seed=2,
    )
    a = run(**cfg, num_executors=2, num_actors=1)
    b = run(**cfg, num_executors=1, num_actors=2)
    assert a["updates"] == 8 and a["params_sha256"] == b["params_sha256"]
    assert a["rollout_sha256"] == b["rollout_sha256"] and a["episodes"] == b["episodes"] > 0
    assert a["mean_score_last_100"] is not None  # the football metric is reported


@pytest.mark.parametrize(
    "args,message",
    [
        (["--env", "football/academy_4_vs_4"], "unknown env id 'football/academy_4_vs_4'"),
        (
            ["--env", "football/academy_empty_goal", "--env-kwargs", '{"representation": "pixels"}'],
            "unknown football representation 'pixels'",
        ),
        (
            ["--env", "football/academy_empty_goal", "--env-kwargs", '{"rewards": "goals"}'],
            "unknown football rewards 'goals'",
        ),
    ],
)
def test_bad_football_input(tmp_path, capsys, args, message):
    assert main(["train", "--run-dir", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_football_not_installed_message(tmp_path, capsys, monkeypatch):
    import htsrl.envs.football as fb

    monkeypatch.setattr(fb, "football_installed", lambda: False)
    assert main(["train", "--env", "football/academy_empty_goal", "--run-dir", str(tmp_path / "r")]) == 2
    assert "scripts/install_football.sh" in capsys.readouterr().err


# --- several controlled players (left_players / right_players): one buffer column per player

THREE = dict(
    env="football/academy_3_vs_1_with_keeper",
    env_kwargs={"left_players": 3, "representation": "simple115"},
    num_envs=6,  # 2 games of 3 players
    alpha=32,
    total_steps=6 * 32 * 6,
    epochs=1,
    minibatches=2,
    seed=4,
)


def test_an_env_of_three_players_gives_three_of_everything():
    env = make_env("football/academy_3_vs_1_with_keeper", {"left_players": 3})
    assert env.unwrapped.players == 3 and env.unwrapped.single_observation_space.shape == (16, 72, 96)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (3, 16, 72, 96) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    assert not np.array_equal(obs[0], obs[1])  # each player's own view (its active-player plane)
    obs, reward, terminated, truncated, info = env.step(np.array([0, 1, 2]))
    assert obs.shape == (3, 16, 72, 96) and reward.shape == (3,) and isinstance(terminated, bool)
    env.close()
    both = make_env(
        "football/academy_3_vs_1_with_keeper", {"left_players": 2, "right_players": 2, "representation": "simple115"}
    )
    obs, _ = both.reset(seed=1)
    assert obs.shape == (4, 115) and both.action_space.nvec.tolist() == [19] * 4
    # a goal gives the right team's players the negated reward; the episode's return is the left team's
    assert both.unwrapped.team_reward(np.array([1.0, 1.0, -1.0, -1.0])) == 1.0
    both.close()


def test_a_player_set_steps_whole_games_and_reports_each_episode_once():
    from htsrl.envs import EPISODE_KEY, make_env_set

    kwargs = {"left_players": 3, "representation": "simple115"}
    players = make_env_set("football/academy_3_vs_1_with_keeper", kwargs, "python", range(3, 9))
    alone = make_env("football/academy_3_vs_1_with_keeper", kwargs, index=3)  # the same game, by itself
    first = [players.envs[c].reset(seed=11)[0] for c in range(3, 9)]
    assert np.array_equal(np.stack(first[:3]), alone.reset(seed=11)[0])
    rng, ends = np.random.default_rng(0), 0
    for _ in range(200):
        actions = rng.integers(0, 19, 6)
        results = players.step(range(3, 9), actions)
        obs, reward, terminated, _, info = alone.step(actions[:3])
        assert np.array_equal(np.stack([r[0] for r in results[:3]]), obs)
        assert [r[1] for r in results[:3]] == reward.tolist()
        for game in (0, 3):  # a game's columns end together; only its first column carries the episode
            done = {r[2] for r in results[game : game + 3]}
            assert len(done) == 1
            assert [EPISODE_KEY in r[4] for r in results[game : game + 3]] == [done == {True}, False, False]
            if done == {True}:
                ends += 1
                for c in range(3 + game, 6 + game):
                    players.envs[c].reset(seed=ends)
                if game == 0:
                    alone.reset(seed=ends)
    assert ends >= 2
    with pytest.raises(RuntimeError, match="reset without its game"):
        players.envs[4].reset(seed=0)
    with pytest.raises(RuntimeError, match="split a game"):
        players.step(range(3, 5), np.zeros(2, np.int64))
    players.close()
    alone.close()


@pytest.mark.parametrize("mode", ["hts", "sync"])
def test_three_players_matrix(run, mode):
    from test_determinism import _key

    ref = run(**THREE, mode=mode, serial=True)
    assert ref["updates"] == 6 and ref["episodes"] > 0
    layouts = [(1, 1), (2, 2)] if mode == "hts" else [(1, 1), (2, 1)]
    for executors, actors in layouts:
        got = run(**THREE, mode=mode, num_executors=executors, num_actors=actors, envs_per_group=3)
        assert _key(got) == _key(ref), (executors, actors)


def test_episodes_are_counted_once_per_game(run):
    ended_games = []

    def count(window, bufs, buf):
        done = bufs.terminated[buf] | bufs.truncated[buf]  # (alpha, columns)
        games = done.reshape(done.shape[0], -1, 3)
        assert (games == games[:, :, :1]).all()  # a game's players end together
        assert np.isnan(bufs.ep_return[buf].reshape(done.shape[0], -1, 3)[:, :, 1:]).all()
        ended_games.append(int(games[:, :, 0].sum()))

    summary = run(**THREE, on_window=count)
    assert summary["episodes"] == sum(ended_games) > 0


def test_three_players_resume_is_bitwise(tmp_path):
    """The resume matrix's check (tests/test_resume.py) with three controlled players: each game is
    replayed once for its three columns, in other layouts."""
    from conftest import assert_resume_is_bitwise

    layouts = [dict(num_executors=2, num_actors=1), dict(num_executors=1, num_actors=2)]
    full = assert_resume_is_bitwise(tmp_path, (2, 3), layouts, **THREE)
    assert full["episodes"] > 0


def test_three_players_sigkill_of_an_executor_is_recovered_bitwise(tmp_path):
    import time

    from conftest import assert_sigkill_recovered

    args = [
        *("--env", THREE["env"], "--env-kwargs", json.dumps(THREE["env_kwargs"]), "--num-envs", "6"),
        *("--alpha", "32", "--epochs", "1", "--minibatches", "2", "--seed", "4"),
        *("--total-steps", str(6 * 32 * 16), "--num-executors", "2", "--envs-per-group", "3"),
    ]
    assert main(["train", *args, "--run-dir", str(tmp_path / "ref"), "--no-progress"]) == 0
    reference = json.loads((tmp_path / "ref" / "summary.json").read_text())
    progress = tmp_path / "killed" / "progress.csv"

    def a_few_windows_in():  # the games are mid-episode, with histories to replay
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not progress.exists() or len(progress.read_text().splitlines()) < 4):
            time.sleep(0.05)

    assert_sigkill_recovered(args, tmp_path / "killed", "executor 1", reference, when=a_few_windows_in)


def test_three_players_predict_and_evaluate(tmp_path, run):
    import htsrl

    summary = run(**{**THREE, "total_steps": 6 * 32 * 2}, run_dir=str(tmp_path / "r"))
    assert summary["finished"]
    policy = htsrl.load(tmp_path / "r")
    env = policy.make_env(seed=3)
    obs, _ = env.reset()
    assert obs.shape == (3, 115)
    actions = policy.predict(obs, deterministic=True)
    assert actions.shape == (3,)
    env.step(actions)
    env.close()
    result = htsrl.evaluate(tmp_path / "r", episodes=3)
    assert len(result["scores"]) == 3 and "mean_score_difference" in result
    again = htsrl.evaluate(tmp_path / "r", episodes=3)
    assert again["scores"] == result["scores"]


@pytest.mark.parametrize(
    "kwargs,extra,message",
    [
        ({"left_players": 5}, [], "academy_3_vs_1_with_keeper has 4 left and 2 right players"),
        ({"left_players": 0}, [], "left_players must be an integer >= 1, got 0"),
        ({"right_players": 3}, [], "right_players 3 cannot be controlled"),
        ({"left_players": 3}, ["--num-envs", "8"], "must be multiples of 3 (e.g. --num-envs 6 for 2 games)"),
        ({"left_players": 3}, ["--num-envs", "6", "--envs-per-group", "2"], "must be multiples of 3"),
    ],
)
def test_bad_player_counts_are_refused_before_start(tmp_path, capsys, kwargs, extra, message):
    args = ["--env", "football/academy_3_vs_1_with_keeper", "--env-kwargs", json.dumps(kwargs), *extra]
    assert main(["train", "--run-dir", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_preset_counts_games():
    from htsrl.config import Config, resolve

    one = resolve(Config(env="football/academy_3_vs_1_with_keeper"))
    three = resolve(Config(env="football/academy_3_vs_1_with_keeper", env_kwargs={"left_players": 3}))
    assert (one.num_envs, one.envs_per_group) == (16, 4)
    assert (three.num_envs, three.envs_per_group, three.players) == (48, 12, 3)  # 16 games, 4 per group
    assert (
        resolve(Config(env="football/academy_3_vs_1_with_keeper", env_kwargs={"left_players": 3}, num_envs=12)).num_envs
        == 12
    )
