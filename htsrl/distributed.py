"""Data-parallel learners over torch.distributed (launched by torchrun or SLURM).

Rank r owns the contiguous slice of global env ids ``[r * n/W, (r+1) * n/W)``; every seed is keyed by
the global id, so a given env behaves the same whatever the world size. Each rank runs its own
executors and actors (HTS semantics per rank: two buffers, barrier every alpha steps, lag of one);
the only cross-rank traffic is inside the learner's update: the global minibatch order is drawn
identically on every rank, each rank computes the loss terms of the rows it owns divided by the
global minibatch size, and one all-reduce (sum) of the flattened gradients gives every rank the same
gradient, hence the same parameters. Versus one process with the same envs the only difference is
the order of the floating-point reduction.
"""

from __future__ import annotations

import datetime
import gc
import os

import torch
import torch.distributed as dist


class SingleProcess:
    """The single-process case: one rank owning every env."""

    rank, world_size = 0, 1

    def env_offset(self, num_envs: int) -> int:
        return 0

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def sum_grads(self, model: torch.nn.Module) -> None:
        pass

    def gather(self, obj) -> list:
        return [obj]

    def close(self, clean: bool = True) -> None:
        pass


SINGLE_PROCESS = SingleProcess()  # the default ``dp`` of the learner and the updates


class DataParallel(SingleProcess):
    def __init__(self, timeout_s: float, device: str = "cpu"):
        backend = "nccl" if device.startswith("cuda") and os.environ.get("HTSRL_BACKEND") != "gloo" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def env_offset(self, num_envs: int) -> int:
        return self.rank * (num_envs // self.world_size)

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_grads(self, model: torch.nn.Module) -> None:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)  # one collective per minibatch
        off = 0
        for g in grads:
            g.copy_(flat[off : off + g.numel()].view_as(g))
            off += g.numel()

    def gather(self, obj) -> list:
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def close(self, clean: bool = True) -> None:
        """``clean``: every rank got here the same way (the run finished, or all stopped at one barrier).
        Then the ranks meet once more, so none tears down its connections while a peer still uses them,
        destroy the group, and collect the garbage while the interpreter is fully alive: gloo's work
        objects hold tensors, and freeing them during interpreter shutdown aborts the process
        ("terminate called without an active exception"). After a failure a peer may be gone, and a
        collective would wait for it until the timeout: the process just exits with its error."""
        if not dist.is_initialized() or not clean:
            return
        dist.barrier()
        dist.destroy_process_group()
        gc.collect()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1
