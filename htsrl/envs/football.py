"""Google Research Football (gfootball 2.10.2) through the Gymnasium API, as ``football/<scenario>``.

gfootball speaks the old gym API (``reset() -> obs``, ``step -> obs, reward, done, info``); this wrapper
gives ``reset(seed) -> obs, info`` and ``step -> obs, reward, terminated, truncated, info``. The game
engine is seeded per episode (``game_engine_random_seed``), so a football run is deterministic like
any other, and an episode can be rebuilt from its seed and its actions.

Options (``--env-kwargs``): ``representation`` ``extracted`` (SMM 72x96, 4 frames stacked = 16
channels, returned channels-first) or ``simple115`` (115 floats, gfootball's simple115v2);
``rewards`` ``scoring`` or ``scoring,checkpoints``. ``info["score_reward"]`` (+1 own goal scored,
-1 conceded) is summed into the per-episode score difference, the football metric.

Several controlled players (``left_players`` N, default 1; ``right_players`` M, default 0: the right
team's players too, all by one shared policy, as gfootball's ``number_of_*_players_agent_controls``):
the env then takes N+M actions (``MultiDiscrete``) and returns N+M observations (``(N+M, *obs)``, each
from its player's view; right players see the pitch mirrored) and N+M rewards (a float64 vector, each
player's own as GRF gives it: scoring rewards are shared within a team and negated for the right team,
a checkpoint reward goes to the player who carried the ball there). An episode's return is the left
team's (``team_reward``: the mean over its controlled players). ``players`` says how many;
``single_observation_space`` and ``single_action_space`` are one player's. The engine gives each
player a buffer column (``htsrl.envs.PlayerSet``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings

import gymnasium as gym
import numpy as np

from htsrl.env_families import FOOTBALL, FOOTBALL_PLAYERS

# The academy scenarios of the HTS-RL paper, and the full game.
SCENARIOS = (
    "academy_empty_goal_close",
    "academy_empty_goal",
    "academy_run_to_score",
    "academy_run_to_score_with_keeper",
    "academy_pass_and_shoot_with_keeper",
    "academy_run_pass_and_shoot_with_keeper",
    "academy_3_vs_1_with_keeper",
    "academy_corner",
    "academy_counterattack_easy",
    "academy_counterattack_hard",
    "academy_single_goal_versus_lazy",
    "11_vs_11_easy_stochastic",
    "11_vs_11_stochastic",
    "11_vs_11_hard_stochastic",
)
REPRESENTATIONS = {"extracted": "extracted", "simple115": "simple115v2"}
REWARDS = ("scoring", "scoring,checkpoints")
INSTALL_HINT = f"Google Research Football is not installed; {FOOTBALL.install_hint}"


class FootballNotInstalled(ImportError):
    pass


def check_options(scenario: str, representation: str, rewards: str) -> None:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown football scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    if representation not in REPRESENTATIONS:
        raise ValueError(f"unknown football representation {representation!r}; choose one of {list(REPRESENTATIONS)}")
    if rewards not in REWARDS:
        raise ValueError(f"unknown football rewards {rewards!r}; choose one of {list(REWARDS)}")


@functools.cache
def team_sizes(scenario: str) -> tuple[int, int]:
    """Players of the left and right team in a scenario, as gfootball's scenario builder counts them."""
    _import_gfootball()
    from gfootball.env import config, scenario_builder

    built = scenario_builder.Scenario(config.Config({"level": scenario})).ScenarioConfig()
    return len(built.left_team), len(built.right_team)


