"""The training loop: wires the roles and runs the HTS-RL schedule (or the lock-step baseline).

HTS mode, window w in buffer w % 2 (time runs left to right)::

    executors+actors | collect w=0 | collect 1 (θ0) | collect 2 (θ1) | collect 3 (θ2) | ...
    learner          |             | update 0 → θ1  | update 1 → θ2  | update 2 → θ3  | ...
                                  ^ barrier: publish θ_w, draw the uniforms of w+1, go

Each barrier waits for the rollout of window w+1 and the update on window w; the weights published
there (after update w) drive window w+2: the policy lag is exactly one update. Lock-step mode
(``--mode sync``) runs collect w with θ_w, then update w, with no overlap and no lag; raw mode
collects with random actions and never learns (the throughput ceiling).

Checkpoints are taken at barriers only, where no process is working (engine/state.py says what they
hold); engine/summary.py writes what the run says about itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from htsrl import resources
from htsrl.checks import check_new_run_folder, check_resume_folder, preflight
from htsrl.config import Config, resolve
from htsrl.device import rank_devices
from htsrl.distributed import DataParallel, SingleProcess, launched_by_torchrun
from htsrl.engine import state
from htsrl.engine.history import EnvHistory
from htsrl.engine.learner import Learner
from htsrl.engine.policy_lag import PolicyLag
from htsrl.engine.processes import StopRequest
from htsrl.engine.rollout import ParallelRollout, Rollout, SerialRollout
from htsrl.engine.shm import STAT, RolloutBuffers
from htsrl.engine.streams import ActionStreams
from htsrl.engine.summary import WindowTimes, run_summary, start_line
from htsrl.envs import EnvInfo
from htsrl.errors import Interrupted, NonFiniteError, RoleFailed
from htsrl.monitor import LAST_EPISODES, Episodes, Monitor
from htsrl.nn import flat_size, flatten_params
from htsrl.run_dir import RunDir, default_run_dir
from htsrl.sinks import report_sinks

# on_window(window, bufs, buf): called with `window` complete in buffer `buf`, before its update (tests use it).
WindowHook = Callable[[int, RolloutBuffers, int], None]
RESOURCES_INTERVAL_S = 1.0  # resources/* sampled at most this often


def train(cfg: Config, on_window: WindowHook | None = None, resume: bool = False) -> dict:
    """Train; under torchrun (WORLD_SIZE > 1) as one data-parallel rank (see htsrl/distributed.py).
    ``resume``: continue the run in ``cfg.run_dir`` from its checkpoint; every setting that changes the
    numbers must equal the run's (ConfigError otherwise)."""
    cfg = resolve(cfg)
    if resume:
        check_resume_folder(cfg)
    info, local = preflight(cfg)
    if launched_by_torchrun():
        local = rank_devices(local, int(os.environ.get("LOCAL_RANK", "0")))
    dp = DataParallel(cfg.watchdog_s, cfg.device) if launched_by_torchrun() else SingleProcess()
    # every rank keeps its own checkpoint (its envs' history and streams)
    run_dir = RunDir(cfg.run_dir or default_run_dir(cfg)).rank(dp.rank)
    cfg = dataclasses.replace(cfg, run_dir=str(run_dir))  # what config.json and the checkpoint keep
    clean = False  # every rank ends the same way: finished, or stopped at one barrier
    lock = None
    try:
        lock = run_dir.lock()  # before anything in the folder is read or written
        if not resume:
            check_new_run_folder(cfg, run_dir)
            run_dir.claim_new_run(cfg.overwrite)
        summary = Trainer(cfg, local, info, dp, on_window, resume, run_dir).run()
        clean = True
        return summary
    except Interrupted:
        clean = True
        raise
    finally:
        if lock is not None:
            lock.release()
        dp.close(clean)


