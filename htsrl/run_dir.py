"""A run's folder: one trainer at a time, and never a run replaced by accident.

A trainer holds an exclusive ``flock`` on ``<run_dir>/.lock`` from before it reads or writes anything there
until it ends, so two trainers (a job started twice, a resume while the run still goes) cannot write one
run; the kernel drops the lock when the process dies, even on SIGKILL, so a crashed run never leaves a
stale lock. A new run (not ``--resume``) refuses a folder that already holds a run unless ``--overwrite``,
which removes only the files training writes, never anything else in the folder.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from htsrl.errors import ConfigError

LOCK_NAME = ".lock"
# Everything `htsrl train` writes in a run folder; the first four say that a run is there.
RUN_MARKERS = ("config.json", "checkpoint.pt", "summary.json", "progress.csv")
RUN_FILES = (*RUN_MARKERS, "model.pt", "pids.json")
RUN_FOLDERS = ("tb", "stacks", "eval")


class RunDirLock:
    """The exclusive lock of one run folder (created if missing); ``release`` or process exit frees it."""

    def __init__(self, run_dir: Path):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise ConfigError(
                f"{run_dir} is in use by another htsrl trainer (pid {holder}); two trainers cannot write one run"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = -1


def claim_new_run(run_dir: Path, overwrite: bool) -> None:
    """Before a new run writes anything: refuse a folder that holds a run, or (``overwrite``) clear it."""
    if (run_dir / "group.json").exists():  # htsrl/seeds.py's GROUP_FILE: its runs are in seed_S/
        raise ConfigError(f"{run_dir} holds a seed group; give the run another --run-dir")
    found = [name for name in RUN_MARKERS if (run_dir / name).exists()]
    if not found:
        return
    if not overwrite:
        raise ConfigError(
            f"{run_dir} already holds a run ({', '.join(found)}); continue it with: htsrl train --resume "
            f"{run_dir}, or replace it with --overwrite"
        )
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for tmp in run_dir.glob("checkpoint.pt.tmp*"):
        tmp.unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        shutil.rmtree(run_dir / name, ignore_errors=True)
