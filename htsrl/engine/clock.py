"""Where a role's time goes: seconds per activity, summed into its row of the shared ``stats``.

The names are ``shm.STAT_NAMES`` and end up in ``summary.json`` (``time_split``):

| name | seconds spent |
|---|---|
| cpu_s | CPU time of the role's loop (``time.process_time`` since its clock was made; not start-up) |
| env_s | stepping envs (executors) |
| infer_s | forward passes (actors; the main process in lock-step mode) |
| wait_s | blocked on a channel |
| ipc_s | posting messages to other roles |
| learn_s | updates (the learner) |

A role's loop runs its phases back to back, so one clock reading ends a phase and starts the next:
``mark()`` starts timing, each ``lap(name)`` charges the time since the previous mark or lap to
``name``. Start-up (a spawned interpreter's imports, building envs) is not in ``cpu_s``. Laps add to
plain floats (about 0.2 us each); ``flush()`` adds them to the shared row, once per window or so.
"""

from __future__ import annotations

from time import perf_counter, process_time

import numpy as np

from htsrl.engine.shm import STAT, STAT_NAMES


class RoleClock:
    __slots__ = ("_acc", "_cpu0", "_since", "cpu", "row")

    def __init__(self, row: np.ndarray, cpu: bool = True) -> None:
        """``row``: this process's row of ``RolloutBuffers.stats``. ``cpu``: each flush also records the
        process's CPU seconds in ``cpu_s`` (role processes; the runner records the main process's)."""
        self.row, self.cpu = row, cpu
        self._acc = dict.fromkeys(STAT_NAMES, 0.0)
        self._since = perf_counter()
        self._cpu0 = process_time()

    def mark(self) -> None:
        """Start timing here; the time since the last mark or lap is not charged to anything."""
        self._since = perf_counter()

    def lap(self, name: str) -> None:
        """Charge the time since the last mark or lap to ``name`` (a ``STAT_NAMES`` entry)."""
        now = perf_counter()
        self._acc[name] += now - self._since
        self._since = now

    def flush(self) -> None:
        """Add the seconds charged so far to the shared row (and set ``cpu_s``)."""
        for name, seconds in self._acc.items():
            if seconds:
                self.row[STAT[name]] += seconds
                self._acc[name] = 0.0
        if self.cpu:
            self.row[STAT["cpu_s"]] = process_time() - self._cpu0
