"""``htsrl eval DIR`` and ``htsrl.evaluate(DIR)``: play the saved policy for K games and report their
true score, measured by the same protocol as the score training reports; ``--video`` records one game
as MP4. Each evaluation is kept in its own file, ``DIR/eval/<time>_<settings>.json`` (see
:func:`result_path`). (The module is not called ``evaluate``: that name is the function
``htsrl.evaluate``, which a submodule of that name would shadow once imported.)

The protocol is training's, step for step, so a policy gets the same numbers from both:

- **Envs.** The run's backend (Python or EnvPool) with the *training* wrappers
  (``make_env_set(..., training=True)``), stepped as the executors step them: for Atari, no-op starts,
  frame skip 4, episodic life, and FIRE after each lost life in games that need it (the Python backend
  also restarts the frame stack there, as in training). An env that reports ``terminated`` or
  ``truncated`` without the game being over (a lost life) is reset at once, as the executor does, and
  the game goes on: the policy never sees those automatic steps (no-op, FIRE) and is never asked to
  press FIRE to serve (a policy trained this way rarely does, and the game would stall until ALE
  truncates it at 108,000 frames).
- **Score.** The true score: unclipped rewards summed over every life, read from
  ``info["htsrl_episode"]`` at the real end of the game, i.e. the number training records as
  ``ep_return`` and reports as ``episodic_return`` / ``mean_return_last_100``. (The per-step rewards
  are sign-clipped as in training; evaluation does not use them.)
- **Length.** ``info["htsrl_episode"]["l"]``, training's ``episodic_length``: emulator frames for
  Atari (the recorder sits below the frame skip, so it counts every frame, no-op starts and automatic
  FIRE steps included: about 4 per agent step; EnvPool counts 4 per step), env steps elsewhere.
  ``mean_steps`` is the number of actions the policy itself chose per game.
- **Actions.** Sampled as the actors sample them (``htsrl.distributions``: inverse CDF of the softmax
  at one uniform per step for Discrete actions, one uniform per sub-action or dimension otherwise), so
  the score is comparable with training's ``mean_return_last_100``; or, with ``deterministic``, the most
  likely action (Box: the mean), as ``predict`` and the exported files act. A Box action reaches the env
  clipped to its bounds, as in training; the observations go through the same
  ``policy.ActingNetwork`` as ``htsrl.load(...).predict`` and the exported files.
- **Seeds, disjoint from training.** Game ``e`` is played on a fresh start: its k-th reset (k=0 starts
  the game; k>0 follow lost lives, where the Atari envs ignore the seed unless the game is over) uses
  :func:`eval_seed` ``(seed, e, k)``, and its uniforms come from its own stream :func:`eval_uniforms`
  ``(seed, e)``. Both are spawned from the run's seed (or ``--seed``) under keys (4 and 5) that
  training never uses (it uses 0..3, see engine/streams.py). So game ``e`` is the same game whatever
  ``--episodes`` is.

A short evaluation is a noisy one: Breakout with sticky actions off is deterministic given the
actions, so a weak policy's score depends mostly on the no-op start (its count modulo the frame
skip), and 10 games can land mostly on one kind of start. Compare training's last-100 mean with 100
games, not 10.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from htsrl.config import ConfigError
from htsrl.distributions import distribution, spec_of
from htsrl.envs import EPISODE_KEY, make_env_set
from htsrl.run_dir import RunDir

# Spawn keys of evaluation's streams; training uses 0..3 (see engine/streams.py).
_EVAL_RESETS, _EVAL_ACTIONS = 4, 5


def eval_seed(seed: int, episode: int, reset: int = 0) -> int:
    """Seed of the ``reset``-th reset of evaluation game ``episode`` (0: the start of the game)."""
    key = (_EVAL_RESETS, episode) if reset == 0 else (_EVAL_RESETS, episode, reset)
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1)[0])


def eval_uniforms(seed: int, episode: int) -> np.random.Generator:
    """The stream of uniforms game ``episode`` samples its actions from (per policy step: one, or one per
    sub-action or action dimension)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(_EVAL_ACTIONS, episode))))


def load_policy(run_dir: Path, checkpoint: str = "auto"):
    """The run's config and its acting network (raw observations -> logits, value), the one that
    ``htsrl.load`` gives ``predict`` and export: evaluation sees observations exactly as they do."""
    from htsrl.policy import load

    policy = load(run_dir, checkpoint)
    return policy.config, policy.network


