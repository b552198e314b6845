"""PPO-clip over one window.

What the ratio is centred on (the proximal policy) is ``cfg.proximal`` (see ``update_start`` in
returns.py). In HTS mode the window was collected by the parameters one update old, theta_(w-1),
while the update starts from theta_w:
- ``behaviour``: plain PPO; ratio pi_theta / pi_behaviour, values and log-probs as the actors stored
  them. Samples whose ratio is already outside the clip range at the first minibatch give no gradient.
- ``current``: decoupled PPO (Hilton et al. 2021); ratio pi_theta / pi_theta_w, clipped around theta_w,
  each sample's term weighted by pi_theta_w / pi_behaviour (clamped at ``cfg.max_is_weight``); values
  for GAE and the value clip from theta_w.
In lock-step mode the behaviour policy is theta_w, so both are plain PPO (and take the same numbers).

Under data parallelism (``dp``, see htsrl/distributed.py) ``w`` holds this rank's env columns
``[col0, col0 + N)`` of ``N * world_size``; the minibatch order is drawn over the global batch, each
rank sums the loss terms of its own rows and divides by the global minibatch size, and the gradients
are summed across ranks. With one process this is plain PPO.
"""

from __future__ import annotations

import operator
from functools import reduce

import torch

from htsrl.algos.returns import Window, gae, is_recurrent, lag_metrics, lag_terms, update_start
from htsrl.algos.step import ONE_PASS, LearnerShards, step_on_gradients
from htsrl.distributed import SINGLE_PROCESS
from htsrl.distributions import distribution, spec_of


