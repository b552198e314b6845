"""``htsrl eval`` measures a policy by the protocol training measures it with (issue 12, item 4).

A policy is played through evaluate() and through the training env path (``make_env_set(...,
training=True)``, reset after every done as the executor does, actions drawn as the actors draw them)
with the same seeds; the true scores, lengths and every observation the policy sees must be identical,
game by game. The seeds and uniform streams of evaluation are pinned here from their definition
(spawn keys 4 and 5 of the run's seed), not taken from htsrl.evaluation.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import htsrl.evaluation as evaluate_mod
from htsrl.config import Config
from htsrl.engine.streams import reset_seed, sample
from htsrl.envs import EPISODE_KEY, make_env_set

pytest.importorskip("ale_py")

ENV = "ALE/Breakout-v5"  # needs FIRE to serve, 5 lives: where the two protocols used to differ
SEED = 3
NUM_ACTIONS = 4


def game_seed(seed: int, episode: int, reset: int) -> int:
    """Evaluation's seeds: spawn key 4 (training uses 0..3)."""
    key = (4, episode) if reset == 0 else (4, episode, reset)
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1)[0])


def game_uniforms(seed: int, episode: int) -> np.random.Generator:
    """Evaluation's action uniforms: spawn key 5, one stream per game."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(5, episode))))


class Policy:
    """A policy the test controls; records a digest of every observation it is shown.

    ``hashed``: a deterministic policy (all mass on an action picked by hashing the observation), so the
    games do not depend on how actions are sampled; else fixed logits, so they depend only on it."""

    def __init__(self, hashed: bool):
        self.hashed = hashed
        self.seen: list[bytes] = []

    def __call__(self, obs: torch.Tensor):
        assert obs.shape[0] == 1
        raw = obs.numpy().tobytes()
        digest = hashlib.blake2b(raw, digest_size=8).digest()
        self.seen.append(digest)
        if self.hashed:
            logits = torch.full((1, NUM_ACTIONS), -1e4)
            logits[0, digest[0] % NUM_ACTIONS] = 0.0
        else:
            logits = torch.log(torch.tensor([[0.3, 0.3, 0.2, 0.2]]))
        return logits, torch.zeros(1)


def training_path(backend: str, episodes: int, policy: Policy) -> list[dict]:
    """Games played as training plays them: one env of the training env set, stepped through the set,
    reset (with the next seed) after every terminated/truncated as EnvGroups.step_group does; the true
    score and length read where the executor reads ep_return / ep_length."""
    env_set = make_env_set(ENV, {}, backend, range(1), training=True)
    env = env_set.envs[0]
    games = []
    try:
        obs, _ = env.reset(seed=game_seed(SEED, 0, 0))
        for e in range(episodes):
            uniforms, resets, steps, lost = game_uniforms(SEED, e), 1, 0, 0
            while True:
                logits, _ = policy(torch.from_numpy(np.asarray(obs)[None]))
                actions, _ = sample(logits, torch.from_numpy(np.array([uniforms.random()])))
                obs, _, terminated, truncated, info = env_set.step(range(1), actions.numpy())[0]
                steps += 1
                episode = info.get(EPISODE_KEY)
                if episode:
                    games.append({"r": episode["r"], "l": episode["l"], "steps": steps, "lives_lost": lost})
                if terminated or truncated:
                    seed = game_seed(SEED, e + 1, 0) if episode else game_seed(SEED, e, resets)
                    resets += 1
                    lost += not episode
                    obs, _ = env.reset(seed=seed)
                if episode:
                    break
    finally:
        env_set.close()
    return games


def eval_path(backend: str, episodes: int, policy: Policy, tmp_path, monkeypatch) -> dict:
    cfg = Config(env=ENV, env_backend=backend, seed=SEED)
    monkeypatch.setattr(evaluate_mod, "load_policy", lambda run_dir, checkpoint: (cfg, policy))
    return evaluate_mod.evaluate(tmp_path, episodes=episodes, max_steps=5_000)


def backends():
    out = ["python"]
    try:
        import envpool  # noqa: F401

        out.append("envpool")
    except ImportError:
        pass
    return out


def assert_same_games(backend, episodes, hashed, tmp_path, monkeypatch):
    reference = Policy(hashed)
    games = training_path(backend, episodes, reference)
    evaluated = Policy(hashed)
    result = eval_path(backend, episodes, evaluated, tmp_path, monkeypatch)
    assert sum(g["lives_lost"] for g in games) > 0  # else the protocols could not differ
    assert result["scores"] == [g["r"] for g in games]
    assert result["mean_length"] == pytest.approx(np.mean([g["l"] for g in games]))
    diverged = next((t for t, (a, b) in enumerate(zip(evaluated.seen, reference.seen)) if a != b), None)
    assert diverged is None and len(evaluated.seen) == len(reference.seen), (
        f"eval showed the policy other observations from step {diverged} on"
    )
    assert result["mean_steps"] == pytest.approx(np.mean([g["steps"] for g in games]))
    return evaluated.seen


@pytest.mark.parametrize("backend", backends())
def test_eval_score_comes_from_the_training_protocol(backend, tmp_path, monkeypatch):
    """Episodic life with FIRE after a lost life, the true score summed over all lives at the real game
    over, the length in training's unit: a deterministic policy gets the same games from both paths."""
    assert_same_games(backend, 3, True, tmp_path, monkeypatch)


