"""Report sinks: where each update's report goes. ``htsrl.monitor.Monitor`` keeps the episode statistics
(what a checkpoint holds) and hands one :class:`Report` per update to each sink; a sink only writes.

Built in: ``csv`` (``progress.csv``), ``tensorboard`` (``tb/``), ``progress`` (the line on stderr) and
``jsonl`` (``progress.jsonl``, one JSON object per update; ``--report-to jsonl``). A new sink is one
module with a class that takes a :class:`SinkContext` (``open`` may return None to stay off, e.g. on a
rank other than 0) plus one line in ``SINKS`` below: ``--report-to NAME`` then turns it on.

Every sink of a resumed run (``ctx.resumed``) is opened with ``ctx.start_steps``, the steps of the checkpoint
it resumes (0 for a run stopped in its first window):
a sink that keeps a history (a file, a dashboard) drops or skips what came after that point, so nothing
the run computes again is counted twice.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from htsrl.config import Config
from htsrl.errors import ConfigError
from htsrl.run_dir import RunDir

# name -> "module:class"; imported only when used (TensorBoard and W&B load only where they write)
SINKS = {
    "csv": "htsrl.sinks.progress_csv:ProgressCsv",
    "tensorboard": "htsrl.sinks.tensorboard:TensorBoard",
    "progress": "htsrl.sinks.progress_line:ProgressLine",
    "jsonl": "htsrl.sinks.jsonl:JsonLines",
    "wandb": "htsrl.sinks.wandb:WandB",  # --track (or --report-to wandb): Weights & Biases
}
ALWAYS = ("csv", "tensorboard", "progress")  # every run's; --report-to adds to them
# TensorBoard has a point per finished episode at the env step it ended (as CleanRL logs them); a table
# has one row per update with the mean of the window's episodes
PER_EPISODE = ("charts/episodic_return", "charts/episodic_length", "charts/episodic_score")


@dataclass
class Episodes:
    """Episodes that ended in one window, in (step, env) order."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # football score difference, where reported
    steps: list[int] = field(default_factory=list)  # the run's env steps when each ended (TensorBoard's x)


@dataclass
class Report:
    """One update: its scalars (NaN where a metric has no value this time), the episodes that ended in its
    window, and histograms (name -> values)."""

    env_steps: int
    updates: int
    wall_time_s: float
    scalars: dict[str, float]
    episodes: Episodes
    histograms: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict:
        """The report as one table row: a value per column, '' where there is none."""
        row = {"env_steps": self.env_steps, "updates": self.updates, "wall_time_s": round(self.wall_time_s, 3)}
        row.update({k: "" if _is_nan(v) else v for k, v in self.scalars.items()})
        return row


@dataclass
class SinkContext:
    """What a sink may need to know of the run it reports."""

    run_dir: RunDir
    total_steps: int
    start_steps: int = 0  # a resumed run: the checkpoint's steps
    resumed: bool = False  # a run going on from a checkpoint (which may be at 0 steps: a stop in window 0)
    progress: bool = True  # the progress line (``--progress``, rank 0)
    rank: int = 0
    cfg: Config | None = None
    interval_s: float = 5.0  # the plain progress line's period


class Sink(Protocol):
    def write(self, report: Report) -> None: ...

    def close(self) -> None: ...


def report_sinks(cfg: Config) -> list[str]:
    """The sinks ``--report-to`` (and ``--track``: wandb) add to the built-in ones."""
    return [name.strip() for name in cfg.report_to.split(",") if name.strip()] + (["wandb"] if cfg.track else [])


def check_names(names: list[str]) -> None:
    """Before anything starts: each sink is known, and one whose class has a ``check`` (wandb: the package is
    installed) passes it."""
    _check_known(names)
    for name in dict.fromkeys(names):
        check = getattr(_sink_class(name), "check", None)
        if check is not None:
            check()


def _check_known(names: list[str]) -> None:
    unknown = [n for n in names if n not in SINKS]
    if unknown:
        raise ConfigError(f"--report-to {unknown[0]}: no such report sink (known: {', '.join(SINKS)})")


def _sink_class(name: str):
    module, cls = SINKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def open_sinks(names: list[str], ctx: SinkContext) -> list[Sink]:
    _check_known(names)
    sinks = []
    for name in dict.fromkeys(names):  # each once, in order
        sink = _sink_class(name).open(ctx)
        if sink is not None:
            sinks.append(sink)
    return sinks


def _is_nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)
