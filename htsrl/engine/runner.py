"""The training loop: wires the roles and runs the HTS-RL schedule (or the lock-step baseline).

HTS mode, window w in buffer w % 2 (time runs left to right)::

    executors+actors | collect w=0 | collect 1 (theta0) | collect 2 (theta1) | collect 3 (theta2) | ...
    learner          |             | update 0 -> theta1 | update 1 -> theta2 | update 2 -> theta3 | ...
                                  ^ barrier: publish theta_w, draw uniforms of w+1, go

Each barrier waits for the rollout of window w+1 and the update on window w; the weights published
there (after update w) drive window w+2: the policy lag is exactly one update. Lock-step mode
(``--mode sync``) runs collect w with theta_w, then update w, with no overlap and no lag.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from htsrl.config import Config, resolve
from htsrl.engine.learner import Learner
from htsrl.engine.rollout import ParallelRollout, SerialRollout, write_pids
from htsrl.engine.shm import STAT, STAT_NAMES, RolloutBuffers
from htsrl.engine.streams import ActionStreams
from htsrl.envs import probe_env
from htsrl.monitor import Episodes, Monitor
from htsrl.nn import num_params, params_sha256

# on_window(w, bufs, b): called with window w complete in buffer b, before its update (tests use it).
WindowHook = Callable[[int, RolloutBuffers, int], None]


def default_run_dir(cfg: Config) -> Path:
    name = f"{cfg.env.replace('/', '-')}__{cfg.algo}__{cfg.seed}__{int(time.time())}"
    return Path("runs") / name


def train(cfg: Config, on_window: WindowHook | None = None) -> dict:
    cfg = resolve(cfg)
    info = probe_env(cfg.env, cfg.env_kwargs)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.run_dir = str(run_dir)
    (run_dir / "config.json").write_text(cfg.to_json())
    torch.set_num_threads(cfg.learner_threads)

    n, alpha = cfg.num_envs, cfg.alpha
    windows = math.ceil(cfg.total_steps / (n * alpha))
    num_roles = cfg.num_executors + cfg.num_actors
    learner = Learner(cfg, info.obs_shape, info.num_actions, total_updates=windows)
    bufs = RolloutBuffers(n, alpha, info.obs_shape, info.obs_dtype, num_params(learner.model), num_roles + 1)
    streams = ActionStreams(cfg.seed, n)
    rollout_cls = SerialRollout if cfg.serial else ParallelRollout
    rollout = rollout_cls(cfg, info.obs_shape, info.num_actions, bufs)
    monitor = Monitor(run_dir, windows * n * alpha, enabled=cfg.progress)
    timing = {"rollout_s": 0.0, "learn_s": 0.0, "barrier_wait_s": 0.0, "collect_started": 0.0}
    rollout_hash = hashlib.sha256()
    main_stats = bufs.stats[-1]

    def collect(w: int) -> None:
        """Publish the weights, draw window w's uniforms and start it (returns at once in parallel)."""
        learner.publish(bufs)
        streams.fill(bufs.uniforms[w % 2])
        timing["collect_started"] = time.perf_counter()
        rollout.begin(w)

    def wait(w: int) -> None:
        t0 = time.perf_counter()
        rollout.finish(w)
        timing["barrier_wait_s"] = time.perf_counter() - t0
        timing["rollout_s"] = time.perf_counter() - timing["collect_started"]
        main_stats[STAT["wait_s"]] += timing["barrier_wait_s"]

    def window_done(w: int) -> Episodes:
        b = w % 2
        if on_window is not None:
            on_window(w, bufs, b)
        for name in ("actions", "logp", "value", "reward", "version"):
            rollout_hash.update(np.ascontiguousarray(getattr(bufs, name)[b]).tobytes())
        ended = ~np.isnan(bufs.ep_return[b])  # row-major: ordered by (step, env)
        scores = bufs.ep_score[b][ended]
        return Episodes(bufs.ep_return[b][ended].tolist(), bufs.ep_length[b][ended].tolist(),
                        scores[~np.isnan(scores)].tolist())

    def learn(w: int) -> dict[str, float]:
        t0 = time.perf_counter()
        metrics = learner.update(bufs.window(w % 2))
        timing["learn_s"] = time.perf_counter() - t0
        main_stats[STAT["learn_s"]] += timing["learn_s"]
        return metrics

    t_start = time.perf_counter()
    try:
        rollout.start()
        write_pids(run_dir, rollout.pids)
        t_loop, cpu_loop = time.perf_counter(), time.process_time()
        if cfg.mode == "hts":
            collect(0)
            wait(0)
        for w in range(windows):
            if cfg.mode == "hts":
                episodes = window_done(w)
                if w + 1 < windows:
                    collect(w + 1)  # runs on the other buffer while the learner updates on this one
                metrics = learn(w)
                if w + 1 < windows:
                    wait(w + 1)
            else:
                collect(w)
                wait(w)
                episodes = window_done(w)
                metrics = learn(w)
            metrics.update({f"time/{k}": timing[k] for k in ("rollout_s", "learn_s", "barrier_wait_s")})
            monitor.row((w + 1) * n * alpha, learner.updates, episodes, metrics)
        wall = time.perf_counter() - t_loop
    finally:
        rollout.close()
        monitor.close()

    env_steps = windows * n * alpha
    main_stats[STAT["cpu_s"]] = time.process_time() - cpu_loop  # this process's CPU during training
    summary = {
        "run_dir": str(run_dir), "env": cfg.env, "algo": cfg.algo, "mode": cfg.mode, "serial": cfg.serial, "seed": cfg.seed,
        "num_envs": n, "alpha": alpha, "num_executors": cfg.num_executors, "num_actors": cfg.num_actors,
        "env_steps": env_steps, "updates": learner.updates, "wall_time_s": wall,
        "startup_s": t_loop - t_start, "sps": env_steps / wall,
        "params_sha256": params_sha256(learner.model), "rollout_sha256": rollout_hash.hexdigest(),
        "episodes": monitor.episodes, "mean_return_last_100": _none_if_nan(monitor.mean_return()),
        "mean_score_last_100": _none_if_nan(monitor.mean_score()),
        "time_split": _time_split(cfg, bufs), "num_params": num_params(learner.model),
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


if os.name != "posix":  # pragma: no cover
    raise ImportError("htsrl's engine uses fork and POSIX pipes; it runs on Linux")