class Trainer:
    """One run of one rank: set-up and restore, the steps of the schedule (collect, wait, recover, record,
    learn, barrier), the HTS and the lock-step schedule, and the summary."""

    def __init__(
        self, cfg: Config, local: Config, info: EnvInfo, dp, on_window: WindowHook | None, resume: bool, run_dir: RunDir
    ):
        self.cfg, self.dp, self.on_window, self.resume = cfg, dp, on_window, resume
        self.run_dir = run_dir
        # num_envs: envs of every rank (steps per window = num_envs * alpha); this rank's are buffer columns
        self.steps_per_window = cfg.num_envs * cfg.alpha
        self.windows = math.ceil(cfg.total_steps / self.steps_per_window)
        ckpt = state.checkpoint_to_resume(cfg, run_dir, self.windows, self.steps_per_window) if resume else None
        torch.set_num_threads(cfg.learner_threads)
        env_offset = dp.env_offset(cfg.num_envs)
        self.learner = Learner(
            dataclasses.replace(cfg, device=local.device),
            info.obs_shape,
            info.action_spec,
            total_updates=self.windows,
            dp=dp,
        )
        if ckpt is None and cfg.init_from:
            self.learner.start_from(Path(cfg.init_from))
        if ckpt is None or ckpt["config"]["total_steps"] != cfg.total_steps:  # a new run, or one trained longer
            run_dir.write_config(cfg)
        self.bufs = RolloutBuffers(
            local.num_envs,
            cfg.alpha,
            info.obs_shape,
            info.obs_dtype,
            flat_size(self.learner.model),
            cfg.num_executors + cfg.num_actors + 1,
            num_slots=cfg.async_slots if cfg.mode == "async" else 2,
            action_spec=info.action_spec,
            state_size=self.learner.model.state_size,
        )
        self.streams = ActionStreams(cfg.seed, local.num_envs, env_offset)
        self.history = EnvHistory(local.num_envs, info.players)
        self.rollout_sha256 = hashlib.sha256(b"htsrl").hexdigest()
        # the first window this process collects or learns
        self.first_window = ckpt["next_window"] if ckpt is not None else 0
        self.pending: Episodes | None = None  # HTS resume: episodes of the collected, unlearned window
        self.restarts = 0
        self.begun = 0  # windows begun so far (async mode begins several ahead)
        self.carried: dict[str, np.ndarray] | None = None  # async: the last recorded window's row alpha
        self.policy_lag = PolicyLag()
        # HTS: the weights that collect the window after the last (θ_(W-1) once W windows are learned), kept
        # in a finished run's checkpoint so that it can be trained longer bitwise
        self.next_behaviour: torch.Tensor | None = None
        self.rollout: Rollout = (SerialRollout if cfg.serial else ParallelRollout)(
            local, info.obs_shape, info.action_spec, self.bufs, env_offset
        )
        self.rollout.stack_dir = run_dir.stacks  # made when a role starts; its files are left only by a hang
        self.steps_before = self.first_window * self.steps_per_window
        self.monitor = Monitor(
            run_dir,
            self.windows * self.steps_per_window,
            start_steps=self.steps_before,
            enabled=cfg.progress and dp.rank == 0,
            report_to=report_sinks(cfg),
            cfg=cfg,
            rank=dp.rank,
            resumed=ckpt is not None,
        )
        if ckpt is not None:
            self._restore(ckpt)
        self.times = WindowTimes()
        self.stop = StopRequest()
        self.stop_at = cfg.stop_at_steps or math.inf
        self.stopped_by: str | None = None  # why the run stopped before its end: summary.json's stopped_by
        self.windows_done = self.first_window  # windows learned (raw mode: collected)
        self._resources_at = -math.inf

    # -- checkpoints (engine/state.py)
    def state(
        self, last_window: int, next_window: int, finished: bool = False, pending: Episodes | None = None
    ) -> dict:
        return state.capture(self, last_window, next_window, finished, pending)

    def _restore(self, ckpt: dict) -> None:
        state.restore(self, ckpt)

    def save_checkpoint(
        self, last_window: int, next_window: int, finished: bool = False, pending: Episodes | None = None
    ) -> None:
        state.save(self, last_window, next_window, finished, pending)

    # -- the steps of a schedule
    def collect(self, window: int, publish: bool = True) -> None:
        """Publish the weights (async mode: they are published after each update instead), draw the
        window's uniforms and start it (returns at once in parallel)."""
        if publish and self.next_behaviour is not None:  # HTS, a finished run trained longer: its θ_(W-1)
            self.bufs.publish(self.next_behaviour, window - 1)
            self.next_behaviour = None
        elif publish:
            self.learner.publish(self.bufs)
        self.streams.fill(self.bufs.uniforms[self.bufs.slot(window)])
        self.times.collect_started = time.perf_counter()
        self.rollout.begin(window)
        self.begun = max(self.begun, window + 1)

    def wait(self, window: int) -> None:
        """Block until the window is collected, recovering from failed roles on the way."""
        t0 = time.perf_counter()
        while True:
            try:
                self.rollout.finish(window)
                break
            except RoleFailed as failure:
                self.recover(window, failure)
        self.times.barrier_wait_s = time.perf_counter() - t0
        self.times.rollout_s = time.perf_counter() - self.times.collect_started
        if not self.cfg.serial and self.cfg.mode != "sync":  # lock-step: the main process works in finish()
            self.bufs.stats[-1][STAT["wait_s"]] += self.times.barrier_wait_s  # and times itself there

    def recover(self, window: int, failure: RoleFailed) -> None:
        """A role died or an env raised while ``window`` was collected: restart every role, rebuild the envs
        at their state after the window before (from the history) and collect the window again. Its
        weights and uniforms are still in shared memory, so the numbers do not change."""
        while True:  # a restart can fail too (an env that raises while replayed): it counts as one more
            if not failure.retryable:
                raise failure
            self.restarts += 1
            if self.restarts > self.cfg.max_restarts:
                raise RoleFailed(
                    f"{failure}\ngave up after {self.cfg.max_restarts} restarts (--max-restarts); "
                    f"{self._kept_checkpoint()}",
                    retryable=False,
                )
            lines = [ln for ln in str(failure).splitlines() if ln.strip()]
            reason = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1].strip()}"
            print(
                f"htsrl: {reason}; restarting the rollout of window {window} from the last barrier "
                f"(restart {self.restarts} of at most {self.cfg.max_restarts})",
                file=sys.stderr,
                flush=True,
            )
            try:
                if self.carried is not None and window > 0:
                    # async: executors that ran ahead may have reused this slot for their own envs
                    for name, row in self.carried.items():
                        getattr(self.bufs, name)[self.bufs.slot(window - 1), self.bufs.alpha] = row
                self.learner.shards.close()  # fork from a process without idle threads; remade at the next update
                self.rollout.restart(self.history if window > 0 else None, window - 1)
                self.run_dir.write_pids(self.rollout.pids)
                for w in range(window, max(self.begun, window + 1)):  # async: every window begun
                    self.rollout.begin(w)
                return
            except RoleFailed as again:
                failure = again

    def record(self, window: int) -> Episodes:
        """The window is complete: fold it into the run's rollout hash and the envs' histories; return the
        episodes that ended in it (every rank's, in rank order)."""
        bufs, buf = self.bufs, self.bufs.slot(window)
        if self.on_window is not None:
            self.on_window(window, bufs, buf)
        h = hashlib.sha256(bytes.fromhex(self.rollout_sha256))
        for name in ("actions", "logp", "value", "reward", "version"):
            h.update(np.ascontiguousarray(getattr(bufs, name)[buf]).tobytes())
        self.rollout_sha256 = h.hexdigest()
        if self.cfg.mode == "async":  # where the envs are after this window, should a role fail later
            self.carried = state.carried_rows(self.bufs, buf)
        ended = ~np.isnan(bufs.ep_return[buf])  # row-major: ordered by (step, env)
        self.history.record_window(bufs.actions[buf], bufs.terminated[buf] | bufs.truncated[buf], ended)
        scores = bufs.ep_score[buf][ended]
        # the run's env steps after step t of the window (all ranks' envs step together): where each ended
        t = np.nonzero(ended)[0]
        steps = window * self.steps_per_window + (t + 1) * self.cfg.num_envs
        mine = Episodes(
            bufs.ep_return[buf][ended].tolist(),
            bufs.ep_length[buf][ended].tolist(),
            scores[~np.isnan(scores)].tolist(),
            steps.tolist(),
        )
        if self.dp.world_size == 1:
            return mine
        parts = self.dp.gather(mine)
        return Episodes(
            [r for p in parts for r in p.returns],
            [x for p in parts for x in p.lengths],
            [x for p in parts for x in p.scores],
            [x for p in parts for x in p.steps],
        )

    def learn(self, window: int) -> dict[str, float]:
        t0 = time.perf_counter()
        update = self.learner.updates  # the number of this update: the policy lag is counted against it
        try:
            metrics = self.learner.update(self.bufs.window(self.bufs.slot(window)))
        except NonFiniteError as e:
            raise NonFiniteError(
                f"{e} (NaN/inf); stopped before it reached the weights; {self._kept_checkpoint()}"
            ) from None
        self.times.learn_s = time.perf_counter() - t0
        self.bufs.stats[-1][STAT["learn_s"]] += self.times.learn_s
        return {**metrics, **self.policy_lag.add(update, self.bufs.version[self.bufs.slot(window)])}

    def report(self, window: int, episodes: Episodes, metrics: dict[str, float]) -> None:
        steps = (window + 1) * self.steps_per_window
        extra = {**self.times.metrics(), **self._resources()}
        histograms = {"policy_lag": self.policy_lag.last} if "policy_lag/mean" in metrics else {}
        self.monitor.row(steps, self.learner.updates, episodes, {**metrics, **extra}, histograms)

    def _resources(self) -> dict[str, float]:
        """``resources/*`` of this rank's processes, at most once a second (0.2-0.7 ms a sample): every window
        of an Atari run, and no measurable cost where windows take milliseconds."""
        now = time.perf_counter()
        if now - self._resources_at < RESOURCES_INTERVAL_S:
            return {}
        self._resources_at = now
        return resources.sample({"main": os.getpid(), **self.rollout.pids})

    def barrier(
        self,
        last_window: int,
        next_window: int,
        pending: Episodes | None = None,
        save: bool = False,
        stopped_by: str | None = None,
    ) -> bool:
        """Nothing runs here. Saves a checkpoint when one is due (or ``save``), at a stop point
        (``--stop-at-steps``, ``--stop-at-score``, or ``stopped_by``: one decided before the windows in
        flight were learned) or on Ctrl-C (then raises Interrupted); returns True when the run stops here.
        ``next_window``: the window the run would go on with, i.e. the number of windows learned."""
        interrupted = self._any_rank(self.stop.requested)  # every rank stops at the same barrier
        if self.cfg.mode == "raw":  # the throughput ceiling keeps no checkpoints
            if interrupted:
                raise Interrupted("raw mode keeps no checkpoint")
            return False
        reason, due = self._stop_or_save_due(next_window, interrupted)
        self.stopped_by = reason or stopped_by
        pause = self.stopped_by is not None
        if pause or due or save:
            self.save_checkpoint(last_window, next_window, pending=pending)
        if interrupted:
            raise Interrupted(f"checkpoint saved, continue with: htsrl train --resume {self.cfg.run_dir}")
        return pause

    def _stop_or_save_due(self, next_window: int, interrupted: bool) -> tuple[str | None, bool]:
        """``(why the run stops here or None, checkpoint due)`` once ``next_window`` windows are learned: the
        one decision of where a run stops (Ctrl-C, ``--stop-at-steps``, ``--stop-at-score``) and saves
        (``--checkpoint-every``). A resumed run neither stops nor saves before it has learned a window."""
        progressed = next_window > self.first_window
        reason = "interrupt" if interrupted else None
        if progressed and reason is None:
            if next_window * self.steps_per_window >= self.stop_at:
                reason = "stop_at_steps"
            elif self.score_reached():
                reason = "stop_at_score"
        every = self.cfg.checkpoint_every
        return reason, progressed and every > 0 and self.learner.updates % every == 0

    def score_reached(self) -> bool:
        """``--stop-at-score``: the mean return of the last 100 episodes learned from is at least the target,
        once 100 have ended (a lucky first few stop nothing). Every rank holds every rank's episodes
        (``record`` gathers them), so every rank decides alike."""
        target, monitor = self.cfg.stop_at_score, self.monitor
        return target is not None and monitor.episodes >= LAST_EPISODES and monitor.mean_return() >= target

    def _any_rank(self, flag: bool) -> bool:
        if self.dp.world_size == 1:
            return flag
        return bool(self.dp.sum_(torch.tensor([float(flag)]))[0] > 0)

    def _kept_checkpoint(self) -> str:
        path = self.run_dir.checkpoint
        if path.exists():
            return f"the last good checkpoint ({path}) is kept; continue with: htsrl train --resume {self.cfg.run_dir}"
        return "no checkpoint was saved yet"

    # -- the schedules
    def run_hts(self) -> None:
        """Barrier w: window w collected, update w-1 done, nothing running. Then collect w+1 on the other
        buffer (with θ_w) while the learner updates on w."""
        if self.pending is None:  # a fresh run (or a finished one trained longer): nothing to overlap with
            self.collect(self.first_window)
            self.wait(self.first_window)
        for w in range(self.first_window, self.windows):
            episodes = self.pending if self.pending is not None else self.record(w)
            self.pending = None
            if self.barrier(last_window=w, next_window=w, pending=episodes):  # resumes by learning w
                return
            if w + 1 < self.windows:
                self.collect(w + 1)
            else:  # the last window: what a longer run would collect next with, for the final checkpoint
                self.next_behaviour = flatten_params(self.learner.model)
            metrics = self.learn(w)
            if w + 1 < self.windows:
                self.wait(w + 1)
            self.windows_done = w + 1
            self.report(w, episodes, metrics)

    def run_lockstep(self) -> None:
        """Collect w with θ_w, then update on it (raw mode: no update)."""
        for w in range(self.first_window, self.windows):
            self.collect(w)
            self.wait(w)
            episodes = self.record(w)
            metrics = self.learn(w) if self.cfg.mode == "sync" else {}
            self.windows_done = w + 1
            self.report(w, episodes, metrics)
            if w + 1 < self.windows and self.barrier(last_window=w, next_window=w + 1):
                return

    def run_async(self) -> None:
        """No barrier between windows: window w+K-1 is begun as soon as update w-1 has freed its slot (K =
        ``--async-slots``), each executor goes from one window to the next on its own, and the weights
        are published after every update, so actors act with the newest. A checkpoint (due, at a stop
        point or on Ctrl-C) first learns every window begun, so it holds nothing in flight: a stop decided
        at window w is kept through them (``stopped_by``), even if the score dips while they are learned."""
        slots = self.bufs.num_slots
        last = self.windows  # begin no window past a --stop-at-steps
        if self.stop_at < math.inf:
            last = min(last, math.ceil(self.stop_at / self.steps_per_window))
        self.learner.publish(self.bufs)
        w = self.begun = self.first_window
        while w < self.windows:
            for ahead in range(self.begun, min(last, w + slots)):  # the slots of windows before w are free:
                self.collect(ahead, publish=False)  # those windows are learned
            self._learn_async(w)
            w += 1
            if w == self.windows:
                continue
            stopped_by, due = self._stop_or_save_due(w, self.stop.requested)  # one rank: none to agree with
            if stopped_by is None and not due:
                continue
            while w < self.begun:  # drain: learn every window begun
                self._learn_async(w)
                w += 1
            if self.barrier(last_window=w - 1, next_window=w, save=True, stopped_by=stopped_by):
                return

    def _learn_async(self, w: int) -> None:
        self.wait(w)
        episodes = self.record(w)
        metrics = self.learn(w)
        self.learner.publish(self.bufs)
        self.windows_done = w + 1
        self.report(w, episodes, metrics)

    def run(self) -> dict:
        t_start = time.perf_counter()
        if self.cfg.progress and self.dp.rank == 0:
            print(start_line(self), file=sys.stderr, flush=True)
        with self.stop:
            try:
                self.rollout.start(self.history if self.resume else None, self.last_window if self.resume else -1)
                self.run_dir.write_pids(self.rollout.pids)
                t_loop, cpu_loop = time.perf_counter(), time.process_time()
                schedule = {"hts": self.run_hts, "async": self.run_async}.get(self.cfg.mode, self.run_lockstep)
                schedule()
                wall = time.perf_counter() - t_loop
                finished = self.windows_done == self.windows
                if finished and self.cfg.mode != "raw":
                    self.save_checkpoint(last_window=self.windows - 1, next_window=self.windows, finished=True)
            finally:
                self.learner.shards.close()
                self.rollout.close()
                self.monitor.close()
        self.bufs.stats[-1][STAT["cpu_s"]] = time.process_time() - cpu_loop  # this process's CPU in training
        summary = run_summary(self, finished, wall, t_loop - t_start)
        torch.save(self.learner.model.state_dict(), self.run_dir.model)
        self.run_dir.write_summary(summary)
        return summary
