"""The one optimizer step every algorithm takes: backward (in one pass, or in parts on threads),
cross-rank gradient sum, finiteness check, gradient-norm clip, step; and the whole-window actor-critic
step A2C and IMPALA share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

from htsrl.algos.guards import check_finite

# one part of a minibatch: returns its loss (its rows' terms over the whole minibatch's size) and any
# further outputs the caller wants back (detached statistics)
Part = Callable[[], tuple]


class LearnerShards:
    """``--learner-shards K``: a minibatch's gradient as the sum of K parts, each part's forward and backward
    on its own thread with one torch thread (``torch.autograd.grad``: nothing accumulates into ``.grad``
    concurrently), added in part order. Each part's numbers depend only on its rows, so the result is the
    same bitwise however many cores run the threads, and the threads take whatever CPU the rollout leaves
    (HTS learns while executors and actors collect). One torch thread a part is also cheaper per sample
    than one pass on two OpenMP threads (``benchmarks/learner_shards_cost.py``). K = 1: one pass on the
    caller's thread."""

    def __init__(self, shards: int = 1):
        self.shards = shards
        self._pool: ThreadPoolExecutor | None = None

    def backward(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, parts: Sequence[Part]) -> list:
        """Zero the gradients, then leave in ``.grad`` the sum of the parts' gradients; returns each part's
        further outputs, in part order."""
        optimizer.zero_grad(set_to_none=False)
        if len(parts) == 1:
            loss, *rest = parts[0]()
            loss.backward()
            return [rest]
        if self._pool is None:  # made at the first update: after the learner forked its roles
            self._pool = ThreadPoolExecutor(
                self.shards, thread_name_prefix="htsrl-shard", initializer=torch.set_num_threads, initargs=(1,)
            )
        params = [p for p in model.parameters() if p.requires_grad]

        def run(part: Part):
            loss, *rest = part()
            return torch.autograd.grad(loss, params, allow_unused=True), rest

        results = list(self._pool.map(run, parts))
        with torch.no_grad():
            for i, p in enumerate(params):
                for grads, _ in results:  # in part order: the sum does not depend on which thread ended first
                    if grads[i] is None:  # no part used p: its .grad stays as one pass would leave it
                        continue
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    p.grad.add_(grads[i])
        return [rest for _, rest in results]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


ONE_PASS = LearnerShards(1)


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
    return step_on_gradients(model, optimizer, max_grad_norm, dp, **terms)


def step_on_gradients(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, max_grad_norm: float, dp, /, **terms: torch.Tensor
) -> torch.Tensor:
    """The rest of :func:`optimizer_step`, once ``.grad`` holds this rank's gradient."""
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
