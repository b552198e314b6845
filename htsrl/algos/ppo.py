"""PPO-clip over one window; the ratio uses the stored behaviour log-probabilities (in HTS mode those
come from the parameters one update old)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from htsrl.algos.guards import check_finite
from htsrl.algos.returns import Window, gae, truncation_values


def ppo_update(cfg, model, optimizer, w: Window, generator: torch.Generator) -> dict[str, float]:
    T, N = w.actions.shape
    with torch.no_grad():
        _, values = model(w.obs.flatten(0, 1))
        values = values.view(T + 1, N)
    adv, returns = gae(w, values, truncation_values(model, w), cfg.gamma, cfg.gae_lambda)

    B = T * N
    obs, actions, old_logp = w.obs[:T].flatten(0, 1), w.actions.flatten(), w.logp.flatten()
    adv, returns, old_values = adv.flatten(), returns.flatten(), values[:T].flatten()
    if cfg.norm_adv:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)

    mb_size = B // cfg.minibatches
    stats: dict[str, list[float]] = {}
    for _ in range(cfg.epochs):
        perm = torch.randperm(B, generator=generator)
        for start in range(0, B, mb_size):
            idx = perm[start:start + mb_size]
            logits, v = model(obs[idx])
            logp_all = F.log_softmax(logits, -1)
            logp = logp_all.gather(-1, actions[idx].unsqueeze(-1)).squeeze(-1)
            log_ratio = logp - old_logp[idx]
            ratio = log_ratio.exp()
            a = adv[idx]
            policy_loss = torch.max(-a * ratio, -a * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
            if cfg.clip_value_loss:
                v_clip = old_values[idx] + (v - old_values[idx]).clamp(-cfg.clip_coef, cfg.clip_coef)
                value_loss = 0.5 * torch.max((v - returns[idx]) ** 2, (v_clip - returns[idx]) ** 2).mean()
            else:
                value_loss = 0.5 * ((v - returns[idx]) ** 2).mean()
            entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
            loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy  # entropy is a bonus
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            check_finite(model, policy=policy_loss, value=value_loss, entropy=entropy)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                row = {"losses/policy": policy_loss.item(), "losses/value": value_loss.item(),
                       "losses/entropy": entropy.item(), "losses/grad_norm": grad_norm.item(),
                       "losses/approx_kl": ((ratio - 1) - log_ratio).mean().item(),
                       "losses/clipfrac": ((ratio - 1).abs() > cfg.clip_coef).float().mean().item()}
            for k, val in row.items():
                stats.setdefault(k, []).append(val)
    out = {k: sum(v) / len(v) for k, v in stats.items()}
    var = returns.var()
    out["losses/explained_variance"] = float("nan") if var == 0 else (1 - (returns - old_values).var() / var).item()
    return out
