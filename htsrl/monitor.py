"""What a run reports while it trains: a progress line on stderr and one CSV row per update."""

from __future__ import annotations

import csv
import math
import sys
import time
from collections import deque
from pathlib import Path


class Monitor:
    def __init__(self, run_dir: Path, total_steps: int, enabled: bool = True, interval_s: float = 1.0):
        self.total_steps, self.enabled, self.interval_s = total_steps, enabled, interval_s
        self.returns: deque[float] = deque(maxlen=100)
        self.episodes = 0
        self.start = time.perf_counter()
        self._last_print = 0.0
        self._tty = sys.stderr.isatty()
        self._csv_file = open(run_dir / "progress.csv", "w", newline="")
        self._csv: csv.DictWriter | None = None

    def episodes_ended(self, returns: list[float]) -> None:
        self.returns.extend(returns)
        self.episodes += len(returns)

    def mean_return(self) -> float:
        return sum(self.returns) / len(self.returns) if self.returns else math.nan

    def row(self, env_steps: int, updates: int, metrics: dict[str, float], window_returns: list[float]) -> None:
        elapsed = time.perf_counter() - self.start
        row = {"env_steps": env_steps, "updates": updates, "wall_time_s": round(elapsed, 3),
               "charts/sps": round(env_steps / max(elapsed, 1e-9), 1),
               "charts/episodic_return": (sum(window_returns) / len(window_returns)) if window_returns else "",
               "charts/mean_return_last_100": self.mean_return() if self.returns else "",
               **metrics}
        if self._csv is None:
            self._csv = csv.DictWriter(self._csv_file, fieldnames=list(row))
            self._csv.writeheader()
        self._csv.writerow({k: row.get(k, "") for k in self._csv.fieldnames})
        self._csv_file.flush()
        if self.enabled and (elapsed - self._last_print >= self.interval_s or env_steps >= self.total_steps):
            self._last_print = elapsed
            self._print(env_steps, updates, elapsed)

    def _print(self, env_steps: int, updates: int, elapsed: float) -> None:
        sps = env_steps / max(elapsed, 1e-9)
        eta = (self.total_steps - env_steps) / max(sps, 1e-9)
        ret = f"{self.mean_return():.2f}" if self.returns else "-"
        line = (f"steps {env_steps:>10,}/{self.total_steps:,} ({100 * env_steps / self.total_steps:5.1f}%)"
                f" | {sps:8,.0f} SPS | updates {updates:>6} | return(last 100) {ret:>8}"
                f" | episodes {self.episodes} | ETA {eta:6.0f}s")
        if self._tty:
            sys.stderr.write("\r" + line + ("\n" if env_steps >= self.total_steps else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        self._csv_file.close()
