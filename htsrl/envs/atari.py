"""Atari through ale-py with the standard DeepMind preprocessing.

noop reset (<=30), frame skip 4 with max-pool over the last two frames, 84x84 gray, fire on reset,
4-frame stack; for training also episodic life and sign-clipped rewards. The true game score is
recorded below all of these (EpisodeStats) and reported at the real game over, with the episode's
length in emulator frames (EpisodeStats sits below the frame skip). ``htsrl eval`` plays with the
training wrappers too (``training=True``), so it measures a policy as training does (evaluation.py).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from htsrl.env_families import ATARI, atari_skips_itself
from htsrl.envs.sets import EpisodeStats


class ReseedWithoutReload(gym.Wrapper):
    """ale-py reloads the ROM on every seeded reset (~65 ms); htsrl seeds every reset (so an episode
    can be rebuilt from its seed). After the first load, reseed the Python-side generator (used by
    the no-op reset) and reset the game without reloading. With sticky actions off the emulator's
    own generator is not used, so an episode still depends only on its seed and its actions (the
    replay check in engine/history.py verifies this on every resume)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._loaded = False

    def reset(self, *, seed=None, options=None):
        if seed is not None and self._loaded:
            self.env.unwrapped.seed_game(seed)
            seed = None
        self._loaded = True
        return self.env.reset(seed=seed, options=options)


class EpisodicLife(gym.Wrapper):
    """A lost life ends the training episode; the game itself resets only at real game over."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.real_done = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.real_done = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.real_done:
            obs, info = self.env.reset(**kwargs)
        else:  # continue the same game after a lost life with a no-op
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireReset(gym.Wrapper):
    """Press FIRE after reset for games that wait for it (Breakout)."""

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info


class SignReward(gym.RewardWrapper):
    def reward(self, reward):
        return float(np.sign(reward))


def make_atari(env_id: str, env_kwargs: dict, training: bool = True) -> gym.Env:
    kwargs = dict(env_kwargs)
    # AtariPreprocessing reads the screen from the emulator itself and drops the observation that the
    # inner env makes at every emulator frame; a grayscale one is a third of the bytes of an RGB one.
    kwargs.setdefault("obs_type", "grayscale")
    if atari_skips_itself(env_id):  # turned off: the wrappers below skip frames
        kwargs.setdefault("frameskip", 1)
        kwargs.setdefault("repeat_action_probability", 0.0)
    env = gym.make(env_id, **kwargs)
    if kwargs.get("repeat_action_probability", 0.25) == 0.0:
        env = ReseedWithoutReload(env)
    env = EpisodeStats(env)
    env = AtariPreprocessing(env, noop_max=30, frame_skip=ATARI.frames_per_step, screen_size=84, grayscale_obs=True)
    if training:
        env = EpisodicLife(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
    if training:
        env = SignReward(env)
    return FrameStackObservation(env, 4)