def play_game(
    env_set, model, seed: int, episode: int, deterministic: bool = False, max_steps: int = 100_000, on_step=None
) -> dict:
    """Play evaluation game ``episode`` on the first env of ``env_set`` (built with ``training=True``) and
    return its true score ``r``, length ``l`` (see the module docstring), score difference ``s``
    (football, else None) and ``steps`` (actions the policy chose). ``on_step()`` runs before each policy
    step. An env of several players (football ``left_players``) is one game: the policy acts for all of
    its players in one batch, each with its own uniforms, as the actors do."""
    players = env_set.players
    columns = range(players)
    spec = spec_of(model)  # a module without one acts in Discrete actions
    uniforms = eval_uniforms(seed, episode)
    resets = 0

    def reset():
        nonlocal resets
        seed_k = eval_seed(seed, episode, resets)
        obs = [env_set.envs[c].reset(seed=seed_k)[0] for c in columns]  # the game, then its other players
        resets += 1
        return obs

    obs = reset()
    size = getattr(model, "state_size", 0)  # recurrent: the state, reset where an episode begins
    state, start = torch.zeros(players, size), torch.ones(players, dtype=torch.bool)
    for step in range(max_steps):
        if on_step is not None:
            on_step()
        with torch.inference_mode():
            batch = torch.as_tensor(np.stack(obs))
            if size:
                head, _, state = model.step(batch, state, start)
                start = torch.zeros(players, dtype=torch.bool)
            else:
                head, _ = model(batch)
            dist = distribution(spec, head)
            if deterministic:
                action = dist.mode()
            else:
                action, _ = dist.sample(torch.from_numpy(uniforms.random((players, *spec.uniform_shape))))
        # as the executor steps an env: through its env set (Box: clipped), then reset on any episode end
        results = env_set.step(columns, spec.to_env(action.numpy()))
        obs = [r[0] for r in results]
        _, _, terminated, truncated, info = results[0]
        if EPISODE_KEY in info:  # the real end of the game (not a lost life)
            return {**info[EPISODE_KEY], "steps": step + 1}
        if terminated or truncated:  # a lost life: the training episode ends, the game goes on
            obs = reset()
            start = torch.ones(players, dtype=torch.bool)
    raise RuntimeError(f"episode {episode} did not end within {max_steps} steps")


def evaluate(
    run_dir: str | Path,
    episodes: int = 30,
    deterministic: bool = False,
    video: str | Path | None = None,
    max_steps: int = 100_000,
    seed: int | None = None,
    checkpoint: str = "auto",
    greedy: bool | None = None,
) -> dict:
    """Play ``episodes`` games of the run's policy by training's protocol (module docstring) and return
    the result that ``htsrl eval`` prints (plus every game's score in ``scores``); also written to its
    own file, ``<run_dir>/eval/<time>_<settings>.json``, named in the result's ``path``.
    ``deterministic``: the most likely action instead of a sampled one (``greedy``: its former name).
    ``seed``: the base of the evaluation seeds (default: the run's seed; either way disjoint from
    training's). ``checkpoint``: which weights, as in :func:`htsrl.load`."""
    if greedy is not None:
        deterministic = greedy
    if episodes <= 0:
        raise ConfigError(f"--episodes must be positive, got {episodes}")
    run_dir = Path(run_dir)
    cfg, model = load_policy(run_dir, checkpoint)
    seed = cfg.seed if seed is None else seed
    kwargs = dict(cfg.env_kwargs)
    if video is not None:
        kwargs["render_mode"] = "rgb_array"
    # the run's backend, with the wrappers training steps (episodic life, FIRE after a lost life)
    env_set = make_env_set(cfg.env, kwargs, cfg.env_backend, range(cfg.players), training=True)
    games = []
    writer = None
    try:
        for ep in range(episodes):
            on_step = None
            if video is not None and ep == 0:

                def on_step():
                    nonlocal writer
                    writer = _write_frame(writer, env_set.game(0).render(), Path(video))

            games.append(
                play_game(env_set, model, seed, ep, deterministic=deterministic, max_steps=max_steps, on_step=on_step)
            )
            if writer is not None:
                writer.release()
                writer = None
    finally:
        env_set.close()
    scores = [g["r"] for g in games]
    score_diffs = [g["s"] for g in games if g["s"] is not None]
    result = {
        "run_dir": str(run_dir),
        "env": cfg.env,
        "episodes": episodes,
        "deterministic": deterministic,
        "actions": "greedy" if deterministic else "sampled",
        "seed": seed,
        "checkpoint": checkpoint,
        "mean_score": float(np.mean(scores)),
        "std_score": float(np.std(scores)),
        "mean_length": float(np.mean([g["l"] for g in games])),
        "mean_steps": float(np.mean([g["steps"] for g in games])),
    }
    if score_diffs:
        result["mean_score_difference"] = float(np.mean(score_diffs))
    if video is not None:
        result["video"] = str(video)
    # its own file: an evaluation never replaces an earlier one (a 30-game result by a 1-game check)
    while True:  # "x": another evaluation that took the same name in the same moment is never overwritten
        path = result_path(run_dir, result)
        try:
            with open(path, "x") as f:
                result["path"] = str(path)
                f.write(json.dumps({**result, "scores": scores}, indent=2))
            break
        except FileExistsError:
            continue
    return {**result, "scores": scores}


def result_path(run_dir: Path, result: dict) -> Path:
    """A new file ``<run_dir>/eval/<time>_<K>-games_<actions>_seed<S>[_<checkpoint>].json``, e.g.
    ``eval/20250614-101502_30-games_sampled_seed1.json``: sorted by time, its settings readable in the
    name; ``-2``, ``-3``... where one of that name exists (two evaluations in one second)."""
    folder = RunDir(run_dir).evaluations
    folder.mkdir(exist_ok=True)
    games = f"{result['episodes']}-game{'' if result['episodes'] == 1 else 's'}"
    name = f"{time.strftime('%Y%m%d-%H%M%S')}_{games}_{result['actions']}_seed{result['seed']}"
    if result["checkpoint"] != "auto":
        name += f"_{result['checkpoint']}"
    path, n = folder / f"{name}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{name}-{n}.json"
    return path


def _write_frame(writer, frame, path: Path):
    import cv2

    frame = np.asarray(frame)
    if writer is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        h, w = frame.shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"cannot write video {path} (OpenCV without an MP4 encoder?)")
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return writer
