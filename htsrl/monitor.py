"""What a run reports while it trains: TensorBoard scalars, the same rows in ``progress.csv``, and a
live progress bar on stderr (tqdm on a terminal, a plain line every few seconds otherwise).

The episodic charts (``charts/episodic_return``, ``episodic_length``, ``episodic_score``) are the one
difference: TensorBoard has a point per finished episode at the env step it ended, as CleanRL logs
them; ``progress.csv`` has one row per update, with the mean of the episodes that ended in its window.

One metric namespace: ``charts/*`` (episodic_return, episodic_length, episodic_score, sps,
mean_return_last_100, mean_score_last_100),
``losses/*`` (policy, value, entropy, approx_kl, ...), ``time/*`` (rollout_s, learn_s,
barrier_wait_s per window), ``lag/*`` (HTS mode: the behaviour policy against the learner's, see
algos/returns.py), ``policy_lag/*`` (mean and max over the window's samples of the updates between the
policy that acted and the update learning it, see engine/policy_lag.py; also a TensorBoard histogram,
``policy_lag``).
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Episodes:
    """Episodes that ended in one window, in (step, env) order."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # football score difference, where reported
    steps: list[int] = field(default_factory=list)  # the run's env steps when each ended (TensorBoard's x)


# TensorBoard logs these per episode (``Monitor._episodes_to_tb``), progress.csv per window
_PER_EPISODE = ("charts/episodic_return", "charts/episodic_length", "charts/episodic_score")


def _mean(xs) -> float:
    return sum(xs) / len(xs) if xs else math.nan


