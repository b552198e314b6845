"""A2C, PPO and IMPALA updates as plain functions over one window of rollout (see returns.py for GAE and
the pre-update values, vtrace.py for IMPALA's targets, step.py for the optimizer step all share)."""

from __future__ import annotations

import torch

from htsrl.algos.a2c import a2c_update
from htsrl.algos.impala import impala_update
from htsrl.algos.ppo import ppo_update
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
    if cfg.algo == "a2c":
        return a2c_update(cfg, model, optimizer, batch, dp)
    if cfg.algo == "impala":
        return impala_update(cfg, model, optimizer, batch, dp)
    return ppo_update(cfg, model, optimizer, batch, generator, dp, shards)
