"""Generalized advantage estimation with time-limit bootstrapping, and where the pre-update values come
from.

An episode that ends by truncation (gymnasium ``truncated``) is not a terminal state: its reward is
topped up with ``gamma * V(final_obs)``, the value of the observation the env returned before it was
reset. Both kinds of episode end cut the recursion, because the next stored observation belongs to the
next episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Window:
    """One window of rollout as torch views of the shared buffer: ``T = alpha`` steps of ``N`` envs."""
    obs: torch.Tensor          # (T+1, N, *obs_shape); row T is the first observation of the next window
    final_obs: torch.Tensor    # (T, N, *obs_shape); valid where truncated
    actions: torch.Tensor      # (T, N) int64
    logp: torch.Tensor         # (T, N) behaviour log-probabilities
    reward: torch.Tensor       # (T, N)
    terminated: torch.Tensor   # (T, N) bool
    truncated: torch.Tensor    # (T, N) bool
    # (T, N) float32: V(obs[t]) as the actors computed it when they chose actions[t] (the behaviour
    # parameters, like ``logp``). None: PPO recomputes the values with one no-grad pass (slower).
    value: torch.Tensor | None = None

    def to(self, device, non_blocking: bool = False) -> Window:
        """A copy with every tensor on ``device`` (uint8 observations stay uint8)."""
        return Window(**{k: None if v is None else v.to(device, non_blocking=non_blocking)
                         for k, v in vars(self).items()})


def truncation_values(model, w: Window) -> torch.Tensor:
    """V(final_obs) where an episode was truncated, 0 elsewhere; (T, N)."""
    out = torch.zeros(w.reward.shape, dtype=torch.float32, device=w.reward.device)
    idx = (w.truncated & ~w.terminated).nonzero(as_tuple=True)
    if idx[0].numel():
        with torch.no_grad():
            _, v = model(w.final_obs[idx])
        out[idx] = v
    return out


def bootstrap_values(model, w: Window) -> tuple[torch.Tensor, torch.Tensor]:
    """``(V(obs[T]) (N,), truncation values (T, N))`` from one no-grad forward over the N bootstrap
    observations and the truncated episodes' final observations, with the current parameters."""
    T, N = w.reward.shape
    idx = (w.truncated & ~w.terminated).nonzero(as_tuple=True)
    obs = torch.cat([w.obs[T], w.final_obs[idx]]) if idx[0].numel() else w.obs[T]
    with torch.no_grad():
        _, v = model(obs)
    trunc = torch.zeros(w.reward.shape, dtype=torch.float32, device=w.reward.device)
    trunc[idx] = v[N:]
    return v[:N], trunc


def behaviour_terms(model, w: Window) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pre-update terms PPO's ratio, value clip and GAE start from: ``(logp (T, N), values (T+1, N),
    truncation values (T, N))``, all without gradient.

    ``logp`` and ``values[:T]`` are the ones the actors stored at collection time. In lock-step mode the
    actors ran the learner's current parameters, so they equal a recomputation up to floating-point
    grouping; in HTS mode they are the behaviour policy's, one update old (the standard PPO choice, as
    in CleanRL, SB3 and Kostrikov's code, which also use the rollout's values). Only ``values[T]`` (the
    bootstrap for the first observation of the next window) and the truncation values are computed here,
    with the current parameters. A window without stored values (``w.value is None``) gets all T+1
    values from one no-grad pass with the current parameters instead (the former behaviour).
    This is the one place to change to recompute log-probs and values with the current parameters.
    """
    T, N = w.actions.shape
    if w.value is None:
        with torch.no_grad():
            _, values = model(w.obs.flatten(0, 1))
        return w.logp, values.view(T + 1, N), truncation_values(model, w)
    last, trunc = bootstrap_values(model, w)
    return w.logp, torch.cat([w.value.to(last.dtype), last.unsqueeze(0)]), trunc


def gae(w: Window, values: torch.Tensor, trunc_values: torch.Tensor, gamma: float, lam: float):
    """values: (T+1, N) detached. Returns (advantages, returns), each (T, N)."""
    T = w.reward.shape[0]
    reward = w.reward + gamma * trunc_values * (w.truncated & ~w.terminated)
    not_end = 1.0 - (w.terminated | w.truncated).float()
    adv = torch.zeros_like(reward)
    last = torch.zeros_like(reward[0])
    for t in reversed(range(T)):
        delta = reward[t] + gamma * values[t + 1] * not_end[t] - values[t]
        last = delta + gamma * lam * not_end[t] * last
        adv[t] = last
    return adv, adv + values[:T]