class Monitor:
    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        start_steps: int = 0,
        enabled: bool = True,
        tensorboard: bool = True,
        interval_s: float = 5.0,
    ):
        self.total_steps, self.enabled, self.interval_s = total_steps, enabled, interval_s
        self.returns: deque[float] = deque(maxlen=100)
        self.scores: deque[float] = deque(maxlen=100)
        self.episodes = 0
        self.start = time.perf_counter()
        self.start_steps = start_steps
        self.wall_before = 0.0  # wall time of earlier sessions of a resumed run
        self._last_print = -math.inf
        self._csv_path = run_dir / "progress.csv"
        self._csv_file = open(self._csv_path, "a+", newline="")
        self._csv: csv.DictWriter | None = None
        if start_steps:  # a resumed run: rows written after its checkpoint (a run killed later) come again
            self._drop_rows_after(start_steps)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # likewise TensorBoard's events past the checkpoint are purged
            self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_steps + 1 if start_steps else None)
        self._bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_steps,
                initial=start_steps,
                unit="step",
                unit_scale=True,
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def restore(self, returns: list[float], scores: list[float], episodes: int, wall_time_s: float = 0.0) -> None:
        self.returns.extend(returns)
        self.scores.extend(scores)
        self.episodes = episodes
        self.wall_before = wall_time_s

    def state_dict(self) -> dict:
        return {
            "returns": list(self.returns),
            "scores": list(self.scores),
            "episodes": self.episodes,
            "wall_time_s": self.wall_before + time.perf_counter() - self.start,
        }

    def mean_return(self) -> float:
        return _mean(self.returns)

    def mean_score(self) -> float:
        return _mean(self.scores)

    def row(self, env_steps: int, updates: int, episodes: Episodes, metrics: dict[str, float]) -> None:
        self.returns.extend(episodes.returns)
        self.scores.extend(episodes.scores)
        self.episodes += len(episodes.returns)
        elapsed = time.perf_counter() - self.start
        sps = (env_steps - self.start_steps) / max(elapsed, 1e-9)
        scalars = {
            "charts/sps": sps,
            "charts/episodic_return": _mean(episodes.returns),
            "charts/episodic_length": _mean(episodes.lengths),
            "charts/mean_return_last_100": self.mean_return(),
            "charts/episodes": self.episodes,  # so far: how many episodes the last-100 means are over
            **metrics,
        }
        if episodes.scores or self.scores:
            scalars["charts/episodic_score"] = _mean(episodes.scores)
            scalars["charts/mean_score_last_100"] = self.mean_score()
        row = {
            "env_steps": env_steps,
            "updates": updates,
            "wall_time_s": round(self.wall_before + elapsed, 3),
            **scalars,
        }
        self._write_csv({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
        if self._tb is not None:
            for k, v in scalars.items():
                if k not in _PER_EPISODE and not (isinstance(v, float) and math.isnan(v)):
                    self._tb.add_scalar(k, v, env_steps)
            self._episodes_to_tb(episodes, env_steps)
        self._progress(env_steps, updates, sps)

    def _episodes_to_tb(self, episodes: Episodes, env_steps: int) -> None:
        """One point per episode at the env step it ended (episodes without their steps, from a checkpoint
        of an older htsrl: at the window's end)."""
        n = len(episodes.returns)
        steps = episodes.steps if len(episodes.steps) == n else [env_steps] * n
        for step, ret, length in zip(steps, episodes.returns, episodes.lengths):
            self._tb.add_scalar("charts/episodic_return", ret, step)
            self._tb.add_scalar("charts/episodic_length", length, step)
        # football reports a score for every episode; anything else: at the window's end
        score_steps = steps if len(episodes.scores) == n else [env_steps] * len(episodes.scores)
        for step, score in zip(score_steps, episodes.scores):
            self._tb.add_scalar("charts/episodic_score", score, step)

    def histogram(self, name: str, values, env_steps: int) -> None:
        """A TensorBoard histogram (no CSV column: the per-update summary of it is in ``row``)."""
        if self._tb is not None and len(values):
            self._tb.add_histogram(name, values, env_steps)

    def _drop_rows_after(self, env_steps: int) -> None:
        self._csv_file.seek(0)
        reader = csv.DictReader(self._csv_file)
        rows = list(reader)
        kept = [r for r in rows if int(r["env_steps"]) <= env_steps]
        if len(kept) < len(rows):
            self._csv_file.seek(0)
            self._csv_file.truncate()
            writer = csv.DictWriter(self._csv_file, fieldnames=reader.fieldnames, restval="")
            writer.writeheader()
            writer.writerows(kept)
            self._csv_file.flush()

    def _write_csv(self, row: dict) -> None:
        """Append a row. A column that appears later (the first football score, a resumed run whose file
        has other columns) rewrites the file once with the union of the columns, so no value ever
        lands under another column's header."""
        if self._csv is None:
            self._csv_file.seek(0)
            header = next(csv.reader(self._csv_file), [])
            self._csv = csv.DictWriter(self._csv_file, fieldnames=header or list(row), restval="")
            if not header:
                self._csv.writeheader()
        new = [k for k in row if k not in self._csv.fieldnames]
        if new:
            self._csv_file.seek(0)
            old_rows = list(csv.DictReader(self._csv_file))
            self._csv_file.seek(0)
            self._csv_file.truncate()
            self._csv = csv.DictWriter(self._csv_file, fieldnames=[*self._csv.fieldnames, *new], restval="")
            self._csv.writeheader()
            self._csv.writerows(old_rows)
        self._csv.writerow(row)
        self._csv_file.flush()

    def _progress(self, env_steps: int, updates: int, sps: float) -> None:
        if not self.enabled:
            return
        ret = f"{self.mean_return():.2f}" if self.returns else "-"
        if self._bar is not None:
            self._bar.update(env_steps - self._bar.n)
            self._bar.set_postfix_str(f"SPS {sps:,.0f} | return(100) {ret} | updates {updates}", refresh=False)
            return
        elapsed = time.perf_counter() - self.start
        if elapsed - self._last_print < self.interval_s and env_steps < self.total_steps:
            return
        self._last_print = elapsed
        eta = (self.total_steps - env_steps) / max(sps, 1e-9)
        print(
            f"steps {env_steps:,}/{self.total_steps:,} ({100 * env_steps / self.total_steps:.1f}%) | "
            f"{sps:,.0f} SPS | updates {updates} | return(last 100) {ret} | episodes {self.episodes} | "
            f"ETA {eta:.0f}s",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        self._csv_file.close()
