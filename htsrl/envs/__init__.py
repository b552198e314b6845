"""Environment specs -> ``gymnasium.Env``.

Every env the engine steps is built by :func:`make_env`, wrapped so that the true episode score
(before reward clipping, across lives) comes back in ``info["htsrl_episode"]`` at the real end of an
episode. :func:`probe_env` checks an id and its spaces in the main process before anything starts.
A user's own env is named ``module:EnvId`` (gymnasium's form): :func:`registered_id` imports the module,
which registers ``EnvId``, in whichever process builds it.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from htsrl.config import ConfigError, env_players, is_atari
from htsrl.distributions import BOX, ActionSpec, action_spec
from htsrl.presets import is_mujoco

EPISODE_KEY = "htsrl_episode"


class EpisodeStats(gym.Wrapper):
    """Records the raw episode return and length; innermost wrapper, so it sees unclipped rewards.

    Where the env reports ``info["score_reward"]`` (football: +1 goal scored, -1 conceded) its sum is
    the episode's score difference ``"s"``. An env of several players (a reward per player) adds what its
    ``team_reward(rewards)`` says (football: the mean over the controlled left players).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._ret, self._len, self._score = 0.0, 0, None

    def reset(self, **kwargs):
        self._ret, self._len, self._score = 0.0, 0, None
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._ret += float(reward) if np.ndim(reward) == 0 else self.env.unwrapped.team_reward(reward)
        self._len += 1
        if "score_reward" in info:
            self._score = (self._score or 0.0) + float(info["score_reward"])
        if terminated or truncated:
            info = dict(info)
            info[EPISODE_KEY] = {"r": self._ret, "l": self._len, "s": self._score}
        return obs, reward, terminated, truncated, info


def _register_extras() -> None:
    import htsrl.envs.debug  # noqa: F401  (registers htsrl/* ids)
    import htsrl.envs.football  # noqa: F401  (registers football/* ids; gfootball is imported lazily)
    import htsrl.envs.synthetic  # noqa: F401  (registers synthetic/* ids)

    try:
        import ale_py

        gym.register_envs(ale_py)
    except ImportError:  # Atari is optional for a user who trains on other envs
        pass


def registered_id(env_id: str) -> str:
    """The registry id of ``env_id``: ``EnvId`` of ``module:EnvId`` once the module is imported (which
    registers it), else ``env_id`` itself. Spawned roles call it too: they start with the parent's sys.path."""
    if ":" not in env_id:
        return env_id
    module, _, name = env_id.partition(":")
    for _ in range(2):
        try:
            importlib.import_module(module)
            break
        except Exception as e:  # the user's module raised: one line, not its traceback
            missing = isinstance(e, ModuleNotFoundError) and (module + ".").startswith(f"{e.name}.")
            if missing and os.getcwd() not in sys.path:
                # the `htsrl` console script, unlike `python -m`, does not search the current folder; at
                # the end, so that a file here never shadows an installed package
                sys.path.append(os.getcwd())
                continue
            if missing:
                raise ConfigError(
                    f"cannot import module {module!r} of --env {env_id}: it must be importable (a file or package "
                    "in the current folder, on PYTHONPATH or installed)"
                ) from None
            raise ConfigError(f"importing {module!r} of --env {env_id} failed: {_first_line(e)}") from None
    if name not in gym.registry:
        raise ConfigError(f"module {module!r} registered no env id {name!r}{_did_you_mean(name)}")
    return name


