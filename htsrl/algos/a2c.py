"""A2C (Kostrikov's formulation): one gradient step per window on n-step (or GAE) returns.
Under data parallelism each rank sums its envs' terms, divides by the global batch and the
gradients are summed across ranks (see ppo.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from htsrl.algos.guards import check_finite
from htsrl.algos.returns import Window, gae, truncation_values
from htsrl.distributed import Local


def a2c_update(cfg, model, optimizer, w: Window, dp=Local()) -> dict[str, float]:
    T, N = w.actions.shape
    B = T * N * dp.world_size
    logits, values = model(w.obs.flatten(0, 1))
    logits, values = logits.view(T + 1, N, -1)[:T], values.view(T + 1, N)
    _, returns = gae(w, values.detach(), truncation_values(model, w), cfg.gamma, cfg.gae_lambda)
    adv = returns - values[:T]
    logp_all = F.log_softmax(logits, -1)
    logp = logp_all.gather(-1, w.actions.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum() / B
    value_loss = adv.pow(2).sum() / B
    policy_loss = -(adv.detach() * logp).sum() / B
    loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy  # entropy is a bonus
    optimizer.zero_grad(set_to_none=False)
    loss.backward()
    dp.sum_grads(model)
    check_finite(model, policy=policy_loss, value=value_loss, entropy=entropy)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    optimizer.step()
    with torch.no_grad():
        row = dp.sum_(torch.stack([policy_loss, value_loss, entropy, (w.logp - logp).sum() / B]).detach())
    return {"losses/policy": row[0].item(), "losses/value": row[1].item(), "losses/entropy": row[2].item(),
            "losses/approx_kl": row[3].item(), "losses/grad_norm": grad_norm.item()}