def clipped_surrogate(
    ratio: torch.Tensor, adv: torch.Tensor, clip_coef: float, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample policy loss: ``max(-A r, -A clip(r, 1 - c, 1 + c))``, times ``weight`` (decoupled PPO's
    pi_proximal / pi_behaviour) where given; r = pi_theta / pi_proximal."""
    loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip_coef, 1 + clip_coef))
    return loss if weight is None else weight * loss


def _split(rows: torch.Tensor, shards: int) -> list[torch.Tensor]:
    """``rows`` in up to ``shards`` contiguous parts (none empty unless ``rows`` is)."""
    parts = [r for r in rows.tensor_split(shards) if len(r)]
    return parts or [rows]


def _minibatches(cfg, model, w: Window, generator: torch.Generator, n_global: int, col0: int, shards: int = 1):
    """Every epoch's minibatches in order, each as its parts ``[(idx, forward), ...]`` (``--learner-shards``;
    one part by default): ``idx`` the flat rows (t * N + env) of this rank's envs in the part, ``forward()``
    the network's ``(head, value)`` on those rows, with gradient. Feed-forward: ``B / minibatches`` rows
    drawn over the global batch. Recurrent: whole env columns (``n_global / minibatches`` envs drawn over
    all envs), each re-run over the window from its state at the window start, as Kostrikov's recurrent
    generator. The draw does not depend on ``shards``: the parts split the same minibatch."""
    T, N = w.reward.shape
    device = w.obs.device
    if not is_recurrent(model):
        obs = w.obs[:T].flatten(0, 1)
        B = T * n_global
        mb_size = B // cfg.minibatches
        for _ in range(cfg.epochs):
            perm = torch.randperm(B, generator=generator).to(device)  # drawn on CPU: same order on any device
            for start in range(0, B, mb_size):
                g = perm[start : start + mb_size]  # global rows (t * n_global + env)
                t, env = g // n_global, g % n_global - col0
                idx = (t * N + env)[(env >= 0) & (env < N)]  # the rows this rank owns
                yield [(part, lambda part=part: model(obs[part])) for part in _split(idx, shards)]
        return
    envs_per_mb = n_global // cfg.minibatches
    steps = torch.arange(T, device=device).unsqueeze(1)

    def forward(cols):
        head, value, _ = model.sequence(w.obs[:T, cols], w.hidden[0, cols], w.starts[:T, cols])
        return head.flatten(0, 1), value.flatten()

    for _ in range(cfg.epochs):
        perm = torch.randperm(n_global, generator=generator).to(device)
        for start in range(0, n_global, envs_per_mb):
            env = perm[start : start + envs_per_mb] - col0
            cols = env[(env >= 0) & (env < N)]  # the envs this rank owns
            # row order (t, env), as the flat tensors
            yield [((steps * N + part).flatten(), lambda part=part: forward(part)) for part in _split(cols, shards)]


def ppo_update(
    cfg, model, optimizer, w: Window, generator: torch.Generator, dp=SINGLE_PROCESS, shards: LearnerShards = ONE_PASS
) -> dict[str, float]:
    T, N = w.reward.shape
    lagged = cfg.lagged  # collected by older parameters than the learner's
    pre = update_start(model, w, lagged and cfg.proximal == "current", cfg.max_is_weight)
    values = pre.values
    adv, returns = gae(w, values, pre.trunc, cfg.gamma, cfg.gae_lambda)

    actions, old_logp = w.actions.flatten(0, 1), pre.logp.flatten()
    weight = pre.weight.flatten() if pre.weight is not None else None
    lag = None  # lag diagnostics: pi_theta_w against pi_behaviour
    if lagged and weight is not None:  # every sample's pi_theta_w is known
        lag = lag_terms(pre.logp, w.logp, cfg.clip_coef, cfg.max_is_weight)
    adv, returns, old_values = adv.flatten(), returns.flatten(), values[:T].flatten()
    n_global, col0 = N * dp.world_size, dp.env_offset(N * dp.world_size)
    B = T * n_global  # the global batch
    if cfg.norm_adv:
        moments = dp.sum_(torch.stack([adv.sum(), (adv * adv).sum()]).double())
        mean = moments[0] / B
        std = ((moments[1] - B * mean * mean) / (B - 1)).clamp_min(0).sqrt()
        adv = ((adv - mean) / (std + 1e-8)).float()

    mb_size = B // cfg.minibatches

    def part_of_minibatch(idx: torch.Tensor, forward, with_lag: bool) -> tuple:
        """One part's loss (its rows' terms over the whole minibatch's size: the parts' losses add up to the
        minibatch's) and its detached sums: the metrics row, and (``with_lag``) the lag terms of its rows."""
        logits, v = forward()
        dist = distribution(spec_of(model), logits)
        logp = dist.log_prob(actions[idx])
        log_ratio = logp - old_logp[idx]
        ratio = log_ratio.exp()
        surrogate = clipped_surrogate(ratio, adv[idx], cfg.clip_coef, weight[idx] if weight is not None else None)
        policy_loss = surrogate.sum() / mb_size
        if cfg.clip_value_loss:
            v_clip = old_values[idx] + (v - old_values[idx]).clamp(-cfg.clip_coef, cfg.clip_coef)
            value_loss = 0.5 * torch.max((v - returns[idx]) ** 2, (v_clip - returns[idx]) ** 2).sum() / mb_size
        else:
            value_loss = 0.5 * ((v - returns[idx]) ** 2).sum() / mb_size
        entropy = dist.entropy_sum() / mb_size
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy  # entropy is a bonus
        with torch.no_grad():
            row = torch.stack(
                [
                    policy_loss,
                    value_loss,
                    entropy,
                    ((ratio - 1) - log_ratio).sum() / mb_size,
                    ((ratio - 1).abs() > cfg.clip_coef).float().sum() / mb_size,
                ]
            )
            lag_row = lag_terms(logp, old_logp[idx], cfg.clip_coef, cfg.max_is_weight) if with_lag else None
        return loss, row, lag_row

    stats: dict[str, list[float]] = {}
    for parts in _minibatches(cfg, model, w, generator, n_global, col0, shards.shards):
        # behaviour is proximal: theta == theta_w at the first minibatch, whose lag terms are kept
        with_lag = lagged and lag is None
        calls = [lambda p=p, lag_too=with_lag: part_of_minibatch(*p, lag_too) for p in parts]
        outputs = shards.backward(model, optimizer, calls)
        row = reduce(operator.add, (part_row for part_row, _ in outputs))  # in part order
        if with_lag:
            lag = reduce(operator.add, (part_lag for _, part_lag in outputs))
        grad_norm = step_on_gradients(
            model, optimizer, cfg.max_grad_norm, dp, policy=row[0], value=row[1], entropy=row[2]
        )
        row = dp.sum_(row)
        for k, val in zip(
            ("losses/policy", "losses/value", "losses/entropy", "losses/approx_kl", "losses/clipfrac"), row.tolist()
        ):
            stats.setdefault(k, []).append(val)
        stats.setdefault("losses/grad_norm", []).append(grad_norm.item())
    out = {k: sum(v) / len(v) for k, v in stats.items()}
    if lag is not None:
        out.update(lag_metrics(dp.sum_(lag), with_clip=True))
    var = returns.var()  # this rank's envs
    out["losses/explained_variance"] = float("nan") if var == 0 else (1 - (returns - old_values).var() / var).item()
    return out