def check_players(scenario: str, left_players, right_players) -> None:
    """The controlled players must exist in the scenario (ValueError: the engine turns it into exit 2)."""
    for name, value, least in (("left_players", left_players, 1), ("right_players", right_players, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"football {name} must be an integer >= {least}, got {value!r}")
    if (left_players, right_players) == (1, 0):
        return  # every scenario has a left player; the 0.5 s of building its config is spared
    left, right = team_sizes(scenario)
    if left_players > left or right_players > right:
        raise ValueError(
            f"{scenario} has {left} left and {right} right players; left_players {left_players} and "
            f"right_players {right_players} cannot be controlled"
        )


def _import_gfootball():
    """Import gfootball, silencing the banner its `gym` dependency prints on import."""
    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import gfootball.env as football_env
    return football_env


def football_installed() -> bool:
    try:
        _import_gfootball()
    except ImportError:
        return False
    return True


class FootballEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(
        self,
        scenario: str = "academy_3_vs_1_with_keeper",
        representation: str = "extracted",
        rewards: str = "scoring,checkpoints",
        left_players: int = FOOTBALL_PLAYERS["left_players"],
        right_players: int = FOOTBALL_PLAYERS["right_players"],
    ):
        check_options(scenario, representation, rewards)
        if not football_installed():
            raise FootballNotInstalled(INSTALL_HINT)
        check_players(scenario, left_players, right_players)
        self.scenario, self.representation, self.rewards = scenario, representation, rewards
        self.left_players, self.right_players = left_players, right_players
        self.players = left_players + right_players
        self.single_action_space = gym.spaces.Discrete(19)
        if representation == "extracted":
            self.single_observation_space = gym.spaces.Box(0, 255, (16, 72, 96), np.uint8)
        else:
            self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (115,), np.float32)
        if self.players == 1:
            self.action_space, self.observation_space = self.single_action_space, self.single_observation_space
        else:
            self.action_space = gym.spaces.MultiDiscrete([19] * self.players)
            space = self.single_observation_space
            self.observation_space = gym.spaces.Box(
                np.broadcast_to(space.low, (self.players, *space.shape)),
                np.broadcast_to(space.high, (self.players, *space.shape)),
                dtype=space.dtype,
            )
        self._env = None

    def _build(self, seed: int):
        football_env = _import_gfootball()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._env = football_env.create_environment(
                env_name=self.scenario,
                representation=REPRESENTATIONS[self.representation],
                stacked=self.representation == "extracted",  # SMM: 4 frames x 4 planes; simple115: one frame
                rewards=self.rewards,
                number_of_left_players_agent_controls=self.left_players,
                number_of_right_players_agent_controls=self.right_players,
                render=False,
                write_video=False,
                write_full_episode_dumps=False,
                other_config_options={"game_engine_random_seed": int(seed)},
            )

    def _convert(self, obs) -> np.ndarray:
        obs = np.asarray(obs)
        if self.representation == "extracted":  # HWC -> CHW, per player where there are several
            chw = obs.transpose(2, 0, 1) if self.players == 1 else obs.transpose(0, 3, 1, 2)
            return np.ascontiguousarray(chw, dtype=np.uint8)
        return obs.astype(np.float32).reshape(self.observation_space.shape)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self._env is None:
            self._build(int(seed or 0) % 2**31)
        elif seed is not None:
            # gfootball reads the engine seed from its config at every episode start: setting it
            # seeds the next episode without rebuilding the engine (a rebuild costs ~10x a reset).
            # The order in which it processes the teams is drawn from the seed's parity only when
            # the config has none yet, i.e. at the first episode: set it from this episode's seed
            # too, or an episode depends on the env's first seed and cannot be replayed in a fresh
            # env (resume, crash recovery).
            values = self._env.unwrapped._config._values
            values["game_engine_random_seed"] = int(seed) % 2**31
            values["reverse_team_processing"] = bool(values["game_engine_random_seed"] % 2)
        return self._convert(self._env.reset()), {}

    def step(self, action):
        if self.players == 1:
            obs, reward, done, info = self._env.step(int(action))
            reward = float(reward)
        else:
            obs, reward, done, info = self._env.step([int(a) for a in np.asarray(action).reshape(self.players)])
            reward = np.asarray(reward, np.float64).reshape(self.players)
        info = dict(info)
        # A football episode ends with the game (or the academy situation): a real terminal state.
        return self._convert(obs), reward, bool(done), False, info

    def team_reward(self, rewards: np.ndarray) -> float:
        """The reward an episode's return adds up: the mean over the controlled left players (the right
        team's get the negated scoring reward, so a mean over every player would cancel goals out)."""
        return float(np.mean(rewards[: self.left_players]))

    def close(self):
        if self._env is not None:
            self._env.close()
            self._env = None


def register() -> None:
    for scenario in SCENARIOS:
        env_id = FOOTBALL.id_of(scenario)
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=FootballEnv, kwargs={"scenario": scenario}, disable_env_checker=True)


register()
