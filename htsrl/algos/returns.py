"""Generalized advantage estimation with time-limit bootstrapping.

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


def truncation_values(model, w: Window) -> torch.Tensor:
    """V(final_obs) where an episode was truncated, 0 elsewhere; (T, N)."""
    out = torch.zeros(w.reward.shape, dtype=torch.float32, device=w.reward.device)
    idx = (w.truncated & ~w.terminated).nonzero(as_tuple=True)
    if idx[0].numel():
        with torch.no_grad():
            _, v = model(w.final_obs[idx])
        out[idx] = v
    return out


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
