"""The training loop: wires the roles and runs the HTS-RL schedule (or the lock-step baseline).

HTS mode, window w in buffer w % 2 (time runs left to right)::

    executors+actors | collect w=0 | collect 1 (θ0) | collect 2 (θ1) | collect 3 (θ2) | ...
    learner          |             | update 0 → θ1  | update 1 → θ2  | update 2 → θ3  | ...
                                  ^ barrier: publish θ_w, draw the uniforms of w+1, go

Each barrier waits for the rollout of window w+1 and the update on window w; the weights published
there (after update w) drive window w+2: the policy lag is exactly one update. Lock-step mode
(``--mode sync``) runs collect w with θ_w, then update w, with no overlap and no lag.

Checkpoints are taken at barriers only (HTS: before collect w+1, with window w still to learn; sync:
after update w), where no process is working, so the state is complete and resume is bitwise exact.
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

from htsrl.checkpoint import load_checkpoint, save_checkpoint
from htsrl.config import Config, ConfigError, resolve, validate
from htsrl.distributed import DataParallel, Local, launched_by_torchrun
from htsrl.engine.history import EnvHistory
from htsrl.engine.learner import Learner
from htsrl.engine.rollout import ParallelRollout, RoleFailed, SerialRollout, write_pids
from htsrl.engine.shm import STAT, STAT_NAMES, RolloutBuffers
from htsrl.engine.streams import ActionStreams
from htsrl.envs import probe_env
from htsrl.monitor import Episodes, Monitor
from htsrl.nn import num_params, params_sha256

# on_window(w, bufs, b): called with window w complete in buffer b, before its update (tests use it).
WindowHook = Callable[[int, RolloutBuffers, int], None]
# Buffer fields a checkpoint keeps of the last window (the one still to learn in HTS mode).
WINDOW_FIELDS = ("obs", "final_obs", "actions", "logp", "value", "reward", "terminated", "truncated",
                 "uniforms", "version", "ep_return", "ep_length", "ep_score")


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: a checkpoint was saved at the barrier where the run stopped."""


def default_run_dir(cfg: Config) -> Path:
    return Path("runs") / f"{cfg.env.replace('/', '-')}__{cfg.algo}__{cfg.seed}__{int(time.time())}"


