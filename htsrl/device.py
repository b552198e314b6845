"""Which device each part of a rank computes on, and what CUDA needs to repeat its numbers bitwise.

Imported by the learner's trainer and by actors in their own processes (spawned for ``--actor-device
cuda``), so it depends on nothing of the engine."""

from __future__ import annotations

import dataclasses
import os

import torch

from htsrl.config import Config
from htsrl.errors import ConfigError


def deterministic_cuda(device: str) -> None:
    """What PyTorch needs for bitwise-repeatable CUDA results (costs some speed: no cuDNN autotuning,
    deterministic kernels where they exist, a fixed cuBLAS workspace)."""
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is visible to torch")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)


def check_devices(cfg: Config) -> None:
    """Refuse a CUDA device that torch cannot see, before anything starts (whoever infers on a GPU sets
    its own deterministic modes where it runs)."""
    if cfg.device != "cpu":
        deterministic_cuda(cfg.device)
    if cfg.actor_device != "cpu" and not torch.cuda.is_available():
        raise ConfigError(f"--actor-device {cfg.actor_device}: no CUDA device is visible to torch")


def rank_devices(local: Config, local_rank: int) -> Config:
    """Under torchrun: one GPU per rank of a node, for this rank's learner and actors. The run's config
    keeps "cuda", so a resume (which compares configs) gives every rank its own GPU again."""
    gpu = f"cuda:{local_rank}"
    return dataclasses.replace(
        local,
        device=gpu if local.device == "cuda" else local.device,
        actor_device=gpu if local.actor_device == "cuda" else local.actor_device,
    )
