"""Executors own environment replicas and step them; they never run the network.

An executor owns whole inference groups (contiguous env ids). Within a window it steps whichever of
its groups has its actions back, so while an actor infers one group the executor steps another.
"""

from __future__ import annotations

import os
import time

import numpy as np

from htsrl.config import Config
from htsrl.engine.channels import STOP, Channel, decode_go, encode_task
from htsrl.engine.history import EnvHistory, ReplayMismatch, replay
from htsrl.engine.shm import STAT, RolloutBuffers
from htsrl.engine.streams import reset_seed
from htsrl.envs import EPISODE_KEY, make_env_set


class EnvGroups:
    """The envs of some groups, and how one group takes one step. Shared by executors and serial mode."""

    def __init__(self, cfg: Config, bufs: RolloutBuffers, groups: range, env_offset: int = 0):
        """``env_offset``: global id of buffer column 0 (a rank's first env under data parallelism);
        seeds are keyed by the global id."""
        self.cfg, self.bufs, self.groups, self.env_offset = cfg, bufs, groups, env_offset
        k = cfg.envs_per_group
        self.env_ids = range(groups.start * k, groups.stop * k)
        # EnvPool threads: this process's share of the cores it may use, over the executors of every
        # rank on this machine (more threads only queue up behind each other).
        cores = len(os.sched_getaffinity(0)) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        threads = min(len(self.env_ids), max(1, cores // cfg.num_executors))
        self.env_set = make_env_set(cfg.env, cfg.env_kwargs, cfg.env_backend, self.env_ids, env_offset,
                                    threads=threads)
        self.envs = self.env_set.envs
        self.resets = dict.fromkeys(self.env_ids, 0)  # top-level resets made, per env

    def group_envs(self, g: int) -> range:
        k = self.cfg.envs_per_group
        return range(g * k, (g + 1) * k)

    def _reset(self, i: int):
        obs, _ = self.envs[i].reset(seed=reset_seed(self.cfg.seed, self.env_offset + i, self.resets[i]))
        self.resets[i] += 1
        return obs

    def start(self, history: EnvHistory | None, last_window: int) -> None:
        """Fresh run: reset every env into row 0 of buffer 0. Resumed (``history`` given): rebuild every
        env at its state after ``last_window``, whose last observations are already in the buffer."""
        if history is None:
            for i in self.env_ids:
                self.bufs.obs[0, 0, i] = self._reset(i)
            return
        b = last_window % 2
        for i in self.env_ids:
            obs, self.resets[i] = replay(
                self.envs[i], lambda k, i=i: reset_seed(self.cfg.seed, self.env_offset + i, k), history.start_reset[i],
                history.actions[i], history.dones[i])
            if self.resets[i] != history.resets[i] or not np.array_equal(obs, self.bufs.obs[b, self.bufs.alpha, i]):
                raise ReplayMismatch(f"env {i} did not return to its recorded state on replay; "
                                     f"{self.cfg.env} is not deterministic given its seed")

    def carry_over(self, b: int) -> None:
        """The last observation of the previous window is the first of this one."""
        ids = slice(self.env_ids.start, self.env_ids.stop)
        self.bufs.obs[b, 0, ids] = self.bufs.obs[1 - b, self.bufs.alpha, ids]

    def random_actions(self, b: int, g: int, t: int) -> None:
        """Raw mode: the env's own uniform turned into a uniformly random action, no network."""
        ids = self.group_envs(g)
        u = self.bufs.uniforms[b, t, ids.start:ids.stop]
        n = self.envs[ids.start].action_space.n
        self.bufs.actions[b, t, ids.start:ids.stop] = np.minimum((u * n).astype(np.int64), n - 1)

    def step_group(self, b: int, g: int, t: int) -> None:
        B = self.bufs
        ids = self.group_envs(g)
        results = self.env_set.step(ids, B.actions[b, t, ids.start:ids.stop])
        for i, (obs, reward, terminated, truncated, info) in zip(ids, results):
            B.reward[b, t, i] = reward
            B.terminated[b, t, i] = terminated
            B.truncated[b, t, i] = truncated
            episode = info.get(EPISODE_KEY)
            B.ep_return[b, t, i] = episode["r"] if episode else np.nan
            B.ep_length[b, t, i] = episode["l"] if episode else 0
            B.ep_score[b, t, i] = episode["s"] if episode and episode["s"] is not None else np.nan
            if terminated or truncated:
                if truncated and not terminated:  # a terminal state is never bootstrapped
                    B.final_obs[b, t, i] = obs
                obs = self._reset(i)
            B.obs[b, t + 1, i] = obs

    def close(self) -> None:
        self.env_set.close()


def executor_loop(index: int, envs: EnvGroups, inbox: Channel, ready: Channel, done: Channel,
                  num_groups: int, raw: bool = False) -> None:
    """Commands on ``inbox``: GO(window), a group id whose actions are written, or STOP.
    The envs are started (reset or replayed) before this is called. ``raw``: no actors; random
    actions from each env's uniforms (the throughput ceiling)."""
    bufs, alpha = envs.bufs, envs.bufs.alpha
    stats = bufs.stats[index]
    done.put(index)
    while True:
        t0 = time.perf_counter()
        msg = inbox.get()
        stats[STAT["wait_s"]] += time.perf_counter() - t0
        if msg == STOP:
            return
        w = decode_go(msg)
        b = w % 2
        if w > 0:
            envs.carry_over(b)
        if raw:
            t0 = time.perf_counter()
            for t in range(alpha):
                for g in envs.groups:
                    envs.random_actions(b, g, t)
                    envs.step_group(b, g, t)
            stats[STAT["env_s"]] += time.perf_counter() - t0
            stats[STAT["cpu_s"]] = time.process_time()
            done.put(index)
            continue
        steps = dict.fromkeys(envs.groups, 0)
        for g in envs.groups:
            ready.put(encode_task(0, b, g, num_groups))
        remaining = len(steps)
        env_s = wait_s = ipc_s = 0.0
        while remaining:
            t0 = time.perf_counter()
            g = inbox.get()
            t1 = time.perf_counter()
            t = steps[g]
            envs.step_group(b, g, t)
            steps[g] = t + 1
            t2 = time.perf_counter()
            if t + 1 < alpha:
                ready.put(encode_task(t + 1, b, g, num_groups))
            else:
                remaining -= 1
            t3 = time.perf_counter()
            wait_s += t1 - t0
            env_s += t2 - t1
            ipc_s += t3 - t2
        stats[STAT["env_s"]] += env_s
        stats[STAT["wait_s"]] += wait_s
        stats[STAT["ipc_s"]] += ipc_s
        stats[STAT["cpu_s"]] = time.process_time()
        done.put(index)
