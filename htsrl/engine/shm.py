"""Shared memory: the two rollout buffers, the published parameters and per-process counters.

Everything lives in one anonymous ``MAP_SHARED`` mapping made before the roles are forked, so it is
shared with every child and has no name in /dev/shm: nothing can leak, even on SIGKILL.

Buffer ``buf`` (0 or 1) holds one window of ``alpha`` steps for ``num_envs`` envs; window ``window``
lives in buffer ``window % 2``. Row ``t`` of ``obs`` is the observation on which ``actions[t]`` was taken; row ``alpha``
is the first observation of the next window.
"""

from __future__ import annotations

import mmap

import numpy as np
import torch

from htsrl.algos.returns import Window

# Per-process counters (seconds) in ``stats``; one row per role process, the last row is the learner.
STAT_NAMES = ("cpu_s", "env_s", "infer_s", "wait_s", "ipc_s", "learn_s")
STAT = {name: i for i, name in enumerate(STAT_NAMES)}


class SharedArrays:
    """Numpy arrays carved out of one anonymous shared mapping (64-byte aligned)."""

    def __init__(self, specs: dict[str, tuple[tuple[int, ...], np.dtype]]):
        offsets, size = {}, 0
        for name, (shape, dtype) in specs.items():
            size = (size + 63) // 64 * 64
            offsets[name] = size
            size += int(np.prod(shape)) * np.dtype(dtype).itemsize
        self._mm = mmap.mmap(-1, max(size, 1))  # MAP_SHARED | MAP_ANONYMOUS on Linux
        self.nbytes = size
        for name, (shape, dtype) in specs.items():
            setattr(self, name, np.ndarray(shape, dtype, buffer=self._mm, offset=offsets[name]))


class RolloutBuffers(SharedArrays):
    def __init__(self, num_envs: int, alpha: int, obs_shape, obs_dtype, num_params: int, num_procs: int):
        n, T = num_envs, alpha
        super().__init__(
            {
                "obs": ((2, T + 1, n, *obs_shape), obs_dtype),
                "final_obs": ((2, T, n, *obs_shape), obs_dtype),  # untouched pages cost no memory
                "actions": ((2, T, n), np.int64),
                "logp": ((2, T, n), np.float32),
                "value": ((2, T, n), np.float32),
                "reward": ((2, T, n), np.float32),
                "terminated": ((2, T, n), np.bool_),
                "truncated": ((2, T, n), np.bool_),
                "uniforms": ((2, T, n), np.float64),  # per-env action-sampling streams, drawn at barriers
                "version": ((2, T, n), np.int64),  # parameter version that chose each action
                "ep_return": ((2, T, n), np.float64),  # true episode score where an episode ended, else NaN
                "ep_length": ((2, T, n), np.int64),
                "ep_score": ((2, T, n), np.float64),  # score difference (football) where reported, else NaN
                "params": ((num_params,), np.float32),  # published behaviour parameters
                "params_version": ((1,), np.int64),
                "stats": ((num_procs, len(STAT_NAMES)), np.float64),
            }
        )
        self.num_envs, self.alpha = n, T

    def window(self, buf: int) -> Window:
        """Zero-copy torch views of buffer ``buf``."""
        t = torch.from_numpy
        return Window(
            obs=t(self.obs[buf]),
            final_obs=t(self.final_obs[buf]),
            actions=t(self.actions[buf]),
            logp=t(self.logp[buf]),
            reward=t(self.reward[buf]),
            terminated=t(self.terminated[buf]),
            truncated=t(self.truncated[buf]),
            value=t(self.value[buf]),
        )

    def params_tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.params)
