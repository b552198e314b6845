"""The one optimizer step both algorithms take: backward, cross-rank gradient sum, finiteness check,
gradient-norm clip, step."""

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
