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

from htsrl.distributions import distribution, spec_of


@dataclass
class Window:
    """One window of rollout as torch views of the shared buffer: ``T = alpha`` steps of ``N`` envs."""

    obs: torch.Tensor  # (T+1, N, *obs_shape); row T is the first observation of the next window
    final_obs: torch.Tensor  # (T, N, *obs_shape); valid where truncated
    actions: torch.Tensor  # (T, N, *action_shape): int64 (Discrete: (T, N)), float32 Box samples (unclipped)
    logp: torch.Tensor  # (T, N) behaviour log-probabilities
    reward: torch.Tensor  # (T, N)
    terminated: torch.Tensor  # (T, N) bool
    truncated: torch.Tensor  # (T, N) bool
    value: torch.Tensor  # (T, N) V(obs[t]) as the actors computed it (behaviour parameters, like logp)
    # recurrent networks only (feed-forward updates never read them; windows built by hand may omit them)
    starts: torch.Tensor | None = None  # (T+1, N) bool: obs[t] begins an episode
    hidden: torch.Tensor | None = None  # (T+1, N, S) the state each step started from; the learner reads row 0

    def to(self, device, non_blocking: bool = False) -> Window:
        """A copy with every tensor on ``device`` (uint8 observations stay uint8)."""
        return Window(**{k: v if v is None else v.to(device, non_blocking=non_blocking) for k, v in vars(self).items()})


def is_recurrent(model) -> bool:
    return getattr(model, "core", None) is not None


