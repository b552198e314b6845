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

from htsrl.distributions import BOX, ActionSpec, action_spec
from htsrl.env_families import (
    ATARI,
    FOOTBALL,
    atari_game,
    atari_ids,
    env_players,
    family_of,
    is_older_atari,
    user_env,
)
from htsrl.envs.sets import EPISODE_KEY, EnvSet, EpisodeStats, PlayerSet  # noqa: F401  (re-exported)
from htsrl.errors import ConfigError


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
    user = user_env(env_id)
    if user is None:
        return env_id
    module, name = user
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
    """Gymnasium's older Atari ids (``env_families.is_older_atari``)."""
    spec = gym.registry.get(env_id)
    return spec is not None and is_older_atari(env_id, spec.entry_point)


def _refuse_other_atari_ids(env_id: str) -> None:
    if _atari_with_builtin_skip(env_id):
        kwargs = gym.registry[env_id].kwargs
        skip = kwargs.get("frameskip")
        skip = f"random {skip[0]}-{skip[1] - 1}" if isinstance(skip, tuple) else skip
        raise ConfigError(
            f"{env_id} is one of Gymnasium's older Atari ids (RGB frames, frame skip {skip}, sticky actions "
            f"{kwargs.get('repeat_action_probability')}); htsrl's Atari pipeline (frame skip {ATARI.frames_per_step} "
            f"with max-pooling, 84x84 grayscale, 4-frame stack, no-op starts) takes {atari_ids(atari_game(env_id))}"
        )


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def make_env(env_id: str, env_kwargs: dict | None = None, training: bool = True, index: int = 0) -> gym.Env:
    """``index`` is the env's id in the run; envs that vary per replica (synthetic stragglers) get it."""
    _register_extras()
    kwargs = dict(env_kwargs or {})
    family = family_of(env_id)
    if family is ATARI:
        from htsrl.envs.atari import make_atari

        return make_atari(env_id, kwargs, training=training)
    if family.takes_env_index:
        kwargs["env_index"] = index
    return EpisodeStats(gym.make(registered_id(env_id), **kwargs))


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
    family = family_of(env_id)
    if family is ATARI:
        try:
            import ale_py  # noqa: F401
        except ImportError:
            raise ConfigError(f"{env_id} needs ale-py: {ATARI.install_hint}") from None
    if family is FOOTBALL:
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
        hint = f"; {family.install_hint}" if family.install_hint else ""
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
