"""A run's folder: every name in it, its lock, and never a run replaced by accident.

``RunDir`` is the one place that knows what a run folder holds (``config.json``, ``checkpoint.pt``,
``progress.csv``, ``summary.json``, ``model.pt``, ``pids.json``, ``tb/``, ``stacks/``, ``eval/``, the
``.lock``; with ``--track``, ``wandb_run.json`` and ``wandb/``), how a seed group's folder is laid out
(``group.json``, ``seed_<S>/``) and a sweep's (``sweep.json``, ``study.db``, ``best.yaml``, ``trial_<N>/``)
and where a new run goes by default; every other module asks it for a path.

A trainer holds an exclusive ``flock`` on ``<run_dir>/.lock`` from before it reads or writes anything there
until it ends, so two trainers (a job started twice, a resume while the run still goes) cannot write one
run; the kernel drops the lock when the process dies, even on SIGKILL, so a crashed run never leaves a
stale lock. A new run (not ``--resume``) refuses a folder that already holds a run unless ``--overwrite``,
which removes only the files training writes, never anything else in the folder.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import time
from pathlib import Path

from htsrl.config import PER_INVOCATION, Config
from htsrl.errors import CheckpointError, ConfigError

CONFIG, CHECKPOINT, PROGRESS, SUMMARY = "config.json", "checkpoint.pt", "progress.csv", "summary.json"
PROGRESS_JSONL = "progress.jsonl"  # --report-to jsonl (htsrl/sinks/jsonl.py)
MODEL, PIDS, LOCK = "model.pt", "pids.json", ".lock"
TENSORBOARD, STACKS, EVAL = "tb", "stacks", "eval"
# W&B (--track, htsrl/sinks/wandb.py): the W&B run's id and the last env step logged to it; wandb's own files
WANDB_RUN, WANDB_FILES = "wandb_run.json", "wandb"
# a seed group's folder (htsrl/seeds.py): its seeds, the flags given as a --config file, one run per seed
GROUP, GROUP_CONFIG = "group.json", "config.yaml"
# a sweep's folder (htsrl/sweep.py): what it was started with, the space, the fixed flags as a --config file,
# the Optuna study (SQLite, unless --storage), the best trial's config, one run per trial
SWEEP, SWEEP_SPACE, SWEEP_CONFIG, STUDY_DB, BEST = "sweep.json", "space.yaml", "config.yaml", "study.db", "best.yaml"
# Everything `htsrl train` writes in a run folder; the first four say that a run is there.
RUN_MARKERS = (CONFIG, CHECKPOINT, SUMMARY, PROGRESS)
RUN_FILES = (*RUN_MARKERS, MODEL, PIDS, PROGRESS_JSONL, WANDB_RUN)
RUN_FOLDERS = (TENSORBOARD, STACKS, EVAL, WANDB_FILES)


def default_run_dir(cfg: Config, seed: str | None = None) -> Path:
    """``runs/<env>__<algo>__<seed>__<time>``; a seed group's folder has ``seeds`` for the seed."""
    name = cfg.env.replace("/", "-").replace(":", "-")  # a custom env's module:EnvId too
    return Path("runs") / f"{name}__{cfg.algo}__{cfg.seed if seed is None else seed}__{int(time.time())}"


def default_sweep_dir(cfg: Config, space: str | Path) -> Path:
    """``runs/sweep__<env>__<algo>__<space file's name>``: no time in it, so the same command continues it."""
    name = cfg.env.replace("/", "-").replace(":", "-")
    return Path("runs") / f"sweep__{name}__{cfg.algo}__{Path(space).stem}"


def seed_dir(group: str | Path, seed: int) -> Path:
    """The run of ``seed`` in a seed group's folder."""
    return Path(group) / f"seed_{seed}"


def seed_log(group: str | Path, seed: int) -> Path:
    """What the run of ``seed`` printed."""
    return Path(group) / f"seed_{seed}.log"


def trial_dir(sweep: str | Path, number: int) -> Path:
    """The run of Optuna trial ``number`` in a sweep's folder."""
    return Path(sweep) / f"trial_{number}"


def trial_log(sweep: str | Path, number: int) -> Path:
    return Path(sweep) / f"trial_{number}.log"


def is_sweep(folder: str | Path) -> bool:
    return (Path(folder) / SWEEP).is_file()


def sweep_trials(sweep: str | Path) -> list[Path]:
    """The trials' run folders, by trial number."""
    found = [p for p in Path(sweep).glob("trial_*") if p.is_dir() and p.name[6:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[6:]))


def group_seeds(group: str | Path) -> list[int]:
    return json.loads((Path(group) / GROUP).read_text())["seeds"]


def write_group(group: Path, seeds: list[int], config_text: str) -> None:
    (group / GROUP_CONFIG).write_text(config_text)
    (group / GROUP).write_text(json.dumps({"seeds": seeds}, indent=2))


