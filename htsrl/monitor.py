"""What a run reports while it trains. ``Monitor`` keeps the episode statistics (the last 100 returns and
scores, the episode count, the wall time of earlier sessions: what a checkpoint holds) and turns each
update into one :class:`~htsrl.sinks.Report` for the report sinks (``htsrl/sinks/``): ``progress.csv``,
TensorBoard, the progress line, and any ``--report-to`` adds.

The episodic charts (``charts/episodic_return``, ``episodic_length``, ``episodic_score``) are the one
difference between sinks: TensorBoard has a point per finished episode at the env step it ended, as
CleanRL logs them; ``progress.csv`` has one row per update, with the mean of the episodes that ended in its
window.

One metric namespace: ``charts/*`` (episodic_return, episodic_length, episodic_score, sps,
mean_return_last_100, mean_score_last_100, episodes),
``losses/*`` (policy, value, entropy, approx_kl, ...), ``time/*`` (rollout_s, learn_s,
barrier_wait_s per window), ``lag/*`` (HTS mode: the behaviour policy against the learner's, see
algos/returns.py), ``policy_lag/*`` (mean and max over the window's samples of the updates between the
policy that acted and the update learning it, see engine/policy_lag.py; also a TensorBoard histogram,
``policy_lag``), ``resources/*`` (htsrl/resources.py).
"""

from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path

from htsrl.config import Config
from htsrl.run_dir import RunDir
from htsrl.sinks import ALWAYS, Episodes, Report, SinkContext, open_sinks

LAST_EPISODES = 100  # the "last 100" of mean_return_last_100 (CleanRL's, SB3's): --stop-at-score counts once full

__all__ = ["Episodes", "Monitor"]


def _mean(xs) -> float:
    return sum(xs) / len(xs) if xs else math.nan


class Monitor:
    """``enabled``: the progress line (rank 0 with ``--progress``); ``tensorboard``: write ``tb/``;
    ``report_to``: sinks beyond the built-in ones (``htsrl.sinks.SINKS``); ``resumed``: the run goes on
    from a checkpoint at ``start_steps`` (default: when ``start_steps`` > 0)."""

    def __init__(
        self,
        run_dir: str | Path | RunDir,
        total_steps: int,
        start_steps: int = 0,
        enabled: bool = True,
        tensorboard: bool = True,
        interval_s: float = 5.0,
        report_to: list[str] = (),
        cfg: Config | None = None,
        rank: int = 0,
        resumed: bool | None = None,
    ):
        self.returns: deque[float] = deque(maxlen=LAST_EPISODES)
        self.scores: deque[float] = deque(maxlen=LAST_EPISODES)
        self.episodes = 0
        self.start = time.perf_counter()
        self.start_steps = start_steps
        self.wall_before = 0.0  # wall time of earlier sessions of a resumed run
        run_dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        resumed = start_steps > 0 if resumed is None else resumed
        ctx = SinkContext(run_dir, total_steps, start_steps, resumed, enabled, rank, cfg, interval_s)
        names = [n for n in ALWAYS if tensorboard or n != "tensorboard"] + list(report_to)
        self.sinks = open_sinks(names, ctx)

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

    def row(
        self,
        env_steps: int,
        updates: int,
        episodes: Episodes,
        metrics: dict[str, float],
        histograms: dict | None = None,
    ) -> None:
        """One update: fold the window's episodes into the statistics and hand the report to every sink."""
        self.returns.extend(episodes.returns)
        self.scores.extend(episodes.scores)
        self.episodes += len(episodes.returns)
        elapsed = time.perf_counter() - self.start
        scalars = {
            "charts/sps": (env_steps - self.start_steps) / max(elapsed, 1e-9),
            "charts/episodic_return": _mean(episodes.returns),
            "charts/episodic_length": _mean(episodes.lengths),
            "charts/mean_return_last_100": self.mean_return(),
            "charts/episodes": self.episodes,  # so far: how many episodes the last-100 means are over
            **metrics,
        }
        if episodes.scores or self.scores:
            scalars["charts/episodic_score"] = _mean(episodes.scores)
            scalars["charts/mean_score_last_100"] = self.mean_score()
        report = Report(env_steps, updates, self.wall_before + elapsed, scalars, episodes, histograms or {})
        for sink in self.sinks:
            sink.write(report)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
