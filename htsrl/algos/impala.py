"""IMPALA's actor-critic loss on V-trace targets (Espeholt et al. 2018): one gradient step per window,
like A2C (a2c.py), on the same data-parallel convention (each rank sums its envs' terms and divides by
the global batch; the gradients are summed across ranks).

The target policy pi is the learner's current parameters, forwarded with gradient; the behaviour policy
mu is the one whose log-probabilities the actors stored. The loss, per sample, summed and divided by
the batch (SEED RL's means; the paper's code and TorchBeast sum, see presets.py):

    -min(rho_bar, rho_t) * (r_t + gamma vs_{t+1} - V(x_t)) * log pi(a_t|x_t)      policy
    + vf_coef * 0.5 * (vs_t - V(x_t))^2                                          baseline
    - ent_coef * H(pi(.|x_t))                                                    entropy bonus

``--proximal`` and ``--max-is-weight`` are not read: V-trace is its own correction of the lag. In HTS
mode the window was collected by theta_(w-1) and the step is taken at theta_w, so rho corrects a lag of
exactly one update; in lock-step mode rho == 1 and the update is A2C on GAE(lambda) value targets
(n-step returns with lambda = 1), with IMPALA's 0.5 in the value loss.
"""

from __future__ import annotations

from htsrl.algos.returns import Window, lag_metrics, lag_terms, window_forward
from htsrl.algos.step import actor_critic_step
from htsrl.algos.vtrace import vtrace
from htsrl.distributed import SINGLE_PROCESS


def impala_update(cfg, model, optimizer, w: Window, dp=SINGLE_PROCESS) -> dict[str, float]:
    T, N = w.reward.shape
    B = T * N * dp.world_size
    f = window_forward(model, w)
    logp, values = f.logp, f.values
    targets = vtrace(w, logp, f.next_values, f.trunc, cfg.gamma, cfg.gae_lambda, cfg.vtrace_rho_bar, cfg.vtrace_c_bar)
    policy_loss = -(targets.pg_adv * logp).sum() / B
    value_loss = 0.5 * (targets.vs - values).pow(2).sum() / B
    entropy = f.dist.entropy_sum() / B
    out = actor_critic_step(cfg, model, optimizer, dp, policy_loss, value_loss, entropy, (w.logp - logp).sum() / B)
    if cfg.lagged:  # weight_clamped: the share of samples whose rho exceeds rho_bar
        sums = dp.sum_(lag_terms(logp.detach(), w.logp, None, cfg.vtrace_rho_bar))
        out.update(lag_metrics(sums, with_clip=False))
    return out
