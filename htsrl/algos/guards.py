"""Stop on the first non-finite number, naming the tensor, before it reaches the weights."""

from __future__ import annotations

import torch

from htsrl.errors import NonFiniteError


def check_finite(model: torch.nn.Module, **losses: torch.Tensor) -> None:
    """Call after backward, before the optimizer step."""
    for name, value in losses.items():
        if not torch.isfinite(value).all():
            raise NonFiniteError(f"loss term '{name}' is {value.item()}")
    for name, p in model.named_parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            raise NonFiniteError(f"the gradient of '{name}' is not finite")
