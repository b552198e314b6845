"""Small envs for tests and fault injection, registered as ``htsrl/...`` ids.

``htsrl/Counter-v0``: the observation is ``[env_tag, step_in_episode, episode_kind]`` (an episode of odd
kind ends truncated, of even kind terminated) and the reward is
``step_in_episode * 10 + action``, so a rollout proves that each observation is paired with the action
taken on it and that no step is lost or repeated at a window edge.
``htsrl/Faulty-v0``: CartPole-like counter that raises, segfaults or hangs at a chosen step, and can
sleep per step (a blocking, CPU-free step for no-spin tests).
``htsrl/BoxEcho-v0`` and ``htsrl/MultiDiscreteEcho-v0``: the observation is the action the env received
(so a test sees what reached the env, e.g. a clipped Box action) and the step in the episode; Box bounds
``[-0.5, 0.5] x [-1, 1]``, MultiDiscrete ``[3, 4]``; reward ``-|action|``; episodes of 10 steps,
truncated. ``htsrl/DictActions-v0``: a Dict action space, which htsrl refuses.
``htsrl/MemoryCue-v0``: a task only a policy with memory solves. The first observation shows a cue
(``[+-1, 0]``), the next ones are blank (``[0, 0]``) and the last is ``[0, 1]``: "answer now". The
answer (action 1 for +1, 0 for -1) earns +1, a wrong one -1; every other step earns 0, whatever the
action. A feed-forward policy sees the same last observation after either cue, so its expected return
is 0 (chance); a recurrent one can reach 1. Episodes of ``length`` steps (default 4), terminated.
"""

from __future__ import annotations

import ctypes
import os
import time

import gymnasium as gym
import numpy as np


class CounterEnv(gym.Env):
    def __init__(self, episode_length: int = 7, num_actions: int = 3, sleep_s: float = 0.0, jitter_s: float = 0.0):
        self.observation_space = gym.spaces.Box(-1e9, 1e9, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(num_actions)
        self.episode_length = episode_length
        self.sleep_s, self.jitter_s = sleep_s, jitter_s
        self._timing_rng = np.random.default_rng()  # timing only: never touches the data
        self.tag = 0.0
        self.t = 0
        self.episode = -1

    def _obs(self):
        return np.array([self.tag, self.t, self.episode], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        # The state after a reset depends on its seed alone, so an episode replays from seed + actions.
        if seed is not None:
            self.tag = float(seed % 100_000)
            self.episode = seed % 2
        else:
            self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        if self.sleep_s or self.jitter_s:
            time.sleep(self.sleep_s + self.jitter_s * self._timing_rng.random())
        reward = float(self.t * 10 + int(action))
        self.t += 1
        terminated = self.t >= self.episode_length and self.episode % 2 == 0
        truncated = self.t >= self.episode_length and not terminated
        return self._obs(), reward, terminated, truncated, {}


class FaultyEnv(CounterEnv):
    """Counter env that injects ``fault`` ('raise' | 'segfault' | 'hang' | 'nan_reward') at its
    ``fail_at``-th step. With ``once_file`` the fault fires once per run directory (the first env to
    get there creates the file): a transient fault, which crash recovery must ride through."""

    def __init__(self, fail_at: int = 100, fault: str = "raise", sleep_s: float = 0.0, once_file: str = ""):
        super().__init__(episode_length=50, num_actions=2, sleep_s=sleep_s)
        self.fail_at, self.fault, self.once_file = fail_at, fault, once_file
        self.global_steps = 0

    def _fire(self) -> bool:
        if self.global_steps != self.fail_at:
            return False
        if not self.once_file:
            return True
        try:
            os.close(os.open(self.once_file, os.O_CREAT | os.O_EXCL))
            return True
        except FileExistsError:
            return False

    def step(self, action):
        self.global_steps += 1
        if self.fault == "nan_reward" and self._fire():
            obs, _, terminated, truncated, info = super().step(action)
            return obs, float("nan"), terminated, truncated, info
        if self._fire():
            if self.fault == "raise":
                raise RuntimeError(f"injected env fault at step {self.global_steps}")
            if self.fault == "segfault":
                ctypes.string_at(0)
            if self.fault == "hang":
                time.sleep(3600)
        return super().step(action)


class EchoEnv(gym.Env):
    """Observation ``[*action received, step]``; see the module docstring."""

    def __init__(self, space: gym.Space, episode_length: int = 10):
        self.action_space = space
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (space.shape[0] + 1,), np.float32)
        self.episode_length, self.t = episode_length, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        a = np.asarray(action, np.float32)
        assert a.shape == self.action_space.shape, a.shape
        self.t += 1
        obs = np.append(a, np.float32(self.t)).astype(np.float32)
        return obs, -float(np.abs(a).sum()), False, self.t >= self.episode_length, {}


class BoxEchoEnv(EchoEnv):
    def __init__(self, episode_length: int = 10):
        super().__init__(
            gym.spaces.Box(np.array([-0.5, -1.0], np.float32), np.array([0.5, 1.0], np.float32), dtype=np.float32),
            episode_length,
        )


class MultiDiscreteEchoEnv(EchoEnv):
    def __init__(self, episode_length: int = 10):
        super().__init__(gym.spaces.MultiDiscrete([3, 4]), episode_length)


class MemoryCueEnv(gym.Env):
    """See the module docstring."""

    def __init__(self, length: int = 4):
        if length < 2:
            raise ValueError(f"length must be at least 2 (a cue, then the answer), got {length}")
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.length, self.t, self.cue = length, 0, 1.0

    def _obs(self) -> np.ndarray:
        if self.t == 0:
            return np.array([self.cue, 0.0], np.float32)
        return np.array([0.0, float(self.t == self.length - 1)], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.cue = 0, float(self.np_random.choice([-1.0, 1.0]))
        return self._obs(), {}

    def step(self, action):
        answer = self.t == self.length - 1
        reward = (1.0 if int(action) == int(self.cue > 0) else -1.0) if answer else 0.0
        self.t += 1
        return (self._obs() if not answer else np.zeros(2, np.float32)), reward, answer, False, {}


class DictActionsEnv(CounterEnv):
    def __init__(self):
        super().__init__()
        self.action_space = gym.spaces.Dict({"a": gym.spaces.Discrete(2), "b": gym.spaces.Discrete(3)})


for _id, _cls in (
    ("htsrl/Counter-v0", CounterEnv),
    ("htsrl/Faulty-v0", FaultyEnv),
    ("htsrl/BoxEcho-v0", BoxEchoEnv),
    ("htsrl/MultiDiscreteEcho-v0", MultiDiscreteEchoEnv),
    ("htsrl/DictActions-v0", DictActionsEnv),
    ("htsrl/MemoryCue-v0", MemoryCueEnv),
):
    if _id not in gym.registry:
        gym.register(_id, entry_point=_cls, disable_env_checker=True)
