"""Shared memory: the rollout buffers, the published parameters and per-process counters.

Everything lives in one shared mapping of an anonymous memory file (``memfd_create``), made before the
roles start: a forked child inherits the mapping, a spawned one (``--start-method spawn``) maps the
file from the descriptor it is passed when it is started (``SharedArrays.__reduce__``). The file has no
name in /dev/shm and is freed with its last descriptor and mapping: nothing can leak, even on SIGKILL.

Buffer ``buf`` holds one window of ``alpha`` steps for ``num_envs`` envs; window ``window`` lives in
buffer ``slot(window) == window % num_slots`` (two in HTS and lock-step mode, ``--async-slots`` in async
mode). Row ``t`` of ``obs`` is the observation on which ``actions[t]`` was taken; row ``alpha`` is the
first observation of the next window. ``starts[t]`` says that ``obs[t]`` begins an episode, and
``hidden[t]`` is the recurrent state (``--recurrent``; zero floats otherwise) the step on ``obs[t]``
started from: actors write ``hidden[t]`` (zeroed where ``starts[t]``) and ``hidden[t + 1]``; row
``alpha`` of both, like ``obs``, is carried to row 0 of the next window.

The parameters are published into one of two slots, then the slot is made current: a reader never sees
a half-written set. In HTS and lock-step mode nothing reads while they are published (barriers); in
async mode actors read while the learner writes, and a per-slot sequence number (odd while it is
written) tells an actor that the slot it used was rewritten during its forward (see actor.py).
"""

from __future__ import annotations

import mmap
import os
import weakref

import numpy as np
import torch

from htsrl.algos.returns import Window
from htsrl.distributions import ActionSpec
from htsrl.engine.channels import close_fd

# Per-process counters (seconds) in ``stats``; one row per role process, the last row is the learner.
STAT_NAMES = ("cpu_s", "env_s", "infer_s", "wait_s", "ipc_s", "learn_s")
STAT = {name: i for i, name in enumerate(STAT_NAMES)}
# Row ``alpha`` of these is where the envs stand after a window, and becomes row 0 of the next one.
CARRIED_ROWS = ("obs", "starts", "hidden")


class SharedArrays:
    """Numpy arrays carved out of one shared mapping of an anonymous memory file (64-byte aligned).

    Pickled (only while a child is spawned: ``multiprocessing`` passes the descriptor to it), it is the
    same memory in the child: the file is mapped again there and the arrays are laid out alike."""

    def __init__(self, specs: dict[str, tuple[tuple[int, ...], np.dtype]]):
        layout, size = {}, 0
        for name, (shape, dtype) in specs.items():
            size = (size + 63) // 64 * 64
            layout[name] = (tuple(shape), np.dtype(dtype), size)
            size += int(np.prod(shape)) * np.dtype(dtype).itemsize
        fd = os.memfd_create("htsrl-buffers", os.MFD_CLOEXEC)
        os.ftruncate(fd, max(size, 1))
        self._map(fd, layout, size)

    def _map(self, fd: int, layout: dict, size: int) -> None:
        self._fd, self._layout, self.nbytes = fd, layout, size
        weakref.finalize(self, close_fd, fd)
        self._mm = mmap.mmap(fd, max(size, 1))  # MAP_SHARED
        for name, (shape, dtype, offset) in layout.items():
            setattr(self, name, np.ndarray(shape, dtype, buffer=self._mm, offset=offset))

    def __reduce__(self):
        from multiprocessing.reduction import DupFd

        arrays = set(self._layout) | {"_fd", "_layout", "nbytes", "_mm"}
        plain = {k: v for k, v in self.__dict__.items() if k not in arrays}  # e.g. RolloutBuffers' sizes
        return _attach, (type(self), DupFd(self._fd), self._layout, self.nbytes, plain)


def _attach(cls, fd, layout: dict, size: int, plain: dict) -> SharedArrays:
    """The other side of ``SharedArrays.__reduce__``: map the file a spawned child was passed."""
    obj = cls.__new__(cls)
    obj.__dict__.update(plain)
    obj._map(fd.detach(), layout, size)
    return obj


class RolloutBuffers(SharedArrays):
    def __init__(
        self,
        num_envs: int,
        alpha: int,
        obs_shape,
        obs_dtype,
        params_size: int,
        num_procs: int,
        num_slots: int = 2,
        action_spec: ActionSpec | None = None,
        state_size: int = 0,
    ):
        """``action_spec`` (default: a Discrete space) sets the layout of ``actions`` (int64 scalars for
        Discrete, int64 vectors for MultiDiscrete, float32 vectors for Box) and of ``uniforms`` (one per
        env-step for Discrete, one per action dimension or sub-action otherwise). ``state_size``: the
        network's recurrent state per env (0: feed-forward). ``params_size``: the length of the published
        vector (``nn.flat_size``, a multiple of 16 floats, so both slots start 64-byte aligned)."""
        n, T, K = num_envs, alpha, num_slots
        spec = action_spec or ActionSpec.discrete(2)
        super().__init__(
            {
                "obs": ((K, T + 1, n, *obs_shape), obs_dtype),
                "final_obs": ((K, T, n, *obs_shape), obs_dtype),  # untouched pages cost no memory
                "starts": ((K, T + 1, n), np.bool_),  # obs[t] begins an episode
                "hidden": ((K, T + 1, n, state_size), np.float32),  # recurrent state before step t
                "actions": ((K, T, n, *spec.action_shape), spec.action_dtype),  # Box: unclipped samples
                "logp": ((K, T, n), np.float32),
                "value": ((K, T, n), np.float32),
                "reward": ((K, T, n), np.float32),
                "terminated": ((K, T, n), np.bool_),
                "truncated": ((K, T, n), np.bool_),
                # per-env action-sampling streams, drawn at barriers
                "uniforms": ((K, T, n, *spec.uniform_shape), np.float64),
                "version": ((K, T, n), np.int64),  # parameter version that chose each action
                "ep_return": ((K, T, n), np.float64),  # true episode score where an episode ended, else NaN
                "ep_length": ((K, T, n), np.int64),
                "ep_score": ((K, T, n), np.float64),  # score difference (football) where reported, else NaN
                "params": ((2, params_size), np.float32),  # two slots of published parameters (nn.flat_size)
                "params_version": ((2,), np.int64),  # the version in each slot
                "params_seq": ((2,), np.int64),  # per slot: odd while it is being written
                "params_slot": ((1,), np.int64),  # the slot actors use
                "stats": ((num_procs, len(STAT_NAMES)), np.float64),
            }
        )
        self.num_envs, self.alpha, self.num_slots, self.action_spec = n, T, K, spec
        self.state_size = state_size

    def slot(self, window: int) -> int:
        """The buffer that holds ``window``."""
        return window % self.num_slots

    def publish(self, flat: torch.Tensor, version: int) -> None:
        """Write parameters into the slot actors do not use, then make it theirs."""
        s = 1 - int(self.params_slot[0])
        self.params_seq[s] += 1  # odd: being written
        torch.from_numpy(self.params[s]).copy_(flat)
        self.params_version[s] = version
        self.params_seq[s] += 1
        self.params_slot[0] = s

    def published(self) -> np.ndarray:
        """The current published parameters (a view)."""
        return self.params[int(self.params_slot[0])]

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
            starts=t(self.starts[buf]),
            hidden=t(self.hidden[buf]),
        )

    def params_tensor(self, slot: int) -> torch.Tensor:
        return torch.from_numpy(self.params[slot])