class RunDir:
    """One run's folder: the path of each file in it, and reading and writing the small ones."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    config = property(lambda self: self.path / CONFIG)
    checkpoint = property(lambda self: self.path / CHECKPOINT)
    progress = property(lambda self: self.path / PROGRESS)
    progress_jsonl = property(lambda self: self.path / PROGRESS_JSONL)
    summary = property(lambda self: self.path / SUMMARY)
    model = property(lambda self: self.path / MODEL)
    pids = property(lambda self: self.path / PIDS)
    tensorboard = property(lambda self: self.path / TENSORBOARD)
    stacks = property(lambda self: self.path / STACKS)
    evaluations = property(lambda self: self.path / EVAL)
    group_file = property(lambda self: self.path / GROUP)
    wandb_run = property(lambda self: self.path / WANDB_RUN)
    wandb_files = property(lambda self: self.path / WANDB_FILES)

    def rank(self, rank: int) -> RunDir:
        """The folder of a data-parallel rank: rank 0 writes the run's own, rank r ``rank<r>/``."""
        return self if rank == 0 else RunDir(self.path / f"rank{rank}")

    def is_group(self) -> bool:
        return self.group_file.is_file()

    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_file()

    # -- config.json
    def saved_config(self, asked_by: str | None = None) -> Config:
        """The run's config as saved; ``asked_by`` (a flag, e.g. ``--resume``) names who asked, in the refusal."""
        if not self.config.is_file():
            if asked_by:
                raise ConfigError(f"{asked_by} {self.path}: no {CONFIG} there (is it a run directory?)")
            raise ConfigError(f"{self.path} has no {CONFIG}: not an htsrl run directory")
        try:
            return Config.from_saved(json.loads(self.config.read_text()))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{self.config} is not valid JSON: {e}") from None

    def saved_config_dict(self) -> dict:
        """The raw ``config.json`` ({} where there is none): what plots and benchmarks read of a run."""
        return json.loads(self.config.read_text()) if self.config.is_file() else {}

    def write_config(self, cfg: Config) -> None:
        self.config.write_text(cfg.to_json())

    def resume_config(self, given: dict) -> Config:
        """``--resume DIR`` with the values ``given`` on the command line: the run's saved config with them
        on top (``train`` then refuses any that would change the numbers)."""
        if "run_dir" in given and Path(given["run_dir"]).resolve() != self.path.resolve():
            raise ConfigError(f"--run-dir {given['run_dir']} is not the run being resumed ({self.path})")
        base = dataclasses.asdict(self.saved_config("--resume"))
        defaults = Config()
        base.update({name: getattr(defaults, name) for name in PER_INVOCATION})  # a stop point is one invocation's
        base.update(given)
        base["run_dir"] = str(self.path)
        return Config.from_dict(base)

    # -- what a finished (or stopped) invocation leaves
    def read_summary(self) -> dict | None:
        return json.loads(self.summary.read_text()) if self.summary.is_file() else None

    def write_summary(self, summary: dict) -> None:
        self.summary.write_text(json.dumps(summary, indent=2))

    def finished(self) -> bool:
        summary = self.read_summary()
        return bool(summary and summary.get("finished"))

    def write_pids(self, pids: dict[str, int]) -> None:
        """The main process and every role (tests and the soak look for orphans with it)."""
        self.pids.write_text(json.dumps({"main": os.getpid(), **pids}, indent=2))

    def weights_file(self, which: str) -> tuple[Path, str]:
        """The file that holds the weights ``which`` asks for ("final": ``model.pt``, "last": the checkpoint,
        "auto": the newer of the two) and which one it is."""
        final, last = self.model, self.checkpoint
        if which == "auto":
            which = "final" if self._final_is_current() else "last"
        if which == "final":
            if not final.is_file():
                raise CheckpointError(
                    f"{self.path} has no {MODEL} (no training invocation ended); use the last checkpoint"
                )
            return final, "final"
        if not last.is_file():
            neither = "" if final.is_file() else f" nor {MODEL}: no weights to load"
            raise CheckpointError(f"{self.path} has no {CHECKPOINT}{neither}")
        return last, "last"

    def _final_is_current(self) -> bool:
        """Whether ``model.pt`` holds the run's latest weights. Every invocation that ends normally (done or
        stopped by ``--stop-at-steps``) writes its checkpoint and then ``model.pt`` (the same weights); one
        that is interrupted or fails after a resume leaves a newer checkpoint next to an older model.pt."""
        final, last = self.model, self.checkpoint
        if not final.is_file():
            return False
        return not last.is_file() or final.stat().st_mtime_ns >= last.stat().st_mtime_ns

    # -- one trainer at a time
    def lock(self) -> RunDirLock:
        return RunDirLock(self.path)

    def in_use(self) -> bool:
        """Whether a trainer holds the folder's lock now (asked without creating or writing anything)."""
        try:
            fd = os.open(self.path / LOCK, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # dropped with the descriptor, below
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def claim_new_run(self, overwrite: bool) -> None:
        """Before a new run writes anything: refuse a folder that holds a run, or (``overwrite``) clear it."""
        if self.is_group():
            raise ConfigError(f"{self.path} holds a seed group; give the run another --run-dir")
        if is_sweep(self.path):
            raise ConfigError(f"{self.path} holds a sweep; give the run another --run-dir")
        found = self.run_markers()
        if not found:
            return
        if not overwrite:
            raise ConfigError(
                f"{self.path} already holds a run ({', '.join(found)}); continue it with: htsrl train --resume "
                f"{self.path}, or replace it with --overwrite"
            )
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for written in (CHECKPOINT, WANDB_RUN):  # what an atomic write left half-way
            for tmp in self.path.glob(f"{written}.tmp*"):
                tmp.unlink(missing_ok=True)
        for name in RUN_FOLDERS:
            shutil.rmtree(self.path / name, ignore_errors=True)

    def run_markers(self) -> list[str]:
        """The files here that say a run is here (none: no run)."""
        return [name for name in RUN_MARKERS if (self.path / name).exists()]


class RunDirLock:
    """The exclusive lock of one run folder (created if missing); ``release`` or process exit frees it."""

    def __init__(self, run_dir: Path):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
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
