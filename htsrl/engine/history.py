"""Each env's history since its current real episode began, kept by the main process.

An env's state is a function of the seed of the reset that began its real episode and the actions
taken since (every reset is seeded, see ``streams.reset_seed``). The main process records both from
the rollout buffer at every barrier, so an env can be rebuilt in any process, at the exact state it
had at the last barrier: on resume from a checkpoint, and when a crashed executor is replaced.
A "real" episode end is one the innermost wrapper reports (``ep_return`` not NaN); Atari's
life-loss ends are training-only and do not reset the game.
"""

from __future__ import annotations

import numpy as np

from htsrl.errors import ReplayMismatch


class EnvHistory:
    """Per buffer column. An env of several players (``players`` columns, ``envs.PlayerSet``) reports its
    real episode end on its first column only; every column of the env takes that end."""

    def __init__(self, num_envs: int, players: int = 1):
        self.players = players
        self.resets = [1] * num_envs  # top-level reset calls made so far (the first at start)
        self.start_reset = [0] * num_envs  # index of the reset that began the current real episode
        self.actions: list[list[int]] = [[] for _ in range(num_envs)]
        self.dones: list[list[bool]] = [[] for _ in range(num_envs)]  # to check a replay against

    def record_window(self, actions: np.ndarray, done: np.ndarray, real_end: np.ndarray) -> None:
        """actions, done (terminated|truncated), real_end: (alpha, num_envs) of one finished window."""
        if self.players > 1:
            real_end = np.repeat(real_end[:, :: self.players], self.players, axis=1)
        cum_done = np.cumsum(done, axis=0)
        for i in range(actions.shape[1]):
            ends = np.flatnonzero(real_end[:, i])
            if ends.size:
                p = int(ends[-1])
                self.start_reset[i] = self.resets[i] + int(cum_done[p, i]) - 1  # the reset right after p
                self.actions[i] = actions[p + 1 :, i].tolist()
                self.dones[i] = done[p + 1 :, i].tolist()
            else:
                self.actions[i].extend(actions[:, i].tolist())
                self.dones[i].extend(done[:, i].tolist())
            self.resets[i] += int(cum_done[-1, i])

    def state_dict(self) -> dict:
        return {
            "resets": list(self.resets),
            "start_reset": list(self.start_reset),
            "actions": [list(a) for a in self.actions],
            "dones": [list(d) for d in self.dones],
        }

    def load_state_dict(self, state: dict) -> None:
        self.resets = list(state["resets"])
        self.start_reset = list(state["start_reset"])
        self.actions = [list(a) for a in state["actions"]]
        self.dones = [list(d) for d in state["dones"]]


def replay(env, seed_of, start_reset: int, actions: list, dones: list[bool], to_env=None):
    """Reset ``env`` with the seed of reset ``start_reset`` and retake ``actions`` (each as ``to_env(a)``
    where given: a recorded Box action is clipped as the env received it); returns
    ``(obs, resets_done)``, the env's current observation and the number of top-level resets made."""
    k = start_reset
    obs, _ = env.reset(seed=seed_of(k))
    for step, (a, expected_done) in enumerate(zip(actions, dones)):
        obs, _, terminated, truncated, _ = env.step(a if to_env is None else to_env(a))
        if bool(terminated or truncated) != bool(expected_done):
            raise ReplayMismatch(
                f"replayed episode diverged at step {step} (done={terminated or truncated}, recorded {expected_done})"
            )
        if terminated or truncated:
            k += 1
            obs, _ = env.reset(seed=seed_of(k))
    return obs, k + 1
