"""The kinds of env htsrl trains on, one :class:`EnvFamily` record each, and everything htsrl knows of an
env from its id: which family it is (how an id is recognised), the preset each algorithm takes on it, the
players it controls, the emulator frames of one agent step, what to install for it and the task EnvPool
steps it as.

This is the only module that reads an env id's spelling: the others ask :func:`family_of` (or the small
functions below). Like ``presets.py`` it imports neither gymnasium nor torch, so ``htsrl.config`` can.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from htsrl.algo_rules import algorithm
from htsrl.errors import ConfigError

# IMPALA on a classic-control env has no published setting that maps onto htsrl's fields. On-policy,
# V-trace is n-step A2C (with IMPALA's 0.5 in the value loss), so ``--algo impala`` on such an env takes
# the A2C CartPole setting (SB3 zoo); htsrl's choice, give flags to change it.
CLASSIC_IMPALA_PRESET = "classic-a2c"

# A2C on football has no published source: the HTS-RL authors' code is PPO only (arguments.py asserts
# algo == 'ppo'), and GRF's paper and examples train PPO, IMPALA and DQN. So ``--algo a2c`` on a
# football env takes ``atari-a2c`` (Kostrikov's = OpenAI baselines' A2C settings): htsrl's default
# football observation is the stacked super-minimap, an image read by the same kind of CNN those
# settings were tuned for, and its 16 envs are the HTS-RL football env count. This is htsrl's choice,
# not a tuned football setting; give flags to change it.
FOOTBALL_A2C_PRESET = "atari-a2c"

CLASSIC_PRESETS = {"ppo": "classic-ppo", "a2c": "classic-a2c", "impala": CLASSIC_IMPALA_PRESET}

# Gymnasium's MuJoCo envs (any version: HalfCheetah-v5, Hopper-v4, ...) take mujoco-ppo.
MUJOCO_ENVS = (
    "Ant",
    "HalfCheetah",
    "Hopper",
    "Humanoid",
    "HumanoidStandup",
    "InvertedDoublePendulum",
    "InvertedPendulum",
    "Pusher",
    "Reacher",
    "Swimmer",
    "Walker2d",
)

# The controlled football players where --env-kwargs does not say (envs/football.FootballEnv's defaults).
FOOTBALL_PLAYERS = {"left_players": 1, "right_players": 0}

# Atari: the two id forms htsrl's pipeline takes, ALE/<Game>-v5 and <Game>NoFrameskip-v4.
ALE_PREFIX, NOFRAMESKIP_SUFFIX = "ALE/", "NoFrameskip-v4"
ALE_ENTRY_POINT = "ale_py.env:AtariEnv"  # every Atari id ale-py registers, the older forms too


def _one_player(env_kwargs: dict) -> int:
    return 1


def _football_players(env_kwargs: dict) -> int:
    """left_players + right_players. Values of the wrong type count as 1 here; building the env refuses
    them (``envs.football.check_players``)."""
    left, right = (env_kwargs.get(name, default) for name, default in FOOTBALL_PLAYERS.items())
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (left, right)):
        return 1
    return max(1, left + right)


def _is_atari_id(env_id: str) -> bool:
    return env_id.startswith(ALE_PREFIX) or env_id.endswith(NOFRAMESKIP_SUFFIX)


def _atari_envpool_task(env_id: str) -> str:
    """ALE/Breakout-v5 and BreakoutNoFrameskip-v4 are EnvPool's Breakout-v5."""
    if env_id.startswith(ALE_PREFIX):
        return env_id.removeprefix(ALE_PREFIX)
    return env_id.removesuffix(NOFRAMESKIP_SUFFIX) + "-v5"


def _is_mujoco_id(env_id: str) -> bool:
    return env_id.rsplit("-v", 1)[0] in MUJOCO_ENVS and "-v" in env_id


def _is_user_id(env_id: str) -> bool:
    return ":" in env_id


@dataclass(frozen=True)
class EnvFamily:
    name: str
    presets: Mapping[str, str]  # algorithm -> the preset it takes by default (no --preset)
    # whether an env id is this family's (family_of asks in FAMILIES' order); None: the ids that start with prefix
    recognises: Callable[[str], bool] | None = None
    # ids of the family with a preset of their own: id -> algorithm -> preset (others take ``presets``)
    id_presets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    players: Callable[[dict], int] = _one_player  # players one env controls (buffer columns), from --env-kwargs
    frames_per_step: int = 1  # emulator frames of one agent step (Atari: the frame skip)
    install_hint: str | None = None  # how to install what its envs need
    envpool_task: Callable[[str], str] | None = None  # EnvPool's task of an id; None: EnvPool cannot step it
    prefix: str = ""  # the prefix of its ids (the families whose ids htsrl registers)
    takes_env_index: bool = False  # its envs vary per replica: make_env passes each its index in the run

    def has(self, env_id: str) -> bool:
        return self.recognises(env_id) if self.recognises else bool(self.prefix) and env_id.startswith(self.prefix)

    def id_of(self, name: str) -> str:
        """The id htsrl registers for ``name``: ``football/academy_corner`` of ``academy_corner``."""
        return self.prefix + name

    def name_in(self, env_id: str) -> str:
        """``name`` of :meth:`id_of`: ``exponential`` of ``synthetic/exponential``."""
        return env_id.removeprefix(self.prefix)


