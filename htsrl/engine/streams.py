"""Every random stream of a run, derived from the master seed and an env's id, never from the layout.

- the k-th reset of env i uses ``reset_seed(seed, i, k)``, so any episode can be rebuilt from its seed
  and the actions taken since it began (see history.py);
- env i samples its actions from its own stream: at each barrier the runner draws the next ``alpha``
  steps' uniforms of every env's stream into the buffer, and whichever actor serves the env turns
  ``u[t, i]`` into an action by inverse-CDF sampling (``htsrl.distributions``; one uniform per env-step
  for a Discrete action, one per dimension or sub-action otherwise, consecutive in the env's stream).
  Which actor or executor touched the env, and when, cannot change the action;
- the learner's initial weights and its minibatch order come from their own streams.
"""

from __future__ import annotations

import numpy as np
import torch

from htsrl.distributions import Categorical

_ENV, _ACTIONS, _WEIGHTS, _MINIBATCH = 0, 1, 2, 3


def _seq(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=key)


def reset_seed(seed: int, env_index: int, reset_index: int) -> int:
    return int(_seq(seed, _ENV, env_index, reset_index).generate_state(1)[0])


def weights_seed(seed: int) -> int:
    return int(_seq(seed, _WEIGHTS).generate_state(1, np.uint64)[0] >> 1)


def minibatch_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(_seq(seed, _MINIBATCH).generate_state(1, np.uint64)[0] >> 1))


class ActionStreams:
    """One PCG64 stream per env."""

    def __init__(self, seed: int, num_envs: int, env_offset: int = 0):
        self.rngs = [
            np.random.Generator(np.random.PCG64(_seq(seed, _ACTIONS, env_offset + i))) for i in range(num_envs)
        ]

    def fill(self, uniforms: np.ndarray) -> None:
        """uniforms: (alpha, num_envs, *uniform_shape) slice of the buffer; column i gets env i's next
        draws, step by step (with one uniform per step: the next alpha draws, as rng.random(alpha))."""
        for i, rng in enumerate(self.rngs):
            uniforms[:, i] = rng.random(uniforms[:, i].shape)

    def state(self) -> list[dict]:
        return [r.bit_generator.state for r in self.rngs]

    def set_state(self, states: list[dict]) -> None:
        for r, s in zip(self.rngs, states):
            r.bit_generator.state = s


def sample(logits: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse-CDF categorical sample from uniforms ``u`` (one per row): (actions, log-probs).
    Kept for Discrete callers; every action space is in ``htsrl.distributions``."""
    return Categorical(logits).sample(u)
