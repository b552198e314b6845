"""The live progress on stderr: a tqdm bar on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import math
import sys
import time

from htsrl.sinks import Report, SinkContext


class ProgressLine:
    def __init__(self, total_steps: int, start_steps: int = 0, interval_s: float = 5.0):
        self.total_steps, self.interval_s = total_steps, interval_s
        self.start = time.perf_counter()
        self._last_print = -math.inf
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_steps,
                initial=start_steps,
                unit="step",
                unit_scale=True,
                dynamic_ncols=True,
                file=sys.stderr,
            )

    @classmethod
    def open(cls, ctx: SinkContext) -> ProgressLine | None:
        return cls(ctx.total_steps, ctx.start_steps, ctx.interval_s) if ctx.progress and ctx.rank == 0 else None

    def write(self, report: Report) -> None:
        env_steps, updates = report.env_steps, report.updates
        sps, mean = report.scalars["charts/sps"], report.scalars["charts/mean_return_last_100"]
        ret = "-" if math.isnan(mean) else f"{mean:.2f}"
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
            f"{sps:,.0f} SPS | updates {updates} | return(last 100) {ret} | "
            f"episodes {report.scalars['charts/episodes']} | ETA {eta:.0f}s",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