ATARI = EnvFamily(
    "atari",
    recognises=_is_atari_id,
    presets={"ppo": "atari-ppo", "a2c": "atari-a2c", "impala": "atari-impala"},
    frames_per_step=4,  # frame skip 4 (envs/atari.py, envs/envpool_atari.py)
    install_hint="pip install 'htsrl[atari]'",
    envpool_task=_atari_envpool_task,
)
FOOTBALL = EnvFamily(
    "football",
    presets={"ppo": "football-ppo", "a2c": FOOTBALL_A2C_PRESET, "impala": "football-impala"},
    players=_football_players,
    install_hint=(
        "build it with `bash scripts/install_football.sh` (Debian build packages + gfootball 2.10.2 from source, "
        "about 5 minutes)"
    ),
    prefix="football/",
)
MUJOCO = EnvFamily(
    "mujoco",
    recognises=_is_mujoco_id,
    presets={**CLASSIC_PRESETS, "ppo": "mujoco-ppo"},
    install_hint="pip install -e '.[mujoco]'",
)
SYNTHETIC = EnvFamily("synthetic", CLASSIC_PRESETS, prefix="synthetic/", takes_env_index=True)  # stragglers
DEBUG = EnvFamily("debug", CLASSIC_PRESETS, prefix="htsrl/")  # envs/debug.py
USER = EnvFamily("user", CLASSIC_PRESETS, recognises=_is_user_id)  # module:EnvId, see user_env
GYMNASIUM = EnvFamily(
    "gymnasium",
    recognises=lambda env_id: True,
    presets=CLASSIC_PRESETS,  # other continuous-action envs too: no preset fits them all
    id_presets={"Pendulum-v1": {"ppo": "pendulum-ppo"}},
)
FAMILIES = (ATARI, FOOTBALL, MUJOCO, SYNTHETIC, DEBUG, USER, GYMNASIUM)  # the first that recognises an id


def family_of(env_id: str) -> EnvFamily:
    return next(f for f in FAMILIES if f.has(env_id))


def is_atari(env_id: str) -> bool:
    """Atari ids: ``ALE/<Game>-v5`` or ``<Game>NoFrameskip-v4``."""
    return family_of(env_id) is ATARI


def default_preset(algo: str, env: str) -> str:
    """The preset ``--algo algo --env env`` takes when no ``--preset`` is given: the family's (FAMILIES).

    ppo: Atari -> atari-ppo, football -> football-ppo, MuJoCo -> mujoco-ppo, Pendulum-v1 -> pendulum-ppo,
    anything else -> classic-ppo (other continuous-action envs too: no preset fits them all).
    a2c: Atari -> atari-a2c, football -> atari-a2c (see FOOTBALL_A2C_PRESET), anything else -> classic-a2c.
    impala: Atari -> atari-impala, football -> football-impala, anything else -> classic-a2c (see
    CLASSIC_IMPALA_PRESET). An algorithm htsrl does not have: ConfigError (a ValueError).
    """
    algorithm(algo)
    family = family_of(env)
    preset = family.id_presets.get(env, {}).get(algo) or family.presets.get(algo)
    if preset is None:
        raise ConfigError(f"--algo {algo} has no default preset on {family.name} envs ({env}); give --preset")
    return preset


def env_players(env_id: str, env_kwargs) -> int:
    """Buffer columns one env fills: the players a football env controls (``--env-kwargs`` ``left_players``
    + ``right_players``, each a column), else 1."""
    if not isinstance(env_kwargs, dict):
        return 1  # (config.validate refuses env_kwargs that are not a dict)
    return family_of(env_id).players(env_kwargs)


def envpool_task(env_id: str) -> str | None:
    """The EnvPool task that steps ``env_id`` (``Breakout-v5``), or None: EnvPool steps Atari only."""
    family = family_of(env_id)
    return family.envpool_task(env_id) if family.envpool_task else None


def require_envpool_task(env_id: str) -> str:
    """The EnvPool task of ``env_id``; ConfigError, the one refusal of a non-Atari id on EnvPool, otherwise."""
    task = envpool_task(env_id)
    if task is None:
        raise ConfigError(
            f"--env-backend envpool steps Atari only ({atari_ids('<Game>')}), not {env_id}; use --env-backend python"
        )
    return task


def atari_ids(game: str) -> str:
    """The ids htsrl's Atari pipeline takes for ``game``, as a user reads them."""
    return f"{ALE_PREFIX}{game}-v5 or {game}{NOFRAMESKIP_SUFFIX}"


def atari_skips_itself(env_id: str) -> bool:
    """ALE/<Game>-v5: ale-py skips 4 frames and repeats an action with probability 0.25 unless told not to;
    <Game>NoFrameskip-v4 does neither."""
    return env_id.startswith(ALE_PREFIX)


def is_older_atari(env_id: str, entry_point) -> bool:
    """Gymnasium's older Atari ids (``Breakout-v4``, ``Pong-v0``, ``PongNoFrameskip-v0``), from the id and its
    registered entry point: RGB frames, a random built-in frame skip or sticky actions, none of which htsrl's
    Atari pipeline is built for."""
    return entry_point == ALE_ENTRY_POINT and not is_atari(env_id)


def atari_game(env_id: str) -> str:
    """The game of one of the older Atari ids: ``Breakout`` of ``BreakoutNoFrameskip-v0``."""
    return env_id.split("-")[0].removesuffix("NoFrameskip").removesuffix("Deterministic")


def user_env(env_id: str) -> tuple[str, str] | None:
    """``(module, EnvId)`` of a user's ``module:EnvId`` (gymnasium's form; importing the module registers
    ``EnvId``), else None."""
    if not _is_user_id(env_id):
        return None
    module, _, name = env_id.partition(":")
    return module, name