def _did_you_mean(name: str) -> str:
    trainable = [k for k in gym.registry if not _atari_with_builtin_skip(k)]  # suggest only ids htsrl takes
    close = difflib.get_close_matches(name, trainable, n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _atari_with_builtin_skip(env_id: str) -> bool:
    """Gymnasium's older Atari ids (``Breakout-v4``, ``Pong-v0``, ``PongNoFrameskip-v0``): RGB frames, a
    random built-in frame skip or sticky actions, none of which htsrl's Atari pipeline is built for."""
    spec = gym.registry.get(env_id)
    return spec is not None and spec.entry_point == "ale_py.env:AtariEnv" and not is_atari(env_id)


def _refuse_other_atari_ids(env_id: str) -> None:
    if _atari_with_builtin_skip(env_id):
        kwargs = gym.registry[env_id].kwargs
        skip = kwargs.get("frameskip")
        skip = f"random {skip[0]}-{skip[1] - 1}" if isinstance(skip, tuple) else skip
        game = env_id.split("-")[0].removesuffix("NoFrameskip").removesuffix("Deterministic")
        raise ConfigError(
            f"{env_id} is one of Gymnasium's older Atari ids (RGB frames, frame skip {skip}, sticky actions "
            f"{kwargs.get('repeat_action_probability')}); htsrl's Atari pipeline (frame skip 4 with max-pooling, "
            f"84x84 grayscale, 4-frame stack, no-op starts) takes ALE/{game}-v5 or {game}NoFrameskip-v4"
        )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def make_env(env_id: str, env_kwargs: dict | None = None, training: bool = True, index: int = 0) -> gym.Env:
    """``index`` is the env's id in the run; envs that vary per replica (synthetic stragglers) get it."""
    _register_extras()
    kwargs = dict(env_kwargs or {})
    if is_atari(env_id):
        from htsrl.envs.atari import make_atari

        return make_atari(env_id, kwargs, training=training)
    if env_id.startswith("synthetic/"):
        kwargs["env_index"] = index
    return EpisodeStats(gym.make(registered_id(env_id), **kwargs))


class EnvSet:
    """The envs of one process by buffer column: ``envs[i]`` is a Gymnasium env (resets, replay), and
    :meth:`step` steps several at once (a loop here; one C++ call for EnvPool). ``players``: columns
    per env (:class:`PlayerSet`); :meth:`game` is the env that plays column ``i``, whole."""

    players = 1

    def __init__(self, envs: dict[int, gym.Env]):
        self.envs = envs

    def game(self, i: int) -> gym.Env:
        return self.envs[i]

    def step(self, ids: range, actions: np.ndarray) -> list[tuple]:
        return [self.envs[i].step(a if np.ndim(a) else int(a)) for i, a in zip(ids, actions)]

    def close(self) -> None:
        for env in self.envs.values():
            env.close()


class PlayerSet(EnvSet):
    """Envs of several controlled players (football ``left_players``/``right_players``): game ``g`` fills
    the ``players`` consecutive columns from ``g * players``, one per player, each with its own
    observation, action (from its own stream) and reward.

    :meth:`step` steps each game once on its columns' actions; only a game's first column reports the
    episode (``info["htsrl_episode"]``), so an episode is counted once per game. ``envs[i]`` is column
    ``i`` for resets: the first column's reset resets the game with its seed (the game's seeds are its
    first column's), the others take their player's observation of that reset, so the executor resets
    a game's columns in column order as it does any env's. Replay goes through :meth:`game`."""

    def __init__(self, games: dict[int, gym.Env], players: int):
        self.games, self.players = games, players
        envs = {}
        for first, game in games.items():
            seat = _Seats(game, players)
            envs.update({first + p: _PlayerColumn(seat, p) for p in range(players)})
        super().__init__(envs)

    def game(self, i: int) -> gym.Env:
        return self.games[i - i % self.players]

    def step(self, ids: range, actions: np.ndarray) -> list[tuple]:
        if ids.start % self.players or ids.stop % self.players:
            raise RuntimeError(f"columns {ids} split a game of {self.players} players")
        out = []
        for first in range(ids.start, ids.stop, self.players):
            j = first - ids.start
            obs, reward, terminated, truncated, info = self.games[first].step(actions[j : j + self.players])
            others = {k: v for k, v in info.items() if k != EPISODE_KEY}
            for p in range(self.players):
                out.append((obs[p], float(reward[p]), terminated, truncated, info if p == 0 else others))
        return out

    def close(self) -> None:
        for game in self.games.values():
            game.close()


class _Seats:
    """A game and the observations of its last reset, which its columns other than the first take."""

    def __init__(self, game: gym.Env, players: int):
        self.game, self.obs, self.waiting = game, None, [False] * players


class _PlayerColumn(gym.Env):
    def __init__(self, seats: _Seats, player: int):
        self.seats, self.player = seats, player
        self.observation_space = seats.game.unwrapped.single_observation_space
        self.action_space = seats.game.unwrapped.single_action_space

    def reset(self, *, seed: int | None = None, options=None):
        seats = self.seats
        if self.player == 0:
            seats.obs, info = seats.game.reset(seed=seed, options=options)
            seats.waiting = [True] * len(seats.waiting)
        elif not seats.waiting[self.player]:
            raise RuntimeError(f"player column {self.player} was reset without its game (reset column 0 first)")
        else:
            info = {}
        seats.waiting[self.player] = False
        return seats.obs[self.player], info

    def step(self, action):
        raise RuntimeError("a player column is stepped with its game (PlayerSet.step)")

    def close(self) -> None:
        pass  # the game is closed by its PlayerSet


def make_env_set(
    env_id: str,
    env_kwargs: dict | None,
    backend: str,
    columns: range,
    env_offset: int = 0,
    training: bool = True,
    threads: int = 1,
) -> EnvSet:
    """The envs of buffer columns ``columns``; column c is env ``env_offset + c`` of the run.
    ``threads``: C++ threads stepping them (EnvPool; numbers do not depend on it)."""
    if backend == "envpool":
        from htsrl.envs.envpool_atari import EnvPoolAtari

        return EnvPoolAtari(env_id, env_kwargs, columns, training=training, num_threads=threads)
    players = env_players(env_id, env_kwargs)
    if players > 1:
        if columns.start % players or len(columns) % players:
            raise RuntimeError(f"columns {columns} split a game of {players} players")
        games = range(columns.start, columns.stop, players)
        return PlayerSet({g: make_env(env_id, env_kwargs, training, env_offset + g) for g in games}, players)
    return EnvSet({i: make_env(env_id, env_kwargs, training=training, index=env_offset + i) for i in columns})


@dataclass(frozen=True)
class EnvInfo:
    obs_shape: tuple[int, ...]  # one player's, where an env has several
    obs_dtype: np.dtype
    action_spec: ActionSpec
    players: int = 1  # buffer columns per env

    @property
    def num_actions(self) -> int:
        """Discrete: the number of actions; MultiDiscrete: sum(nvec); Box: the action dimensions."""
        return self.action_spec.num_outputs


def probe_env(env_id: str, env_kwargs: dict | None = None, backend: str = "python") -> EnvInfo:
    """Build one env in the caller's process to validate the id and read its spaces."""
    _register_extras()
    if backend == "envpool":
        from htsrl.envs.envpool_atari import probe_envpool

        return _env_info(env_id, *probe_envpool(env_id, env_kwargs))
    if is_atari(env_id):
        try:
            import ale_py  # noqa: F401
        except ImportError:
            raise ConfigError(f"{env_id} needs ale-py: pip install 'htsrl[atari]'") from None
    if env_id.startswith("football/"):
        from htsrl.envs.football import INSTALL_HINT, football_installed

        if env_id in gym.registry and not football_installed():
            raise ConfigError(INSTALL_HINT)
    if registered_id(env_id) not in gym.registry:
        raise ConfigError(f"unknown env id {env_id!r}{_did_you_mean(env_id)}")
    _refuse_other_atari_ids(env_id)
    try:
        env = make_env(env_id, env_kwargs, training=True)
    except (TypeError, ValueError, RuntimeError) as e:  # RuntimeError: ALE's "Invalid game mode requested"
        raise ConfigError(f"cannot build {env_id} with --env-kwargs {env_kwargs}: {e}") from None
    except gym.error.DependencyNotInstalled as e:  # e.g. the MuJoCo envs without the mujoco wheel
        hint = "; pip install -e '.[mujoco]'" if is_mujoco(env_id) else ""
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{env_id} needs a package that is not installed: {first}{hint}") from None
    try:
        players = env_players(env_id, env_kwargs)
        obs_space = env.unwrapped.single_observation_space if players > 1 else env.observation_space
        act_space = env.unwrapped.single_action_space if players > 1 else env.action_space
    finally:
        env.close()
    return _env_info(env_id, obs_space, act_space, players)


# The smallest side the Nature CNN's convolutions (8 stride 4, 4 stride 2, 3 stride 1) leave one pixel of.
CNN_MIN_SIDE = 36


def _env_info(env_id: str, obs_space: gym.Space, act_space: gym.Space, players: int = 1) -> EnvInfo:
    spec = action_spec(act_space)
    if spec is None:
        raise ConfigError(
            f"{env_id} has action space {act_space}; htsrl acts in Discrete (from 0), MultiDiscrete (a vector, "
            "from 0) and Box (a float vector) action spaces only, not Dict, Tuple or other spaces"
        )
    if not isinstance(obs_space, gym.spaces.Box) or obs_space.shape is None:
        raise ConfigError(f"{env_id} has observation space {obs_space}; htsrl needs a Box observation")
    if len(obs_space.shape) not in (1, 3):
        raise ConfigError(f"{env_id} observations have shape {obs_space.shape}; expected a vector or CxHxW image")
    if len(obs_space.shape) == 3 and obs_space.dtype != np.uint8:
        raise ConfigError(f"{env_id} image observations must be uint8, got {obs_space.dtype}")
    if len(obs_space.shape) == 3 and min(obs_space.shape[1:]) < CNN_MIN_SIDE:
        raise ConfigError(
            f"{env_id} image observations have shape {obs_space.shape}; htsrl's CNN (Nature DQN: 8x8, 4x4, 3x3 "
            f"convolutions) takes channels x height x width with height and width >= {CNN_MIN_SIDE} (a height x "
            "width x channels image needs a wrapper that moves the channels first)"
        )
    if spec.kind == BOX and len(obs_space.shape) != 1:
        raise ConfigError(
            f"{env_id} has image observations {obs_space.shape} and Box actions; htsrl's Gaussian policy is "
            "the MLP for vector observations (images: Discrete or MultiDiscrete actions)"
        )
    return EnvInfo(tuple(obs_space.shape), np.dtype(obs_space.dtype), spec, players)
