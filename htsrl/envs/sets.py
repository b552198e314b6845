"""The envs of one process as buffer columns (:class:`EnvSet`, :class:`PlayerSet`) and the episode record
every env reports (:class:`EpisodeStats`, ``info[EPISODE_KEY]``). The env modules (atari.py,
envpool_atari.py) import these from here; ``htsrl.envs`` re-exports them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

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
