"""The one optimizer step every algorithm takes: backward, cross-rank gradient sum, finiteness check,
gradient-norm clip, step; and the whole-window actor-critic step A2C and IMPALA share."""

from __future__ import annotations

import torch

from htsrl.algos.guards import check_finite


def optimizer_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    max_grad_norm: float,
    dp,
    /,
    **terms: torch.Tensor,
) -> torch.Tensor:
    """Step on ``loss``; ``terms`` (named loss tensors) are checked for finiteness with the gradients,
    before anything reaches the weights. Under data parallelism ``loss`` is this rank's partial sum
    over the global batch and ``dp.sum_grads`` adds the ranks' gradients. Returns the gradient norm
    before clipping (a 0-d tensor)."""
    optimizer.zero_grad(set_to_none=False)
    loss.backward()
    dp.sum_grads(model)
    check_finite(model, **terms)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return grad_norm


def actor_critic_step(
    cfg, model, optimizer, dp, policy_loss: torch.Tensor, value_loss: torch.Tensor, entropy: torch.Tensor, kl
) -> dict[str, float]:
    """One step on ``policy + vf_coef * value - ent_coef * entropy`` (entropy is a bonus) over a whole
    window (A2C, IMPALA); returns the ``losses/*`` metrics summed over ranks. ``kl``: the batch's
    approximate KL(behaviour, current) term."""
    loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
    grad_norm = optimizer_step(
        model, optimizer, loss, cfg.max_grad_norm, dp, policy=policy_loss, value=value_loss, entropy=entropy
    )
    with torch.no_grad():
        row = dp.sum_(torch.stack([policy_loss, value_loss, entropy, kl]).detach())
    names = ("losses/policy", "losses/value", "losses/entropy", "losses/approx_kl")
    return {**dict(zip(names, row.tolist())), "losses/grad_norm": grad_norm.item()}
