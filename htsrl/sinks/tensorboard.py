"""TensorBoard (``tb/``): the scalars at the update's env step, a point per finished episode at the env
step it ended (as CleanRL logs them), and histograms."""

from __future__ import annotations

from htsrl.sinks import PER_EPISODE, Report, SinkContext, _is_nan


class TensorBoard:
    def __init__(self, log_dir, start_steps: int = 0, resumed: bool = False):
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run: events past its checkpoint (an invocation killed later) are purged
        self._tb = SummaryWriter(str(log_dir), purge_step=start_steps + 1 if resumed else None)

    @classmethod
    def open(cls, ctx: SinkContext) -> TensorBoard:
        return cls(ctx.run_dir.tensorboard, ctx.start_steps, ctx.resumed)

    def write(self, report: Report) -> None:
        for k, v in report.scalars.items():
            if k not in PER_EPISODE and not _is_nan(v):
                self._tb.add_scalar(k, v, report.env_steps)
        self._episodes(report)
        for name, values in report.histograms.items():
            if len(values):
                self._tb.add_histogram(name, values, report.env_steps)

    def _episodes(self, report: Report) -> None:
        """One point per episode at the env step it ended (episodes without their steps, from a checkpoint
        of an older htsrl: at the window's end)."""
        episodes, env_steps = report.episodes, report.env_steps
        n = len(episodes.returns)
        steps = episodes.steps if len(episodes.steps) == n else [env_steps] * n
        for step, ret, length in zip(steps, episodes.returns, episodes.lengths):
            self._tb.add_scalar("charts/episodic_return", ret, step)
            self._tb.add_scalar("charts/episodic_length", length, step)
        # football reports a score for every episode; anything else: at the window's end
        score_steps = steps if len(episodes.scores) == n else [env_steps] * len(episodes.scores)
        for step, score in zip(score_steps, episodes.scores):
            self._tb.add_scalar("charts/episodic_score", score, step)

    def close(self) -> None:
        self._tb.close()
