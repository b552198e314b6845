"""What a checkpoint holds, and the way back: the state a trainer saves at a barrier, its restore into a
fresh trainer, and which checkpoint a resume may go on from.

Checkpoints are taken at barriers only (HTS: before collect w+1, with window w still to learn; lock-step:
after update w), where no process is working, so the state is complete and resume is bitwise exact.
``tests/test_resume.py`` checks both directions against an uninterrupted run's state, field by field."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import torch

from htsrl.checkpoint import load_checkpoint, save_checkpoint
from htsrl.config import Config
from htsrl.engine.shm import CARRIED_ROWS, RolloutBuffers
from htsrl.errors import ConfigError
from htsrl.monitor import Episodes
from htsrl.run_dir import RunDir

if TYPE_CHECKING:
    from htsrl.engine.runner import Trainer

# Buffer fields a checkpoint keeps of the last window (the one still to learn in HTS mode).
WINDOW_FIELDS = (
    "obs",
    "final_obs",
    "actions",
    "logp",
    "value",
    "reward",
    "terminated",
    "truncated",
    "uniforms",
    "version",
    "ep_return",
    "ep_length",
    "ep_score",
    "starts",
    "hidden",
)
# 2: tensors and plain types only (weights_only=True); 3: + the learner's normalization state;
# 4: + the window's episode starts and recurrent states (+ next_behaviour since htsrl 0.3: optional)
CHECKPOINT_FORMAT = 4


def checkpoint_to_resume(cfg: Config, run_dir: RunDir, windows: int, steps_per_window: int) -> dict:
    """The run's checkpoint, if it can go on to ``windows``: a run stopped on the way, or a finished one
    trained longer (a larger ``--total-steps``, which ``check_resume`` allows where the learning rate does
    not decay over the run)."""
    ckpt, path = load_checkpoint(run_dir.path), run_dir.checkpoint
    # format 3 lacks only the recurrent rows, which a feed-forward run never reads
    readable = (CHECKPOINT_FORMAT, 3) if cfg.recurrent == "none" else (CHECKPOINT_FORMAT,)
    if ckpt.get("format") not in readable:
        raise ConfigError(
            f"{path} was written by another version of htsrl "
            f"(format {ckpt.get('format')}, this one reads {CHECKPOINT_FORMAT})"
        )
    steps = ckpt["next_window"] * steps_per_window
    if ckpt["next_window"] < windows:
        if ckpt["finished"] and cfg.mode == "hts" and ckpt.get("next_behaviour") is None:
            raise ConfigError(
                f"the run in {run_dir} finished before htsrl 0.3, whose final checkpoint lacks the weights "
                f"that act next in HTS mode; start a new run from its weights with --init-from {run_dir}"
            )
        return ckpt
    if ckpt["finished"]:
        raise ConfigError(
            f"the run in {run_dir} already finished ({steps} steps, {ckpt['learner']['updates']} updates); "
            f"to train it longer give a larger --total-steps with --resume, or start a new run from its "
            f"weights with --init-from {run_dir}"
        )
    raise ConfigError(f"--total-steps {cfg.total_steps} ends before the checkpoint in {path} ({steps} steps)")


def capture(
    trainer: Trainer, last_window: int, next_window: int, finished: bool = False, pending: Episodes | None = None
) -> dict:
    """Everything to continue bitwise, as tensors and plain types: the learner, every stream, each env's
    history and the buffer of ``last_window`` (HTS: the window still to learn)."""
    bufs = trainer.bufs
    buf = bufs.slot(last_window)
    return {
        "format": CHECKPOINT_FORMAT,
        "config": dataclasses.asdict(trainer.cfg),
        "finished": finished,
        "last_window": last_window,
        "next_window": next_window,
        "pending_episodes": dataclasses.asdict(pending or Episodes()),
        "learner": trainer.learner.state_dict(),
        "streams": trainer.streams.state(),
        "history": trainer.history.state_dict(),
        "window": {name: torch.from_numpy(getattr(bufs, name)[buf].copy()) for name in WINDOW_FIELDS},
        "rollout_sha256": trainer.rollout_sha256,
        "monitor": trainer.monitor.state_dict(),
        "policy_lag": trainer.policy_lag.state_dict(),
        "next_behaviour": trainer.next_behaviour,
    }


def save(
    trainer: Trainer, last_window: int, next_window: int, finished: bool = False, pending: Episodes | None = None
) -> None:
    save_checkpoint(trainer.run_dir.path, capture(trainer, last_window, next_window, finished, pending))


def restore(trainer: Trainer, ckpt: dict) -> None:
    """The state of ``ckpt`` (``capture``'s dict) into a fresh trainer: the inverse of ``capture``."""
    trainer.learner.load_state_dict(ckpt["learner"])
    trainer.streams.set_state(ckpt["streams"])
    trainer.history.load_state_dict(ckpt["history"])
    bufs = trainer.bufs
    buf = bufs.slot(ckpt["last_window"])
    for name in WINDOW_FIELDS:
        if name in ckpt["window"]:  # format 3: no starts or hidden (feed-forward; left as zeros)
            getattr(bufs, name)[buf] = ckpt["window"][name].numpy()
    trainer.rollout_sha256 = ckpt["rollout_sha256"]
    trainer.policy_lag.load_state_dict(ckpt.get("policy_lag", {}))  # absent from older checkpoints
    trainer.monitor.restore(**ckpt["monitor"])
    trainer.next_behaviour = ckpt.get("next_behaviour")  # absent before htsrl 0.3
    trainer.last_window = ckpt["last_window"]
    if trainer.cfg.mode == "hts" and not ckpt["finished"]:  # window last_window is collected, still to learn
        trainer.pending = Episodes(**ckpt["pending_episodes"])
    if trainer.cfg.mode == "async":
        trainer.carried = carried_rows(bufs, buf)


def carried_rows(bufs: RolloutBuffers, buf: int) -> dict[str, np.ndarray]:
    """Async mode: the rows after the window in ``buf`` (where its envs are), kept should a role fail later."""
    return {name: getattr(bufs, name)[buf, bufs.alpha].copy() for name in CARRIED_ROWS}
