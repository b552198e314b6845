"""A2C, PPO and IMPALA updates as plain functions over one window of rollout (see returns.py for GAE and
the pre-update values, vtrace.py for IMPALA's targets, step.py for the optimizer step all share).

Which algorithms there are, and the rules each brings, is the registry in ``htsrl/algo_rules.py`` (torch-free,
so the config reads it): :func:`update_function` imports an algorithm's update from its entry there."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

import torch

from htsrl.algo_rules import algorithm
from htsrl.algos.a2c import a2c_update  # noqa: F401  (re-exported)
from htsrl.algos.impala import impala_update  # noqa: F401  (re-exported)
from htsrl.algos.ppo import ppo_update  # noqa: F401  (re-exported)
from htsrl.algos.step import ONE_PASS, LearnerShards, optimizer_step  # noqa: F401
from htsrl.config import Config
from htsrl.distributed import SINGLE_PROCESS


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]  # not --norm-obs's statistics
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.rmsprop_alpha, eps=cfg.optim_eps)
    return torch.optim.Adam(params, lr=cfg.lr, eps=cfg.optim_eps)


def learning_rate(cfg: Config, update: int, total_updates: int) -> float:
    """Linear decay to zero over the run (update counts from 0)."""
    if not cfg.lr_decay:
        return cfg.lr
    return cfg.lr * (1.0 - update / total_updates)


def update(
    cfg: Config,
    model,
    optimizer,
    batch,
    generator: torch.Generator,
    dp=SINGLE_PROCESS,
    shards: LearnerShards = ONE_PASS,
) -> dict[str, float]:
    """One update of ``cfg.algo`` on the window ``batch``; an algorithm of minibatches draws them from
    ``generator`` and splits them over ``shards``."""
    if algorithm(cfg.algo).minibatches:
        return update_function(cfg.algo)(cfg, model, optimizer, batch, generator, dp, shards)
    return update_function(cfg.algo)(cfg, model, optimizer, batch, dp)


@functools.cache
def update_function(algo: str) -> Callable[..., dict[str, float]]:
    """The update function of ``--algo algo``, from its registry entry (``module:function``)."""
    module, _, name = algorithm(algo).update.partition(":")
    return getattr(importlib.import_module(module), name)
