"""V-trace targets (Espeholt et al. 2018, "IMPALA: Scalable Distributed Deep-RL with Importance Weighted
Actor-Learner Architectures", section 4.1) over one window of ``T`` steps of ``N`` envs.

With rho_t = pi(a_t|x_t) / mu(a_t|x_t) (pi: the learner's policy, mu: the behaviour policy that acted),
rho_bar and c_bar the truncation levels and lambda as in the paper's remark 2:

    delta_t = min(rho_bar, rho_t) * (r_t + gamma_t * V(x_{t+1}) - V(x_t))
    vs_t    = V(x_t) + delta_t + gamma_t * lambda * min(c_bar, rho_t) * (vs_{t+1} - V(x_{t+1}))
    adv_t   = min(rho_bar, rho_t) * (r_t + gamma_t * vs_{t+1} - V(x_t))

with vs_T = V(x_T), the bootstrap value of the next window's first observation. rho_bar sets the fixed
point the values converge to: the value of pi_rho_bar, a policy between mu and pi (the paper's Theorem 1;
pi_rho_bar(a|x) is proportional to min(rho_bar * mu(a|x), pi(a|x))), which is V^pi only for an untruncated
rho_bar (or when mu = pi, as with no lag); c_bar sets only how fast. The paper, SEED RL and TorchBeast use
1 for both and the same rho_bar in the policy gradient.

Episode ends follow ``gae`` in returns.py exactly: gamma_t = gamma * (1 - done_t), so an end cuts both
the bootstrap and the recursion (the next stored observation belongs to the next episode), and a
truncated step's reward is topped up with gamma * V(final observation). On-policy (rho = 1, both bars
>= 1) vs is GAE(lambda)'s return and, with lambda = 1, adv is its advantage: the n-step returns of A2C.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from htsrl.algos.returns import Window


@dataclass
class VTrace:
    """Targets of one window, all (T, N) and without gradient."""

    vs: torch.Tensor  # the value targets
    pg_adv: torch.Tensor  # min(rho_bar, rho_t) * (r_t + gamma_t * vs_{t+1} - V(x_t)): the policy-gradient weight
    rho: torch.Tensor  # the untruncated importance weights pi / mu


def vtrace(
    w: Window,
    target_logp: torch.Tensor,
    values: torch.Tensor,
    trunc_values: torch.Tensor,
    gamma: float,
    lam: float = 1.0,
    rho_bar: float = 1.0,
    c_bar: float = 1.0,
) -> VTrace:
    """``target_logp`` (T, N): log pi(a_t|x_t) of the learner's policy (the behaviour's is ``w.logp``);
    ``values`` (T+1, N): V(x_t) and, in row T, the bootstrap value; ``trunc_values`` (T, N): V(final
    observation) where a step was truncated. Everything is detached here."""
    T = w.reward.shape[0]
    values, target_logp = values.detach(), target_logp.detach()
    rho = (target_logp - w.logp).exp()
    rho_clipped = rho.clamp(max=rho_bar)
    c = lam * rho.clamp(max=c_bar)
    reward = w.reward + gamma * trunc_values.detach() * (w.truncated & ~w.terminated)
    discount = gamma * (1.0 - (w.terminated | w.truncated).float())
    deltas = rho_clipped * (reward + discount * values[1:] - values[:T])
    vs_minus_v = torch.zeros_like(deltas)
    acc = torch.zeros_like(deltas[0])
    for t in reversed(range(T)):
        acc = deltas[t] + discount[t] * c[t] * acc
        vs_minus_v[t] = acc
    vs = vs_minus_v + values[:T]
    vs_next = torch.cat([vs[1:], values[T:]])
    pg_adv = rho_clipped * (reward + discount * vs_next - values[:T])
    return VTrace(vs, pg_adv, rho)
