"""What a run says about itself: the line at start, the seconds of each window (``time/*``), and
``summary.json`` at the end, with the seconds of each role (``time_split``)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import platform
from typing import TYPE_CHECKING

import torch

from htsrl.config import Config, cpuinfo_here, first_cpu_fields
from htsrl.engine.shm import STAT_NAMES, RolloutBuffers
from htsrl.nn import num_params, params_sha256

if TYPE_CHECKING:
    from htsrl.engine.runner import Trainer


@dataclasses.dataclass
class WindowTimes:
    """Seconds of the last window, reported per update as ``time/*``."""

    rollout_s: float = 0.0
    learn_s: float = 0.0
    barrier_wait_s: float = 0.0
    collect_started: float = 0.0

    def metrics(self) -> dict[str, float]:
        return {
            "time/rollout_s": self.rollout_s,
            "time/learn_s": self.learn_s,
            "time/barrier_wait_s": self.barrier_wait_s,
        }


def count(n: int, noun: str) -> str:
    """'1 game', '30 games', '1,024 episodes'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def layout(cfg: Config) -> dict:
    """What trained and how it was laid out: the first keys of ``summary.json`` and of ``htsrl bench``'s JSON."""
    keys = ("env", "algo", "num_envs", "alpha", "num_executors", "num_actors")
    return {k: getattr(cfg, k) for k in keys}


def start_line(trainer: Trainer) -> str:
    """One line at start: what trains, how, and where it is written."""
    cfg = trainer.cfg
    what = f"resuming at {trainer.steps_before:,} steps" if trainer.resume else "starting"
    roles = "serial" if cfg.serial else count(cfg.num_executors, "executor")
    if cfg.mode in ("hts", "async") and not cfg.serial:
        roles += f", {count(cfg.num_actors, 'actor')}"
    start = f", from the weights of {cfg.init_from}" if cfg.init_from else ""
    steps = trainer.windows * trainer.steps_per_window
    steps_said = f"{steps:,} steps"
    if steps != cfg.total_steps:  # say why the run is longer than asked
        window = trainer.steps_per_window
        steps_said += f" (--total-steps {cfg.total_steps:,} rounded up to whole windows of {window:,})"
    return (
        f"htsrl: {what}: {cfg.algo} (preset {cfg.preset}) on {cfg.env}{start}, {cfg.mode} mode, {cfg.num_envs} "
        f"envs x alpha {cfg.alpha}, {cfg.precision}, {roles}, {steps_said}; run dir {trainer.run_dir}"
    )


@functools.cache
def machine() -> dict:
    """The machine of this process, for ``summary.json``: a run's wall clock is this machine's, and a run
    resumed elsewhere, or a plot of runs from several, has to say which (CPU models differ 3x in speed)."""
    cpu = first_cpu_fields(cpuinfo_here())
    kind = " ".join(f"{name} {cpu[k]}" for k, name in (("cpu family", "family"), ("model", "model")) if k in cpu)
    return {
        "cpu": cpu.get("model name") or platform.processor() or None,
        "cpu_kind": f"{cpu.get('vendor_id', '')} {kind}".strip() or None,  # the name can hide the generation
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }


def run_summary(trainer: Trainer, finished: bool, wall: float, startup_s: float) -> dict:
    """``summary.json``: identical on every rank (the hashes are the run's, checked equal across ranks)."""
    cfg, dp = trainer.cfg, trainer.dp
    env_steps = trainer.windows_done * trainer.steps_per_window
    params_sha = params_sha256(trainer.learner.model)
    rollout_sha = trainer.rollout_sha256
    if dp.world_size > 1:
        shas = dp.gather(params_sha)
        if len(set(shas)) != 1:
            raise RuntimeError(f"parameters differ across ranks: {shas}")
        rollout_sha = hashlib.sha256("".join(dp.gather(rollout_sha)).encode()).hexdigest()
    return {
        "run_dir": str(trainer.run_dir),
        "rank": dp.rank,
        "world_size": dp.world_size,
        **layout(cfg),
        "mode": cfg.mode,
        "serial": cfg.serial,
        "seed": cfg.seed,
        "resumed_at_steps": trainer.steps_before if trainer.resume else None,
        "finished": finished,
        "stopped_by": None if finished else trainer.stopped_by,  # stop_at_steps, stop_at_score or interrupt
        "env_steps": env_steps,
        "updates": trainer.learner.updates,
        "wall_time_s": wall,
        "startup_s": startup_s,
        "sps": (env_steps - trainer.steps_before) / wall,
        "params_sha256": params_sha,
        "rollout_sha256": rollout_sha,
        "episodes": trainer.monitor.episodes,
        "mean_return_last_100": _none_if_nan(trainer.monitor.mean_return()),
        "mean_score_last_100": _none_if_nan(trainer.monitor.mean_score()),
        "time_split": time_split(cfg, trainer.bufs),
        "num_params": num_params(trainer.learner.model),
        "restarts": trainer.restarts,
        # async: which weights an action sees depends on timing, so the numbers change run to run
        "deterministic": cfg.mode != "async",
        "policy_lag": trainer.policy_lag.summary(),
        # this invocation's machine, one entry per rank (a resumed run's earlier part may have run elsewhere)
        "machines": dp.gather({**machine(), "gpu": _gpu(trainer.learner.device)}),
    }


def _gpu(device: torch.device) -> str | None:
    """The learner's GPU (this rank's, under torchrun), asked only where it uses CUDA (asking initialises it)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def time_split(cfg: Config, bufs: RolloutBuffers) -> dict[str, dict[str, float]]:
    """Seconds per role (summed over processes of the role), from the shared counters."""
    rows = {
        "executors": bufs.stats[: cfg.num_executors],
        "actors": bufs.stats[cfg.num_executors : cfg.num_executors + cfg.num_actors],
        "learner": bufs.stats[-1:],
    }
    if cfg.serial:
        rows = {"learner": bufs.stats[-1:]}
    return {role: {name: float(r[:, i].sum()) for i, name in enumerate(STAT_NAMES)} for role, r in rows.items()}


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x