def test_eval_samples_actions_as_training_does(tmp_path, monkeypatch):
    """A stochastic policy: eval draws its actions by the actors' inverse CDF, from one uniform stream
    per game (so game e does not depend on how many games are asked for)."""
    two_games = assert_same_games("python", 2, False, tmp_path, monkeypatch)
    one_game = Policy(False)
    eval_path("python", 1, one_game, tmp_path, monkeypatch)
    assert len(two_games) > len(one_game.seen) and two_games[: len(one_game.seen)] == one_game.seen


def test_eval_seeds_are_not_training_seeds():
    train = {reset_seed(SEED, i, k) for i in range(16) for k in range(64)}
    assert not train & {game_seed(SEED, e, k) for e in range(64) for k in range(8)}
    assert evaluate_mod.eval_seed(SEED, 5, 0) == game_seed(SEED, 5, 0)
    assert evaluate_mod.eval_seed(SEED, 5, 2) == game_seed(SEED, 5, 2)


class FixedLogits:
    """A policy of fixed logits; records a digest of every observation it is shown."""

    def __init__(self, logits):
        self.logits = torch.tensor([logits])
        self.seen: list[bytes] = []

    def __call__(self, obs: torch.Tensor):
        self.seen.append(hashlib.blake2b(obs.numpy().tobytes(), digest_size=8).digest())
        return self.logits, torch.zeros(1)


def test_deterministic_eval_takes_the_most_likely_action(tmp_path, monkeypatch):
    """--deterministic plays the most likely action, as predict and the exported files do: the same games
    as a policy with all its mass there. Without it actions are sampled (the default: training's)."""
    cfg = Config(env=ENV, env_backend="python", seed=SEED)

    def play(policy, **kwargs):
        monkeypatch.setattr(evaluate_mod, "load_policy", lambda run_dir, checkpoint: (cfg, policy))
        return evaluate_mod.evaluate(tmp_path, episodes=1, max_steps=5_000, **kwargs)

    greedy, one_hot = FixedLogits([0.0, 2.0, 1.0, 1.0]), FixedLogits([-1e4, 0.0, -1e4, -1e4])
    result = play(greedy, deterministic=True)
    assert result["deterministic"] and result["actions"] == "greedy"
    assert result["scores"] == play(one_hot)["scores"] and greedy.seen == one_hot.seen
    sampled = FixedLogits([0.0, 2.0, 1.0, 1.0])
    assert play(sampled)["actions"] == "sampled" and sampled.seen != greedy.seen
    assert play(FixedLogits([0.0, 2.0, 1.0, 1.0]), greedy=True)["actions"] == "greedy"  # the former name


def test_each_evaluation_is_kept_in_its_own_file(tmp_path, monkeypatch):
    """A second evaluation (here 1 game after 2) never replaces the first: each is a file of its own in
    eval/, named by its time and settings, and the result says which."""
    cfg = Config(env=ENV, env_backend="python", seed=SEED)
    monkeypatch.setattr(evaluate_mod, "load_policy", lambda run_dir, checkpoint: (cfg, FixedLogits([0.0] * 4)))
    two = evaluate_mod.evaluate(tmp_path, episodes=2, max_steps=5_000)
    one = evaluate_mod.evaluate(tmp_path, episodes=1, max_steps=5_000, seed=9)
    again = evaluate_mod.evaluate(tmp_path, episodes=1, max_steps=5_000, seed=9)  # within the same second
    files = sorted((tmp_path / "eval").iterdir())
    assert len(files) == 3 and {two["path"], one["path"], again["path"]} == {str(f) for f in files}
    assert two["path"].endswith(f"_2-games_sampled_seed{SEED}.json") and "_1-game_sampled_seed9" in one["path"]
    kept = json.loads(Path(two["path"]).read_text())
    assert kept["episodes"] == 2 and kept["scores"] == two["scores"] and kept["path"] == two["path"]
    assert not (tmp_path / "eval.json").exists()
