"""``synthetic/<distribution>``: an env whose step time follows a chosen distribution.

It waits by sleeping, so it burns no CPU: on a 2-core machine 16-64 of them stand in for as many
cores, which is how the Claim 1 cost model gets checked. The task itself is tiny but learnable:
observations are 8 standard-normal numbers and the reward is 1 when the action equals ``obs[0] > 0``.

Distributions (``mean_s`` is the mean step time, ``cv`` its coefficient of variation):
- ``exponential``: Exp(1/mean) (cv = 1), the model's assumption;
- ``gamma``: Gamma with the given cv;
- ``constant``: always mean_s;
- ``lognormal``: heavy tail with the given cv;
- ``straggler``: constant, but env ``straggler_env`` is ``straggler_factor`` times slower.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np

from htsrl.env_families import SYNTHETIC

DISTRIBUTIONS = ("exponential", "gamma", "constant", "lognormal", "straggler")


def sample_step_times(
    rng: np.random.Generator, distribution: str, mean_s: float, cv: float, size: int | None = None
) -> np.ndarray | float:
    if distribution == "exponential":
        return rng.exponential(mean_s, size)
    if distribution == "gamma":
        shape = 1.0 / cv**2
        return rng.gamma(shape, mean_s / shape, size)
    if distribution in ("constant", "straggler"):
        return np.full(size, mean_s) if size is not None else mean_s
    if distribution == "lognormal":
        sigma2 = np.log1p(cv**2)
        return rng.lognormal(np.log(mean_s) - sigma2 / 2, np.sqrt(sigma2), size)
    raise ValueError(f"unknown synthetic distribution {distribution!r}; choose one of {DISTRIBUTIONS}")


class SyntheticEnv(gym.Env):
    def __init__(
        self,
        distribution: str = "exponential",
        mean_s: float = 0.002,
        cv: float = 1.0,
        obs_dim: int = 8,
        episode_length: int = 200,
        straggler_factor: float = 4.0,
        straggler_env: int = 0,
        env_index: int = 0,
    ):
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown synthetic distribution {distribution!r}; choose one of {DISTRIBUTIONS}")
        if mean_s < 0 or cv <= 0:
            raise ValueError("mean_s must be >= 0 and cv > 0")
        self.distribution, self.cv, self.episode_length = distribution, cv, episode_length
        self.mean_s = mean_s * (straggler_factor if distribution == "straggler" and env_index == straggler_env else 1)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._timing = np.random.default_rng(env_index)
        self._obs = np.zeros(obs_dim, np.float32)
        self._t = 0

    def step_time(self) -> float:
        return float(sample_step_times(self._timing, self.distribution, self.mean_s, self.cv))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self._timing = np.random.default_rng([seed, 1])
        self._t = 0
        self._obs = self.np_random.standard_normal(self._obs.shape).astype(np.float32)
        return self._obs.copy(), {}

    def step(self, action):
        delay = self.step_time()
        if delay > 0:
            time.sleep(delay)
        reward = float(int(action) == int(self._obs[0] > 0))
        self._t += 1
        self._obs = self.np_random.standard_normal(self._obs.shape).astype(np.float32)
        return self._obs.copy(), reward, False, self._t >= self.episode_length, {}


for _name in DISTRIBUTIONS:
    if SYNTHETIC.id_of(_name) not in gym.registry:
        gym.register(
            SYNTHETIC.id_of(_name), entry_point=SyntheticEnv, kwargs={"distribution": _name}, disable_env_checker=True
        )
