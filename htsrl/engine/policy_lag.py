"""The policy lag of every learned sample, per update and over the run.

The lag of a sample is the number of updates the learner has applied that the policy which chose its
action had not: ``updates - version``, where ``updates`` is the number of the update about to be applied
(updates count from 0, so it is also the number already applied) and ``version`` the number of updates
behind the weights that chose the action (stamped by the actor, see actor.py). With the schedules of
docs/ARCHITECTURE.md: lock-step mode 0 for every sample; HTS mode 0 on window 0 (collected and learned
with the initial weights) and exactly 1 on every later window.

The run totals are a histogram ``{lag: samples}`` of plain ints, kept in the checkpoint, so a resumed
run reports the whole run's numbers."""

from __future__ import annotations

import numpy as np


class PolicyLag:
    def __init__(self) -> None:
        self.histogram: dict[int, int] = {}
        self.last: np.ndarray = np.zeros(0, dtype=np.int64)  # the lags of the last window, for a histogram

    def add(self, updates: int, versions: np.ndarray) -> dict[str, float]:
        """Count the lags of one window (``versions``: its stamped versions, any shape) learned by update
        number ``updates``; returns the ``policy_lag/*`` metrics of the window."""
        lags = (updates - np.asarray(versions, dtype=np.int64)).ravel()
        for lag, count in zip(*np.unique(lags, return_counts=True)):
            self.histogram[int(lag)] = self.histogram.get(int(lag), 0) + int(count)
        self.last = lags
        return {"policy_lag/mean": float(lags.mean()), "policy_lag/max": float(lags.max())}

    def summary(self) -> dict | None:
        """``{mean, max, samples, histogram: {lag: samples}}`` over the run (None before any update)."""
        samples = sum(self.histogram.values())
        if not samples:
            return None
        lags = sorted(self.histogram)
        return {
            "mean": sum(lag * n for lag, n in self.histogram.items()) / samples,
            "max": lags[-1],
            "samples": samples,
            "histogram": {str(lag): self.histogram[lag] for lag in lags},  # JSON keys are strings
        }

    def state_dict(self) -> dict[int, int]:
        return dict(self.histogram)

    def load_state_dict(self, state: dict[int, int]) -> None:
        self.histogram = {int(k): int(v) for k, v in state.items()}