def _recurrent_bootstrap(model, w: Window, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``bootstrap_values`` for a recurrent network, given ``states`` (T, N, S), the state after each step
    of the window re-run: ``obs[T]`` is stepped from the last state (zeroed where it begins an episode),
    a truncated episode's final observation from the state after its last step."""
    T, N = w.reward.shape
    idx = (w.truncated & ~w.terminated).nonzero(as_tuple=True)
    obs = torch.cat([w.obs[T], w.final_obs[idx]])
    state = torch.cat([states[T - 1], states[idx]])
    starts = torch.cat([w.starts[T], torch.zeros(idx[0].numel(), dtype=torch.bool, device=w.starts.device)])
    with torch.no_grad():
        _, v, _, _ = model.step(obs, state, starts)
    trunc = torch.zeros(w.reward.shape, dtype=torch.float32, device=w.reward.device)
    trunc[idx] = v[N:]
    return v[:N], trunc


def _recurrent_sequence(model, w: Window):
    """A recurrent network re-run over the window from the state its actors started it with
    (``hidden[0]``): ``(head (T, N, ...), values (T, N), states (T, N, S))``, with gradient if enabled."""
    T = w.reward.shape[0]
    return model.sequence(w.obs[:T], w.hidden[0], w.starts[:T])


def bootstrap_values(model, w: Window) -> tuple[torch.Tensor, torch.Tensor]:
    """``(V(obs[T]) (N,), truncation values (T, N))`` from one no-grad forward over the N bootstrap
    observations and the truncated episodes' final observations, with the current parameters (a
    recurrent network re-runs the window first, to reach the states they are stepped from)."""
    T, N = w.reward.shape
    if is_recurrent(model):
        with torch.no_grad():
            _, _, states = _recurrent_sequence(model, w)
        return _recurrent_bootstrap(model, w, states)
    idx = (w.truncated & ~w.terminated).nonzero(as_tuple=True)
    obs = torch.cat([w.obs[T], w.final_obs[idx]]) if idx[0].numel() else w.obs[T]
    with torch.no_grad():
        _, v = model(obs)
    trunc = torch.zeros(w.reward.shape, dtype=torch.float32, device=w.reward.device)
    trunc[idx] = v[N:]
    return v[:N], trunc


@dataclass
class WindowForward:
    """One whole-window forward with gradient (A2C, IMPALA: one gradient step per window)."""

    dist: object  # the policy's distribution at every (t, env)
    logp: torch.Tensor  # (T, N) log-probabilities of the actions taken, with gradient
    values: torch.Tensor  # (T, N) V(obs[t]), with gradient
    next_values: torch.Tensor  # (T+1, N) the values without gradient, then V(obs[T]) as row T
    trunc: torch.Tensor  # (T, N) values of truncated episodes' final observations


def window_forward(model, w: Window) -> WindowForward:
    """The T rows that took actions go through the gradient forward; the bootstrap row and the final
    observations of truncated episodes through one small no-grad forward (``bootstrap_values``)."""
    T, N = w.reward.shape
    if is_recurrent(model):  # the window re-run from its start state, with gradient through the core
        logits, values, states = _recurrent_sequence(model, w)
        last, trunc = _recurrent_bootstrap(model, w, states.detach())
    else:
        logits, values = model(w.obs[:T].flatten(0, 1))
        logits, values = logits.view(T, N, -1), values.view(T, N)
        last, trunc = bootstrap_values(model, w)
    dist = distribution(spec_of(model), logits)
    next_values = torch.cat([values.detach(), last.unsqueeze(0)])
    return WindowForward(dist, dist.log_prob(w.actions), values, next_values, trunc)


@dataclass
class UpdateStart:
    """What an update starts from, all without gradient (``T`` steps of ``N`` envs).

    ``logp`` is the proximal policy's log-probability of each action: what PPO's ratio and clip are
    centred on. ``values`` (T+1 rows) feed GAE and the value clip; ``trunc`` are the values of truncated
    episodes' final observations. ``weight`` is pi_proximal / pi_behaviour per sample, clamped, when
    the proximal policy is not the one that collected the window (else None)."""

    logp: torch.Tensor
    values: torch.Tensor
    trunc: torch.Tensor
    weight: torch.Tensor | None = None


def update_start(model, w: Window, proximal_current: bool, max_weight: float) -> UpdateStart:
    """The one place that decides where an update's pre-update terms come from.

    ``proximal_current=False`` (the behaviour policy is proximal: plain PPO/A2C): the log-probs and
    values the actors stored, as CleanRL, SB3 and Kostrikov's code use the rollout's own; only the
    bootstrap value ``V(obs[T])`` and the truncation values are computed here. In HTS mode these are
    one update old.

    ``proximal_current=True`` (decoupled PPO, Hilton et al. 2021, "Batch size-invariance for policy
    optimization"): one no-grad forward with the learner's parameters at the start of the update,
    theta_w, gives the proximal log-probs and every value; the samples, collected by theta_(w-1), are
    weighted by ``min(pi_theta_w / pi_behaviour, max_weight)``.
    """
    if not proximal_current:
        last, trunc = bootstrap_values(model, w)
        return UpdateStart(w.logp, torch.cat([w.value.to(last.dtype), last.unsqueeze(0)]), trunc)
    T, N = w.reward.shape
    if is_recurrent(model):
        with torch.no_grad():
            logits, values, states = _recurrent_sequence(model, w)
        last, trunc = _recurrent_bootstrap(model, w, states)
        logp = distribution(spec_of(model), logits).log_prob(w.actions)
        weight = (logp - w.logp).exp().clamp(max=max_weight)
        return UpdateStart(logp, torch.cat([values, last.unsqueeze(0)]), trunc, weight)
    idx = (w.truncated & ~w.terminated).nonzero(as_tuple=True)
    obs = w.obs.flatten(0, 1)
    if idx[0].numel():
        obs = torch.cat([obs, w.final_obs[idx]])
    with torch.no_grad():
        logits, v = model(obs)
    logp = distribution(spec_of(model), logits[: T * N]).log_prob(w.actions.flatten(0, 1)).view(T, N)
    trunc = torch.zeros(w.reward.shape, dtype=torch.float32, device=w.reward.device)
    trunc[idx] = v[(T + 1) * N :]
    weight = (logp - w.logp).exp().clamp(max=max_weight)
    return UpdateStart(logp, v[: (T + 1) * N].view(T + 1, N), trunc, weight)


def lag_terms(
    logp_current: torch.Tensor, logp_behaviour: torch.Tensor, clip_coef: float | None, max_weight: float
) -> torch.Tensor:
    """Sums over samples for the lag diagnostics, as one tensor (to add across ranks):
    [count, sum of r, sum of the KL estimate (r - 1) - log r, samples with |r - 1| > clip_coef,
    samples with r > max_weight], where r = pi_current / pi_behaviour. pi_current is the learner's
    policy at the start of the update; in lock-step mode r == 1."""
    log_r = (logp_current - logp_behaviour).double()
    r = log_r.exp()
    clipped = (
        ((r - 1).abs() > clip_coef).sum()
        if clip_coef is not None
        else torch.zeros((), dtype=torch.int64, device=r.device)
    )
    return torch.stack(
        [
            torch.tensor(float(r.numel()), dtype=torch.float64, device=r.device),  # on the learner's device
            r.sum(),
            ((r - 1) - log_r).sum(),
            clipped.double(),
            (r > max_weight).sum().double(),
        ]
    )


def lag_metrics(sums: torch.Tensor, with_clip: bool) -> dict[str, float]:
    """``lag/*`` metrics from :func:`lag_terms` (summed over ranks)."""
    n = max(sums[0].item(), 1.0)
    out = {
        "lag/ratio_current_behaviour": sums[1].item() / n,
        "lag/kl_behaviour_current": sums[2].item() / n,
        "lag/weight_clamped": sums[4].item() / n,
    }
    if with_clip:
        out["lag/clipfrac_at_start"] = sums[3].item() / n
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
