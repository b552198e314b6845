"""The training loop: wires the roles and runs the HTS-RL schedule (or the lock-step baseline).

HTS mode, window w in buffer w % 2 (time runs left to right)::

    executors+actors | collect w=0 | collect 1 (θ0) | collect 2 (θ1) | collect 3 (θ2) | ...
    learner          |             | update 0 → θ1  | update 1 → θ2  | update 2 → θ3  | ...
                                  ^ barrier: publish θ_w, draw the uniforms of w+1, go

Each barrier waits for the rollout of window w+1 and the update on window w; the weights published
there (after update w) drive window w+2: the policy lag is exactly one update. Lock-step mode
(``--mode sync``) runs collect w with θ_w, then update w, with no overlap and no lag; raw mode
collects with random actions and never learns (the throughput ceiling).

Checkpoints are taken at barriers only (HTS: before collect w+1, with window w still to learn;
lock-step: after update w), where no process is working, so the state is complete and resume is
bitwise exact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from htsrl import resources
from htsrl.checkpoint import load_checkpoint, save_checkpoint
from htsrl.config import Config, check_resume, resolve, validate
from htsrl.distributed import DataParallel, SingleProcess, launched_by_torchrun
from htsrl.engine.history import EnvHistory
from htsrl.engine.learner import Learner
from htsrl.engine.policy_lag import PolicyLag
from htsrl.engine.processes import write_pids
from htsrl.engine.rollout import ParallelRollout, Rollout, SerialRollout
from htsrl.engine.shm import CARRIED_ROWS, STAT, STAT_NAMES, RolloutBuffers
from htsrl.engine.streams import ActionStreams
from htsrl.envs import EnvInfo, probe_env
from htsrl.errors import ConfigError, Interrupted, NonFiniteError, RoleFailed
from htsrl.monitor import Episodes, Monitor
from htsrl.nn import flat_size, flatten_params, num_params, params_sha256
from htsrl.run_dir import RunDirLock, claim_new_run

# on_window(window, bufs, buf): called with `window` complete in buffer `buf`, before its update (tests use it).
WindowHook = Callable[[int, RolloutBuffers, int], None]
# Buffer fields a checkpoint keeps of the last window (the one still to learn in HTS mode).
WINDOW_FIELDS = (
    "obs",
    "final_obs",
    "actions",
    "logp",
    "value",
    "reward",
    "terminated",
    "truncated",
    "uniforms",
    "version",
    "ep_return",
    "ep_length",
    "ep_score",
    "starts",
    "hidden",
)
# 2: tensors and plain types only (weights_only=True); 3: + the learner's normalization state;
# 4: + the window's episode starts and recurrent states (+ next_behaviour since htsrl 0.3: optional)
CHECKPOINT_FORMAT = 4
RESOURCES_INTERVAL_S = 1.0  # resources/* sampled at most this often


def default_run_dir(cfg: Config, seed: str | None = None) -> Path:
    """``runs/<env>__<algo>__<seed>__<time>``; a seed group's folder has ``seeds`` for the seed."""
    name = cfg.env.replace("/", "-").replace(":", "-")  # a custom env's module:EnvId too
    return Path("runs") / f"{name}__{cfg.algo}__{cfg.seed if seed is None else seed}__{int(time.time())}"


