"""Executors own environment replicas and step them; they never run the network.

An executor owns whole inference groups (contiguous env ids). Within a window it steps whichever of
its groups has its actions back, so while an actor infers one group the executor steps another.
"""

from __future__ import annotations

import os

import numpy as np

from htsrl.config import Config
from htsrl.engine.channels import STOP, Channel, decode_go, encode_done, encode_task
from htsrl.engine.clock import RoleClock
from htsrl.engine.history import EnvHistory, replay
from htsrl.engine.shm import CARRIED_ROWS, RolloutBuffers
from htsrl.engine.streams import reset_seed
from htsrl.envs import EPISODE_KEY, make_env_set
from htsrl.errors import ReplayMismatch


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
        self.env_set = make_env_set(cfg.env, cfg.env_kwargs, cfg.env_backend, self.env_ids, env_offset, threads=threads)
        self.envs = self.env_set.envs
        self.action_spec = bufs.action_spec
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
                self.bufs.starts[0, 0, i] = True
                self.bufs.hidden[0, 0, i] = 0.0
            return
        buf, players = self.bufs.slot(last_window), self.env_set.players
        for i in self.env_ids[::players]:  # each env, as a whole game: its columns i .. i + players - 1
            columns = range(i, i + players)
            actions = history.actions[i] if players == 1 else list(zip(*(history.actions[c] for c in columns)))
            obs, resets = replay(
                self.env_set.game(i),
                lambda k, i=i: reset_seed(self.cfg.seed, self.env_offset + i, k),
                history.start_reset[i],
                actions,
                history.dones[i],
                self._replayed_action if players == 1 else lambda a: [self._replayed_action(x) for x in a],
            )
            recorded = (
                self.bufs.obs[buf, self.bufs.alpha, i]
                if players == 1
                else self.bufs.obs[buf, self.bufs.alpha, i : i + players]
            )
            for c in columns:
                self.resets[c] = resets
            if any(history.resets[c] != resets for c in columns) or not np.array_equal(obs, recorded):
                raise ReplayMismatch(
                    f"env {i} did not return to its recorded state on replay; "
                    f"{self.cfg.env} is not deterministic given its seed"
                )

    def _replayed_action(self, a):
        """A recorded action (plain Python, from the history) as the env received it in training."""
        spec = self.action_spec
        return a if not spec.action_shape else spec.to_env(np.asarray(a, spec.action_dtype))

    def carry_over(self, window: int) -> None:
        """The last observation of the previous window (in its buffer) is the first of this one, with
        whether it begins an episode and the recurrent state it is to be stepped from."""
        ids = slice(self.env_ids.start, self.env_ids.stop)
        bufs = self.bufs
        for name in CARRIED_ROWS:
            rows = getattr(bufs, name)
            rows[bufs.slot(window), 0, ids] = rows[bufs.slot(window - 1), bufs.alpha, ids]

    def random_actions(self, buf: int, g: int, t: int) -> None:
        """Raw mode: the env's own uniforms turned into a uniformly random action, no network."""
        ids = self.group_envs(g)
        u = self.bufs.uniforms[buf, t, ids.start : ids.stop]
        self.bufs.actions[buf, t, ids.start : ids.stop] = self.action_spec.random_actions(u)

    def step_group(self, buf: int, g: int, t: int) -> None:
        """Step group ``g`` on the actions of its step ``t`` in buffer ``buf``; write the results and the
        next observation (after an auto-reset where an episode ended). Box actions reach the env clipped
        to its bounds; the buffer keeps the sample."""
        bufs = self.bufs
        ids = self.group_envs(g)
        results = self.env_set.step(ids, self.action_spec.to_env(bufs.actions[buf, t, ids.start : ids.stop]))
        for i, (obs, reward, terminated, truncated, info) in zip(ids, results):
            bufs.reward[buf, t, i] = reward
            bufs.terminated[buf, t, i] = terminated
            bufs.truncated[buf, t, i] = truncated
            episode = info.get(EPISODE_KEY)
            bufs.ep_return[buf, t, i] = episode["r"] if episode else np.nan
            bufs.ep_length[buf, t, i] = episode["l"] if episode else 0
            bufs.ep_score[buf, t, i] = episode["s"] if episode and episode["s"] is not None else np.nan
            bufs.starts[buf, t + 1, i] = terminated or truncated
            if terminated or truncated:
                if truncated and not terminated:  # a terminal state is never bootstrapped
                    bufs.final_obs[buf, t, i] = obs
                obs = self._reset(i)
            bufs.obs[buf, t + 1, i] = obs

    def close(self) -> None:
        self.env_set.close()


def executor_loop(
    index: int,
    envs: EnvGroups,
    inbox: Channel,
    ready: Channel,
    done: Channel,
    num_groups: int,
    num_executors: int,
    raw: bool = False,
) -> None:
    """Commands on ``inbox``: GO(window), a group id whose actions are written, or STOP.
    The envs are started (reset or replayed) before this is called. ``raw``: no actors; random
    actions from each env's uniforms (the throughput ceiling). In async mode the GO of later windows
    can arrive while a window is collected: they are kept, in order, and taken one after another."""
    bufs, alpha = envs.bufs, envs.bufs.alpha
    clock = RoleClock(bufs.stats[index])
    done.put(encode_done(-1, index, num_executors))
    queued: list[int] = []  # GO messages that arrived inside a window
    while True:
        clock.mark()
        msg = queued.pop(0) if queued else inbox.get()
        clock.lap("wait_s")
        if msg == STOP:
            clock.flush()
            return
        window = decode_go(msg)
        buf = bufs.slot(window)
        if window > 0:
            envs.carry_over(window)
        if raw:
            clock.mark()
            for t in range(alpha):
                for g in envs.groups:
                    envs.random_actions(buf, g, t)
                    envs.step_group(buf, g, t)
            clock.lap("env_s")
            clock.flush()
            done.put(encode_done(window, index, num_executors))
            continue
        steps = dict.fromkeys(envs.groups, 0)
        for g in envs.groups:
            ready.put(encode_task(0, buf, g, num_groups, bufs.num_slots))
        remaining = len(steps)
        clock.mark()
        while remaining:
            g = inbox.get()
            clock.lap("wait_s")
            if g == STOP:
                clock.flush()
                return
            if g < STOP:  # a GO for a later window (async mode)
                queued.append(g)
                continue
            t = steps[g]
            envs.step_group(buf, g, t)
            steps[g] = t + 1
            clock.lap("env_s")
            if t + 1 < alpha:
                ready.put(encode_task(t + 1, buf, g, num_groups, bufs.num_slots))
            else:
                remaining -= 1
            clock.lap("ipc_s")
        clock.flush()
        done.put(encode_done(window, index, num_executors))
