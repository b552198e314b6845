"""Weights & Biases (``--track``, or ``--report-to wandb``; ``pip install 'htsrl[track]'``): the run's resolved
config as the W&B run's config, and every update's scalars under TensorBoard's names (``charts/*``,
``losses/*``, ``time/*``, ``lag/*``, ``policy_lag/*``, ``resources/*``; the ``policy_lag`` histogram as a
``wandb.Histogram``) at W&B step = the run's env steps, TensorBoard's x-axis.

**One row per update.** TensorBoard has a point per finished episode at the env step it ended; here
``charts/episodic_*`` are the mean of the episodes that ended in the update's window, as in
``progress.csv``. W&B keeps one step counter per run and drops any row logged at a step below it, so
per-episode points would need a custom x-axis (``define_metric``) over W&B's own counter, which counts
``log`` calls: that counter starts again at 0 in each offline invocation of a resumed run, and its rows
interleave when ``wandb sync`` uploads them. Logging every update at ``step=env_steps`` instead is
monotonic by construction, across invocations and offline runs alike, and the W&B history is
``progress.csv`` row for row (TensorBoard keeps the per-episode scatter).

**Resume.** ``wandb_run.json`` in the run folder keeps the W&B run's id, project and entity, and the last
env step logged to it, rewritten after each row. A resumed run (``--resume``) continues that W&B run
(``resume="allow"``, in its own project) and skips every row at or below that step: htsrl's resume is
bitwise, so the updates after the checkpoint that an invocation killed later already logged come again
with the same numbers, and W&B cannot delete rows. (``--mode async`` resumes, but not bitwise: there the
rows a killed invocation logged after the checkpoint stay in W&B, while ``progress.csv`` and TensorBoard
hold the resumed run's.) A new run in the folder (``--overwrite``) starts a new
W&B run. Offline, each invocation writes its own ``wandb/offline-run-*`` folder with the same run id;
``wandb sync RUN_DIR/wandb/offline-run-*`` uploads them in order as one run.

**Never costs a run.** Any exception from wandb (no network, no login, a bad key, a broken install) prints
one line, ``htsrl: warning: W&B tracking off: <reason>``, and the sink goes quiet; training goes on. Unless
set by the environment (``WANDB_INIT_TIMEOUT``, ``WANDB_FINISH_TIMEOUT``), ``wandb.init`` gives up after
30 s and the final upload after 120 s (what is left stays on disk for ``wandb sync``). W&B's own console
lines are off (``WANDB_SILENT``, ``WANDB_CONSOLE`` to change): htsrl prints one line with the run's URL
(or, offline, its folder) where it prints its start line.

Rank 0 of a data-parallel run logs (the others' ``open`` returns None). wandb's files go to the run
folder's ``wandb/`` (``WANDB_DIR`` elsewhere); wandb is imported only here, where a sink or ``htsrl eval``
uses it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from htsrl.config import Config
from htsrl.errors import ConfigError
from htsrl.run_dir import RunDir
from htsrl.sinks import Report, SinkContext, _is_nan

EXTRA = "pip install 'htsrl[track]'"
# wandb settings htsrl sets unless the environment does (WANDB_<NAME>)
SETTINGS = {"init_timeout": 30.0, "finish_timeout": 120.0, "silent": True, "console": "off"}


class WandB:
    """One W&B run per htsrl run (module docstring); quiet for good after its first failure."""

    @staticmethod
    def check() -> None:
        """Before anything starts: wandb is installed (``--track`` without it is refused in one line)."""
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ConfigError(f"--track logs to Weights & Biases, whose package is not installed: {EXTRA}") from None
        except Exception:  # noqa: BLE001  (a broken install: the sink warns when it opens, and the run goes on)
            pass

    def __init__(self, run_dir: RunDir, cfg: Config, resumed: bool = False, announce: bool = True):
        self._run = None
        self._warned = False
        self._file = run_dir.wandb_run
        saved = _read_state(run_dir) if resumed else None  # a resumed run continues its W&B run
        try:
            import wandb

            self._wandb = wandb
            where = {"project": cfg.wandb_project, "entity": cfg.wandb_entity}
            if saved is not None:
                where = {"project": saved["project"], "entity": saved["entity"], "id": saved["id"], "resume": "allow"}
            self._run = wandb.init(
                **where,
                name=_name(run_dir),
                group=cfg.wandb_group or _seed_group(run_dir),
                tags=[t.strip() for t in cfg.wandb_tags.split(",") if t.strip()] or None,
                dir=None if "WANDB_DIR" in os.environ else str(run_dir.path.resolve()),
                reinit="create_new",  # a W&B run of the caller's own stays as it is
                settings=_settings(wandb),
            )
            self._run.config.update(dataclasses.asdict(cfg), allow_val_change=True)  # a resume's may differ
            entity = self._run.entity or where["entity"]  # offline: none known
            self._state = {"id": self._run.id, "project": self._run.project, "entity": entity}
            self._state["env_steps"] = saved["env_steps"] if saved is not None else 0
            self._save_state()
            if announce:
                print(f"htsrl: W&B run {_where(self._run)}", file=sys.stderr, flush=True)
        except Exception as e:  # noqa: BLE001  (tracking never costs a run)
            self._off(e)

    @classmethod
    def open(cls, ctx: SinkContext) -> WandB | None:
        if ctx.rank != 0:
            return None
        sink = cls(ctx.run_dir, ctx.cfg or Config(), ctx.resumed, ctx.progress)
        return sink if sink._run is not None else None

    def write(self, report: Report) -> None:
        if self._run is None or report.env_steps <= self._state["env_steps"]:
            return  # off, or logged already by an invocation killed after the checkpoint this one resumed
        try:
            row = {k: v for k, v in report.scalars.items() if not _is_nan(v)}
            for name, values in report.histograms.items():
                if len(values):
                    row[name] = self._wandb.Histogram(values)
            self._run.log(row, step=report.env_steps)
            self._state["env_steps"] = report.env_steps
            self._save_state()
        except Exception as e:  # noqa: BLE001
            self._off(e)

    def close(self) -> None:
        run, self._run = self._run, None
        if run is not None:
            try:
                run.finish()
            except Exception as e:  # noqa: BLE001
                self._off(e)

    def _save_state(self) -> None:
        _write_state(self._file, self._state)

    def _off(self, e: BaseException) -> None:
        """Say once why, then stay quiet."""
        if not self._warned:
            self._warned = True
            print(f"htsrl: warning: W&B tracking off: {_reason(e)}", file=sys.stderr, flush=True)
        run, self._run = self._run, None
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:  # noqa: BLE001
                pass


def log_evaluation(run_dir: str | Path, result: dict, video: str | Path) -> None:
    """``htsrl eval RUN --video`` of a tracked run (one with ``wandb_run.json``): the video and the score go to
    its W&B run, resumed, at the step after the last one logged (W&B steps only increase); a failure warns
    once and the evaluation stands. A run training now is left alone (two writers of one W&B run)."""
    run_dir = RunDir(run_dir)
    state = _read_state(run_dir)
    if state is None:
        return
    try:
        if run_dir.in_use():
            raise RuntimeError(f"{run_dir.path} is training now; log its evaluation once it stops")
        try:
            import wandb
        except ImportError:
            raise RuntimeError(f"the run was tracked, but wandb is not installed: {EXTRA}") from None
        run = wandb.init(
            project=state["project"],
            entity=state["entity"],
            id=state["id"],
            resume="allow",
            dir=None if "WANDB_DIR" in os.environ else str(run_dir.path.resolve()),
            reinit="create_new",
            settings=_settings(wandb),
        )
        try:
            row = {f"eval/{k}": result[k] for k in EVAL_KEYS if k in result}
            row["eval/video"] = wandb.Video(str(video), format="mp4")
            step = state["env_steps"] + 1
            run.log(row, step=step)
            _write_state(run_dir.wandb_run, {**state, "env_steps": step})
        finally:
            run.finish()
        print(f"htsrl: eval: video and score logged to W&B run {_where(run)}", file=sys.stderr, flush=True)
    except Exception as e:  # noqa: BLE001  (the evaluation itself is done and written)
        print(f"htsrl: warning: W&B tracking off: {_reason(e)}", file=sys.stderr, flush=True)


EVAL_KEYS = ("mean_score", "std_score", "mean_length", "mean_steps", "mean_score_difference", "episodes")


def _settings(wandb):
    known = getattr(wandb.Settings, "model_fields", SETTINGS)  # an older wandb lacks some (finish_timeout)
    return wandb.Settings(
        **{k: v for k, v in SETTINGS.items() if k in known and f"WANDB_{k.upper()}" not in os.environ}
    )


def _read_state(run_dir: RunDir) -> dict | None:
    """The W&B run this run logs to, and the last env step logged there (None: never tracked)."""
    try:
        state = json.loads(run_dir.wandb_run.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("id") else None


def _write_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)  # whole or not at all, even if the process is killed


def _name(run_dir: RunDir) -> str:
    """The run folder's name (a seed group's run: ``<group>/seed_S``)."""
    path = run_dir.path.resolve()
    return f"{path.parent.name}/{path.name}" if _seed_group(run_dir) else path.name


def _seed_group(run_dir: RunDir) -> str | None:
    parent = RunDir(run_dir.path.resolve().parent)
    return parent.path.name if parent.is_group() else None


def _where(run) -> str:
    if run.offline:  # each invocation of a run has its folder there; wandb sync uploads them in order
        files = Path(run.settings.sync_dir).parent
        return f"{run.id}, offline in {files}; upload with: wandb sync {files}/offline-run-*-{run.id}*"
    return str(run.url)


def _reason(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__
