"""A2C (Kostrikov's formulation): one gradient step per window on n-step (or GAE) returns."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from htsrl.algos.guards import check_finite
from htsrl.algos.returns import Window, gae, truncation_values


def a2c_update(cfg, model, optimizer, w: Window) -> dict[str, float]:
    T, N = w.actions.shape
    logits, values = model(w.obs.flatten(0, 1))
    logits, values = logits.view(T + 1, N, -1)[:T], values.view(T + 1, N)
    _, returns = gae(w, values.detach(), truncation_values(model, w), cfg.gamma, cfg.gae_lambda)
    adv = returns - values[:T]
    logp_all = F.log_softmax(logits, -1)
    logp = logp_all.gather(-1, w.actions.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
    value_loss = adv.pow(2).mean()
    policy_loss = -(adv.detach() * logp).mean()
    loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy  # entropy is a bonus
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    check_finite(model, policy=policy_loss, value=value_loss, entropy=entropy)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    optimizer.step()
    return {"losses/policy": policy_loss.item(), "losses/value": value_loss.item(),
            "losses/entropy": entropy.item(), "losses/grad_norm": grad_norm.item(),
            "losses/approx_kl": (w.logp - logp.detach()).mean().item()}