def preflight(cfg: Config) -> tuple[EnvInfo, Config]:
    """The checks of a resolved config that need no run folder, in the order a run meets them: the env
    (built once here), what the network and the world size allow, CUDA. Returns the env's spaces and this
    rank's config (its share of the envs). A seed group runs it once before any of its seeds starts."""
    info = probe_env(cfg.env, cfg.env_kwargs, cfg.env_backend)
    if cfg.precision == "bf16" and len(info.obs_shape) != 3:
        raise ConfigError(
            f"--precision bf16 runs the CNN in bfloat16; {cfg.env} has vector observations {info.obs_shape}, "
            "whose MLP runs in fp32 (leave --precision fp32)"
        )
    if cfg.norm_obs and len(info.obs_shape) != 1:
        raise ConfigError(
            f"--norm-obs normalizes vector observations; {cfg.env} has observations of shape {info.obs_shape} "
            "(images, which the CNN scales by 1/255: leave --norm-obs off)"
        )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.mode == "async" and world > 1:
        raise ConfigError("--mode async runs on one machine: data parallelism needs the ranks to meet at barriers")
    if cfg.num_envs % world:
        raise ConfigError(f"--num-envs {cfg.num_envs} is not divisible by the world size {world}")
    local = dataclasses.replace(cfg, num_envs=cfg.num_envs // world)  # this rank's envs
    validate(local)
    if cfg.device != "cpu":
        deterministic_cuda(cfg.device)
    if cfg.actor_device != "cpu" and not torch.cuda.is_available():  # whoever infers sets its own modes
        raise ConfigError(f"--actor-device {cfg.actor_device}: no CUDA device is visible to torch")
    return info, local


def train(cfg: Config, on_window: WindowHook | None = None, resume: bool = False) -> dict:
    """Train; under torchrun (WORLD_SIZE > 1) as one data-parallel rank (see htsrl/distributed.py).
    ``resume``: continue the run in ``cfg.run_dir`` from its checkpoint; every setting that changes the
    numbers must equal the run's (ConfigError otherwise)."""
    cfg = resolve(cfg)
    if resume:
        if not cfg.run_dir:
            raise ConfigError("resume needs the run's folder (run_dir)")
        saved = Path(cfg.run_dir) / "config.json"
        if not saved.is_file():
            raise ConfigError(f"--resume {cfg.run_dir}: no config.json there (is it a run directory?)")
        check_resume(resolve(Config.from_saved(json.loads(saved.read_text()))), cfg)
    info, local = preflight(cfg)
    if launched_by_torchrun():
        # one GPU per rank of a node, for this rank's learner and actors; the run's config keeps "cuda", so a
        # resume (which compares configs) gives every rank its own GPU again
        gpu = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        local = dataclasses.replace(
            local,
            device=gpu if cfg.device == "cuda" else cfg.device,
            actor_device=gpu if cfg.actor_device == "cuda" else cfg.actor_device,
        )
    dp = DataParallel(cfg.watchdog_s, cfg.device) if launched_by_torchrun() else SingleProcess()
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    if dp.rank > 0:  # every rank keeps its own checkpoint (its envs' history and streams)
        run_dir = run_dir / f"rank{dp.rank}"
    clean = False  # every rank ends the same way: finished, or stopped at one barrier
    lock = None
    try:
        lock = RunDirLock(run_dir)  # before anything in the folder is read or written
        if not resume:
            if cfg.init_from and Path(cfg.init_from).resolve() == run_dir.resolve():
                raise ConfigError(
                    f"--init-from {cfg.init_from} is the folder this run would write; give another --run-dir"
                )
            claim_new_run(run_dir, cfg.overwrite)
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


def deterministic_cuda(device: str) -> None:
    """What PyTorch needs for bitwise-repeatable CUDA results (costs some speed: no cuDNN autotuning,
    deterministic kernels where they exist, a fixed cuBLAS workspace)."""
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is visible to torch")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)


class StopRequest:
    """The first Ctrl-C/SIGTERM asks for a stop at the next barrier; a second one stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self  # signals can only be handled in the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nhtsrl: stopping at the next barrier to save a checkpoint (press Ctrl-C again to stop now)",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


@dataclasses.dataclass
class WindowTimes:
    """Seconds of the last window, reported per update as ``time/*``."""

    rollout_s: float = 0.0
    learn_s: float = 0.0
    barrier_wait_s: float = 0.0
    collect_started: float = 0.0

    def metrics(self) -> dict[str, float]:
        return {
            "time/rollout_s": self.rollout_s,
            "time/learn_s": self.learn_s,
            "time/barrier_wait_s": self.barrier_wait_s,
        }


class Trainer:
    """One run of one rank: set-up and restore, the steps of the schedule (collect, wait, recover, record,
    learn, barrier), the HTS and the lock-step schedule, and the summary."""

    def __init__(
        self, cfg: Config, local: Config, info: EnvInfo, dp, on_window: WindowHook | None, resume: bool, run_dir: Path
    ):
        self.cfg, self.dp, self.on_window, self.resume = cfg, dp, on_window, resume
        self.run_dir = run_dir
        # num_envs: envs of every rank (steps per window = num_envs * alpha); this rank's are buffer columns
        self.steps_per_window = cfg.num_envs * cfg.alpha
        self.windows = math.ceil(cfg.total_steps / self.steps_per_window)
        ckpt = self._checkpoint_to_resume() if resume else None
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
        cfg.run_dir = str(run_dir)
        if ckpt is None or ckpt["config"]["total_steps"] != cfg.total_steps:  # a new run, or one trained longer
            (run_dir / "config.json").write_text(cfg.to_json())
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
        self.rollout.stack_dir = run_dir / "stacks"  # made when a role starts; its files are left only by a hang
        self.steps_before = self.first_window * self.steps_per_window
        self.monitor = Monitor(
            run_dir,
            self.windows * self.steps_per_window,
            start_steps=self.steps_before,
            enabled=cfg.progress and dp.rank == 0,
        )
        if ckpt is not None:
            self._restore(ckpt)
        self.times = WindowTimes()
        self.stop = StopRequest()
        self.stop_at = cfg.stop_at_steps or math.inf
        self.windows_done = self.first_window  # windows learned (raw mode: collected)
        self._resources_at = -math.inf

    # -- checkpoints
    def _checkpoint_to_resume(self) -> dict:
        """The run's checkpoint, if it can go on to ``self.windows``: a run stopped on the way, or a finished
        one trained longer (a larger ``--total-steps``, which ``check_resume`` allows where the learning
        rate does not decay over the run)."""
        ckpt, path = load_checkpoint(self.run_dir), self.run_dir / "checkpoint.pt"
        # format 3 lacks only the recurrent rows, which a feed-forward run never reads
        readable = (CHECKPOINT_FORMAT, 3) if self.cfg.recurrent == "none" else (CHECKPOINT_FORMAT,)
        if ckpt.get("format") not in readable:
            raise ConfigError(
                f"{path} was written by another version of htsrl "
                f"(format {ckpt.get('format')}, this one reads {CHECKPOINT_FORMAT})"
            )
        steps = ckpt["next_window"] * self.steps_per_window
        if ckpt["next_window"] < self.windows:
            if ckpt["finished"] and self.cfg.mode == "hts" and ckpt.get("next_behaviour") is None:
                raise ConfigError(
                    f"the run in {self.run_dir} finished before htsrl 0.3, whose final checkpoint lacks the weights "
                    f"that act next in HTS mode; start a new run from its weights with --init-from {self.run_dir}"
                )
            return ckpt
        if ckpt["finished"]:
            raise ConfigError(
                f"the run in {self.run_dir} already finished ({steps} steps, {ckpt['learner']['updates']} updates); "
                f"to train it longer give a larger --total-steps with --resume, or start a new run from its "
                f"weights with --init-from {self.run_dir}"
            )
        raise ConfigError(f"--total-steps {self.cfg.total_steps} ends before the checkpoint in {path} ({steps} steps)")

    def _restore(self, ckpt: dict) -> None:
        """The state of ``ckpt`` (``state``'s dict) into this fresh trainer: the inverse of ``state``."""
        self.learner.load_state_dict(ckpt["learner"])
        self.streams.set_state(ckpt["streams"])
        self.history.load_state_dict(ckpt["history"])
        buf = self.bufs.slot(ckpt["last_window"])
        for name in WINDOW_FIELDS:
            if name in ckpt["window"]:  # format 3: no starts or hidden (feed-forward; left as zeros)
                getattr(self.bufs, name)[buf] = ckpt["window"][name].numpy()
        self.rollout_sha256 = ckpt["rollout_sha256"]
        self.policy_lag.load_state_dict(ckpt.get("policy_lag", {}))  # absent from older checkpoints
        self.monitor.restore(**ckpt["monitor"])
        self.next_behaviour = ckpt.get("next_behaviour")  # absent before htsrl 0.3
        self.last_window = ckpt["last_window"]
        if self.cfg.mode == "hts" and not ckpt["finished"]:  # window last_window is collected, still to learn
            self.pending = Episodes(**ckpt["pending_episodes"])
        if self.cfg.mode == "async":
            self.carried = self._carried_rows(buf)

    def _carried_rows(self, buf: int) -> dict[str, np.ndarray]:
        return {name: getattr(self.bufs, name)[buf, self.bufs.alpha].copy() for name in CARRIED_ROWS}

    def state(
        self, last_window: int, next_window: int, finished: bool = False, pending: Episodes | None = None
    ) -> dict:
        """Everything to continue bitwise, as tensors and plain types: the learner, every stream, each env's
        history and the buffer of ``last_window`` (HTS: the window still to learn). ``_restore`` reads
        back every field (``tests/test_resume.py`` checks both against an uninterrupted run's)."""
        buf = self.bufs.slot(last_window)
        return {
            "format": CHECKPOINT_FORMAT,
            "config": dataclasses.asdict(self.cfg),
            "finished": finished,
            "last_window": last_window,
            "next_window": next_window,
            "pending_episodes": dataclasses.asdict(pending or Episodes()),
            "learner": self.learner.state_dict(),
            "streams": self.streams.state(),
            "history": self.history.state_dict(),
            "window": {name: torch.from_numpy(getattr(self.bufs, name)[buf].copy()) for name in WINDOW_FIELDS},
            "rollout_sha256": self.rollout_sha256,
            "monitor": self.monitor.state_dict(),
            "policy_lag": self.policy_lag.state_dict(),
            "next_behaviour": self.next_behaviour,
        }

    def save_checkpoint(
        self, last_window: int, next_window: int, finished: bool = False, pending: Episodes | None = None
    ) -> None:
        save_checkpoint(self.run_dir, self.state(last_window, next_window, finished, pending))

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
                write_pids(self.run_dir, self.rollout.pids)
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
            self.carried = self._carried_rows(buf)
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
        self.monitor.row(steps, self.learner.updates, episodes, {**metrics, **extra})
        if "policy_lag/mean" in metrics:
            self.monitor.histogram("policy_lag", self.policy_lag.last, steps)

    def _resources(self) -> dict[str, float]:
        """``resources/*`` of this rank's processes, at most once a second (0.2-0.7 ms a sample): every window
        of an Atari run, and no measurable cost where windows take milliseconds."""
        now = time.perf_counter()
        if now - self._resources_at < RESOURCES_INTERVAL_S:
            return {}
        self._resources_at = now
        return resources.sample({"main": os.getpid(), **self.rollout.pids})

    def barrier(self, last_window: int, next_window: int, pending: Episodes | None = None, save: bool = False) -> bool:
        """Nothing runs here. Saves a checkpoint when one is due (or ``save``), when ``--stop-at-steps`` is
        reached or on Ctrl-C (then raises Interrupted); returns True when the run stops here.
        ``next_window``: the window the run would go on with, i.e. the number of windows learned."""
        interrupted = self._any_rank(self.stop.requested)  # every rank stops at the same barrier
        if self.cfg.mode == "raw":  # the throughput ceiling keeps no checkpoints
            if interrupted:
                raise Interrupted("raw mode keeps no checkpoint")
            return False
        pause, due = self._pause_or_save_due(next_window, interrupted)
        if pause or due or save:
            self.save_checkpoint(last_window, next_window, pending=pending)
        if interrupted:
            raise Interrupted(f"checkpoint saved, continue with: htsrl train --resume {self.cfg.run_dir}")
        return pause

    def _pause_or_save_due(self, next_window: int, interrupted: bool) -> tuple[bool, bool]:
        """``(pause, checkpoint due)`` once ``next_window`` windows are learned: the one decision of where a
        run stops (Ctrl-C, ``--stop-at-steps``) and saves (``--checkpoint-every``). A resumed run neither
        stops nor saves before it has learned a window."""
        progressed = next_window > self.first_window
        pause = interrupted or (progressed and next_window * self.steps_per_window >= self.stop_at)
        every = self.cfg.checkpoint_every
        return pause, progressed and every > 0 and self.learner.updates % every == 0

    def _any_rank(self, flag: bool) -> bool:
        if self.dp.world_size == 1:
            return flag
        return bool(self.dp.sum_(torch.tensor([float(flag)]))[0] > 0)

    def _kept_checkpoint(self) -> str:
        path = self.run_dir / "checkpoint.pt"
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
        are published after every update, so actors act with the newest. A checkpoint (due, on
        ``--stop-at-steps`` or Ctrl-C) first learns every window begun, so it holds nothing in flight."""
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
            if w == self.windows or not self._async_pause_due(w):
                continue
            while w < self.begun:  # drain: learn every window begun
                self._learn_async(w)
                w += 1
            if self.barrier(last_window=w - 1, next_window=w, save=True):
                return

    def _learn_async(self, w: int) -> None:
        self.wait(w)
        episodes = self.record(w)
        metrics = self.learn(w)
        self.learner.publish(self.bufs)
        self.windows_done = w + 1
        self.report(w, episodes, metrics)

    def _async_pause_due(self, next_window: int) -> bool:
        """Whether the run must stop at a checkpoint once the windows in flight are learned (async mode
        runs on one rank, so no rank has to agree)."""
        return any(self._pause_or_save_due(next_window, self.stop.requested))

    def announce(self) -> None:
        """One line at start: what trains, how, and where it is written."""
        cfg = self.cfg
        what = f"resuming at {self.steps_before:,} steps" if self.resume else "starting"

        def count(n: int, noun: str) -> str:
            return f"{n} {noun}{'s' if n != 1 else ''}"

        layout = "serial" if cfg.serial else count(cfg.num_executors, "executor")
        if cfg.mode in ("hts", "async") and not cfg.serial:
            layout += f", {count(cfg.num_actors, 'actor')}"
        start = f", from the weights of {cfg.init_from}" if cfg.init_from else ""
        steps = self.windows * self.steps_per_window
        if steps != cfg.total_steps:  # say why the run is longer than asked
            rounded = f"--total-steps {cfg.total_steps:,} rounded up to whole windows of {self.steps_per_window:,}"
            steps_said = f"{steps:,} steps ({rounded})"
        else:
            steps_said = f"{steps:,} steps"
        print(
            f"htsrl: {what}: {cfg.algo} (preset {cfg.preset}) on {cfg.env}{start}, {cfg.mode} mode, {cfg.num_envs} "
            f"envs x alpha {cfg.alpha}, {cfg.precision}, {layout}, {steps_said}; "
            f"run dir {self.run_dir}",
            file=sys.stderr,
            flush=True,
        )

    def run(self) -> dict:
        t_start = time.perf_counter()
        if self.cfg.progress and self.dp.rank == 0:
            self.announce()
        with self.stop:
            try:
                self.rollout.start(self.history if self.resume else None, self.last_window if self.resume else -1)
                write_pids(self.run_dir, self.rollout.pids)
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
        summary = self.summary(finished, wall, t_loop - t_start)
        torch.save(self.learner.model.state_dict(), self.run_dir / "model.pt")
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def summary(self, finished: bool, wall: float, startup_s: float) -> dict:
        cfg, dp = self.cfg, self.dp
        env_steps = self.windows_done * self.steps_per_window
        params_sha = params_sha256(self.learner.model)
        rollout_sha = self.rollout_sha256
        if dp.world_size > 1:
            shas = dp.gather(params_sha)
            if len(set(shas)) != 1:
                raise RuntimeError(f"parameters differ across ranks: {shas}")
            rollout_sha = hashlib.sha256("".join(dp.gather(rollout_sha)).encode()).hexdigest()
        return {
            "run_dir": str(self.run_dir),
            "rank": dp.rank,
            "world_size": dp.world_size,
            "env": cfg.env,
            "algo": cfg.algo,
            "mode": cfg.mode,
            "serial": cfg.serial,
            "seed": cfg.seed,
            "num_envs": cfg.num_envs,
            "alpha": cfg.alpha,
            "num_executors": cfg.num_executors,
            "num_actors": cfg.num_actors,
            "resumed_at_steps": self.steps_before if self.resume else None,
            "finished": finished,
            "env_steps": env_steps,
            "updates": self.learner.updates,
            "wall_time_s": wall,
            "startup_s": startup_s,
            "sps": (env_steps - self.steps_before) / wall,
            "params_sha256": params_sha,
            "rollout_sha256": rollout_sha,
            "episodes": self.monitor.episodes,
            "mean_return_last_100": _none_if_nan(self.monitor.mean_return()),
            "mean_score_last_100": _none_if_nan(self.monitor.mean_score()),
            "time_split": time_split(cfg, self.bufs),
            "num_params": num_params(self.learner.model),
            "restarts": self.restarts,
            # async: which weights an action sees depends on timing, so the numbers change run to run
            "deterministic": cfg.mode != "async",
            "policy_lag": self.policy_lag.summary(),
        }


def time_split(cfg: Config, bufs: RolloutBuffers) -> dict[str, dict[str, float]]:
    """Seconds per role (summed over processes of the role), from the shared counters."""
    rows = {
        "executors": bufs.stats[: cfg.num_executors],
        "actors": bufs.stats[cfg.num_executors : cfg.num_executors + cfg.num_actors],
        "learner": bufs.stats[-1:],
    }
    if cfg.serial:
        rows = {"learner": bufs.stats[-1:]}
    return {role: {name: float(r[:, i].sum()) for i, name in enumerate(STAT_NAMES)} for role, r in rows.items()}


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x
