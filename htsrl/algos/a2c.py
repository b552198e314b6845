"""A2C (Kostrikov's formulation): one gradient step per window on n-step (or GAE) returns.
Under data parallelism each rank sums its envs' terms, divides by the global batch and the
gradients are summed across ranks (see ppo.py).

The gradient forward covers the T rows that took actions; the bootstrap row ``obs[T]`` and the
truncated episodes' final observations go through one small no-grad forward.

In HTS mode the window was collected by theta_(w-1) and the step is taken at theta_w. With
``cfg.proximal == "current"`` each sample's policy-gradient term is weighted by
min(pi_theta_w / pi_behaviour, cfg.max_is_weight), the importance weight that makes the stale samples'
gradient an estimate of theta_w's (as IMPALA's truncated rho); values are theta_w's either way. In
lock-step mode the weight is 1 and both settings are Kostrikov's A2C."""

from __future__ import annotations

from htsrl.algos.returns import Window, gae, lag_metrics, lag_terms, window_forward
from htsrl.algos.step import actor_critic_step
from htsrl.distributed import SINGLE_PROCESS


def a2c_update(cfg, model, optimizer, w: Window, dp=SINGLE_PROCESS) -> dict[str, float]:
    T, N = w.reward.shape
    B = T * N * dp.world_size
    f = window_forward(model, w)
    _, returns = gae(w, f.next_values, f.trunc, cfg.gamma, cfg.gae_lambda)
    adv = returns - f.values
    logp = f.logp
    entropy = f.dist.entropy_sum() / B
    value_loss = adv.pow(2).sum() / B
    pg = adv.detach() * logp
    if cfg.lagged and cfg.proximal == "current":
        pg = (logp.detach() - w.logp).exp().clamp(max=cfg.max_is_weight) * pg
    policy_loss = -pg.sum() / B
    out = actor_critic_step(cfg, model, optimizer, dp, policy_loss, value_loss, entropy, (w.logp - logp).sum() / B)
    if cfg.lagged:
        out.update(lag_metrics(dp.sum_(lag_terms(logp.detach(), w.logp, None, cfg.max_is_weight)), with_clip=False))
    return out