class _StopRequest:
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
        print("\nhtsrl: stopping at the next barrier to save a checkpoint (press Ctrl-C again to stop now)",
              flush=True)

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def train(cfg: Config, on_window: WindowHook | None = None, resume: bool = False) -> dict:
    """Train; under torchrun (WORLD_SIZE > 1) as one data-parallel rank (see htsrl/distributed.py)."""
    cfg = resolve(cfg)
    info = probe_env(cfg.env, cfg.env_kwargs, cfg.env_backend)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.num_envs % world:
        raise ConfigError(f"--num-envs {cfg.num_envs} is not divisible by the world size {world}")
    local = dataclasses.replace(cfg, num_envs=cfg.num_envs // world)  # this rank's envs
    validate(local)
    if cfg.device != "cpu":
        deterministic_cuda(cfg.device)
    if launched_by_torchrun() and cfg.device == "cuda":  # one GPU per rank of a node
        cfg = dataclasses.replace(cfg, device=f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
        local = dataclasses.replace(local, device=cfg.device)
    dp = DataParallel(cfg.watchdog_s, cfg.device) if launched_by_torchrun() else Local()
    try:
        return _train(cfg, local, info, dp, on_window, resume)
    finally:
        dp.close()


def deterministic_cuda(device: str) -> None:
    """What PyTorch needs for bitwise-repeatable CUDA results (costs some speed: no cuDNN autotuning,
    deterministic kernels where they exist, a fixed cuBLAS workspace)."""
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is visible to torch")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)


def _train(cfg: Config, local: Config, info, dp, on_window: WindowHook | None, resume: bool) -> dict:
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    if dp.rank > 0:  # every rank keeps its own checkpoint (its envs' history and streams)
        run_dir = run_dir / f"rank{dp.rank}"
    ckpt = load_checkpoint(run_dir) if resume else None
    if ckpt is not None and ckpt["finished"]:
        raise ConfigError(f"the run in {run_dir} already finished ({ckpt['learner']['updates']} updates); "
                          "nothing to resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.run_dir = str(run_dir)
    if not resume:
        (run_dir / "config.json").write_text(cfg.to_json())
    torch.set_num_threads(cfg.learner_threads)

    # n: steps per window summed over every env of every rank; n_local: this rank's envs (buffer columns)
    n, n_local, alpha = cfg.num_envs, local.num_envs, cfg.alpha
    env_offset = dp.env_offset(n)
    windows = math.ceil(cfg.total_steps / (n * alpha))
    if ckpt is not None and ckpt["next_window"] >= windows:
        raise ConfigError(f"--total-steps {cfg.total_steps} ends before the checkpoint in {run_dir} "
                          f"({ckpt['next_window'] * n * alpha} steps)")
    learner = Learner(cfg, info.obs_shape, info.num_actions, total_updates=windows, dp=dp)
    num_roles = cfg.num_executors + cfg.num_actors
    bufs = RolloutBuffers(n_local, alpha, info.obs_shape, info.obs_dtype, num_params(learner.model), num_roles + 1)
    streams = ActionStreams(cfg.seed, n_local, env_offset)
    history = EnvHistory(n_local)
    hts = cfg.mode == "hts"
    state = {"rollout_sha256": hashlib.sha256(b"htsrl").hexdigest(), "env_steps_before": 0, "restarts": 0}
    first = 0  # first loop iteration of this process
    if ckpt is not None:
        learner.load_state_dict(ckpt["learner"])
        streams.set_state(ckpt["streams"])
        history.load_state_dict(ckpt["history"])
        b = ckpt["last_window"] % 2
        for name in WINDOW_FIELDS:
            getattr(bufs, name)[b] = ckpt["window"][name]
        state["rollout_sha256"] = ckpt["rollout_sha256"]
        first = ckpt["next_window"]
        state["env_steps_before"] = first * n * alpha
    rollout = (SerialRollout if cfg.serial else ParallelRollout)(local, info.obs_shape, info.num_actions, bufs,
                                                                  env_offset)
    rollout.stack_dir = run_dir / "stacks"
    rollout.stack_dir.mkdir(exist_ok=True)
    monitor = Monitor(run_dir, windows * n * alpha, start_steps=state["env_steps_before"],
                      enabled=cfg.progress and dp.rank == 0)
    if ckpt is not None:
        monitor.restore(**ckpt["monitor"])
    timing = {"rollout_s": 0.0, "learn_s": 0.0, "barrier_wait_s": 0.0, "collect_started": 0.0}
    main_stats = bufs.stats[-1]

    def collect(w: int) -> None:
        """Publish the weights, draw window w's uniforms and start it (returns at once in parallel)."""
        learner.publish(bufs)
        streams.fill(bufs.uniforms[w % 2])
        timing["collect_started"] = time.perf_counter()
        rollout.begin(w)

    def wait(w: int) -> None:
        t0 = time.perf_counter()
        while True:
            try:
                rollout.finish(w)
                break
            except RoleFailed as failure:
                recover(w, failure)
        timing["barrier_wait_s"] = time.perf_counter() - t0
        timing["rollout_s"] = time.perf_counter() - timing["collect_started"]
        main_stats[STAT["wait_s"]] += timing["barrier_wait_s"]

    def recover(w: int, failure: RoleFailed) -> None:
        """A role died or an env raised while window w was collected: restart every role, rebuild the
        envs at their state after window w-1 (from the history) and collect window w again. The
        weights and uniforms of window w are still in shared memory, so the numbers do not change."""
        while True:  # a restart can fail too (an env that raises while replayed): it counts as one more
            state["restarts"] += 1
            if state["restarts"] > cfg.max_restarts:
                kept = f"the last checkpoint ({run_dir / 'checkpoint.pt'}) is kept; continue with: htsrl train " \
                       f"--resume {run_dir}" if (run_dir / "checkpoint.pt").exists() else "no checkpoint was saved yet"
                raise RoleFailed(f"{failure}\ngave up after {cfg.max_restarts} restarts (--max-restarts); {kept}")
            lines = [ln for ln in str(failure).splitlines() if ln.strip()]
            reason = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1].strip()}"
            print(f"htsrl: {reason}; restarting the rollout of window {w} from the last barrier "
                  f"(restart {state['restarts']} of at most {cfg.max_restarts})", file=sys.stderr, flush=True)
            try:
                rollout.restart(history if w > 0 else None, w - 1)
                write_pids(run_dir, rollout.pids)
                rollout.begin(w)
                return
            except RoleFailed as again:
                failure = again

    def window_done(w: int) -> Episodes:
        b = w % 2
        if on_window is not None:
            on_window(w, bufs, b)
        h = hashlib.sha256(bytes.fromhex(state["rollout_sha256"]))
        for name in ("actions", "logp", "value", "reward", "version"):
            h.update(np.ascontiguousarray(getattr(bufs, name)[b]).tobytes())
        state["rollout_sha256"] = h.hexdigest()
        ended = ~np.isnan(bufs.ep_return[b])  # row-major: ordered by (step, env)
        history.record_window(bufs.actions[b], bufs.terminated[b] | bufs.truncated[b], ended)
        scores = bufs.ep_score[b][ended]
        mine = Episodes(bufs.ep_return[b][ended].tolist(), bufs.ep_length[b][ended].tolist(),
                        scores[~np.isnan(scores)].tolist())
        if dp.world_size == 1:
            return mine
        parts = dp.gather(mine)  # every rank reports every episode, in rank order
        return Episodes([r for p in parts for r in p.returns], [x for p in parts for x in p.lengths],
                        [x for p in parts for x in p.scores])

    def learn(w: int) -> dict[str, float]:
        t0 = time.perf_counter()
        metrics = learner.update(bufs.window(w % 2))
        timing["learn_s"] = time.perf_counter() - t0
        main_stats[STAT["learn_s"]] += timing["learn_s"]
        return metrics

    def checkpoint(last_window: int, next_window: int, finished: bool = False,
                   pending: Episodes | None = None) -> None:
        b = last_window % 2
        save_checkpoint(run_dir, {
            "format": 1, "pending_episodes": dataclasses.asdict(pending or Episodes()), "config": dataclasses.asdict(cfg), "finished": finished,
            "last_window": last_window, "next_window": next_window,
            "learner": learner.state_dict(), "streams": streams.state(), "history": history.state_dict(),
            "window": {name: getattr(bufs, name)[b].copy() for name in WINDOW_FIELDS},
            "rollout_sha256": state["rollout_sha256"],
            "monitor": monitor.state_dict(),
        })

    def agree(flag: bool) -> bool:
        """Every rank stops at the same barrier: a stop asked of any rank is a stop for all."""
        if dp.world_size == 1:
            return flag
        return bool(dp.sum_(torch.tensor([float(flag)]))[0] > 0)

    def due(updates: int) -> bool:
        return cfg.checkpoint_every > 0 and updates % cfg.checkpoint_every == 0 and cfg.mode != "raw"

    stop_at = cfg.stop_at_steps or math.inf
    done_windows = first
    t_start = time.perf_counter()
    with _StopRequest() as stop:
        try:
            rollout.start(history if ckpt is not None else None, ckpt["last_window"] if ckpt is not None else -1)
            write_pids(run_dir, rollout.pids)
            t_loop, cpu_loop = time.perf_counter(), time.process_time()
            if hts and ckpt is None:
                collect(0)
                wait(0)
            for w in range(first, windows):
                if hts:
                    # Barrier w: window w complete, update w-1 done, nothing running.
                    if ckpt is not None and w == first:  # window w was recorded before the checkpoint
                        episodes = Episodes(**ckpt["pending_episodes"])
                    else:
                        episodes = window_done(w)
                    interrupted = agree(stop.requested)
                    pause = interrupted or (w > first and w * n * alpha >= stop_at)
                    if pause or (w > first and due(learner.updates)):
                        checkpoint(last_window=w, next_window=w, pending=episodes)  # resumes by learning w
                        if interrupted:
                            raise Interrupted
                        if pause:
                            break
                    if w + 1 < windows:
                        collect(w + 1)  # runs on the other buffer while the learner updates on this one
                    metrics = learn(w)
                    done_windows = w + 1
                    if w + 1 < windows:
                        wait(w + 1)
                else:
                    collect(w)
                    wait(w)
                    episodes = window_done(w)
                    metrics = learn(w) if cfg.mode == "sync" else {}
                metrics.update({f"time/{k}": timing[k] for k in ("rollout_s", "learn_s", "barrier_wait_s")})
                monitor.row((w + 1) * n * alpha, learner.updates, episodes, metrics)
                done_windows = w + 1
                interrupted = agree(stop.requested) if not hts else False
                pause = interrupted or done_windows * n * alpha >= stop_at
                if not hts and done_windows < windows and (pause or due(learner.updates)):
                    checkpoint(last_window=w, next_window=done_windows)
                    if interrupted:
                        raise Interrupted
                    if pause:
                        break
            wall = time.perf_counter() - t_loop
            finished = done_windows == windows
            if finished and cfg.mode != "raw":
                checkpoint(last_window=windows - 1, next_window=windows, finished=True)
        finally:
            rollout.close()
            monitor.close()

    env_steps = done_windows * n * alpha
    main_stats[STAT["cpu_s"]] = time.process_time() - cpu_loop  # this process's CPU during training
    steps_here = env_steps - state["env_steps_before"]
    params_sha = params_sha256(learner.model)
    rollout_sha = state["rollout_sha256"]
    if dp.world_size > 1:
        shas = dp.gather(params_sha)
        if len(set(shas)) != 1:
            raise RuntimeError(f"parameters differ across ranks: {shas}")
        rollout_sha = hashlib.sha256("".join(dp.gather(rollout_sha)).encode()).hexdigest()
    summary = {
        "run_dir": str(run_dir), "rank": dp.rank, "world_size": dp.world_size, "env": cfg.env, "algo": cfg.algo, "mode": cfg.mode, "serial": cfg.serial,
        "seed": cfg.seed, "num_envs": n, "alpha": alpha, "num_executors": cfg.num_executors,
        "num_actors": cfg.num_actors, "resumed_at_steps": state["env_steps_before"] if resume else None,
        "finished": finished, "env_steps": env_steps, "updates": learner.updates, "wall_time_s": wall,
        "startup_s": t_loop - t_start, "sps": steps_here / wall,
        "params_sha256": params_sha, "rollout_sha256": rollout_sha,
        "episodes": monitor.episodes, "mean_return_last_100": _none_if_nan(monitor.mean_return()),
        "mean_score_last_100": _none_if_nan(monitor.mean_score()),
        "time_split": _time_split(cfg, bufs), "num_params": num_params(learner.model),
        "restarts": state["restarts"],
    }
    torch.save(learner.model.state_dict(), run_dir / "model.pt")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _time_split(cfg: Config, bufs: RolloutBuffers) -> dict[str, dict[str, float]]:
    """Seconds per role (summed over processes of the role), from the shared counters."""
    rows = {"executors": bufs.stats[:cfg.num_executors],
            "actors": bufs.stats[cfg.num_executors:cfg.num_executors + cfg.num_actors],
            "learner": bufs.stats[-1:]}
    if cfg.serial:
        rows = {"learner": bufs.stats[-1:]}
    return {role: {name: float(r[:, i].sum()) for i, name in enumerate(STAT_NAMES)} for role, r in rows.items()}


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x
