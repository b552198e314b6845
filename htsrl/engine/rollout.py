"""How a window gets collected: by forked role processes (``ParallelRollout``) or in the calling
process (``SerialRollout``, for pdb). Both are a ``Rollout`` and run the same per-group code
(``EnvGroups.step_group``, ``Policy.act``) in the same per-group order, so they produce the same numbers.

``begin(window)`` starts a window into buffer ``bufs.slot(window)`` and returns at once; ``finish(window)``
blocks until it is complete. In HTS mode the runner updates on the previous window between the two; in
async mode it begins several windows ahead and each executor goes from one to the next on its own.
In lock-step mode (``cfg.mode == 'sync'``) there are no actor processes: ``finish`` waits for every
group of a step, runs one batched forward for all envs, and releases them all. In raw mode executors
take random actions from each env's uniforms themselves: no actors, no inference, the ceiling of the
same executors.

This module says which roles a rollout has and which messages they exchange; forking, supervising and
stopping processes is ``processes.py``'s, the pipes are ``channels.py``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch

from htsrl.config import Config
from htsrl.distributions import ActionSpec
from htsrl.engine.actor import Policy, actor_loop
from htsrl.engine.channels import STOP, Channel, decode_done, decode_task, encode_go
from htsrl.engine.clock import RoleClock
from htsrl.engine.executor import EnvGroups, executor_loop
from htsrl.engine.history import EnvHistory
from htsrl.engine.processes import Roles, Target
from htsrl.engine.shm import RolloutBuffers


class Rollout(Protocol):
    """What the runner drives, window by window; ``SerialRollout`` and ``ParallelRollout`` are one."""

    stack_dir: Path | None  # where role processes dump their stacks for the watchdog (None: nowhere)

    @property
    def pids(self) -> dict[str, int]:
        """Role name -> pid of every role process (empty when serial)."""

    def start(self, history: EnvHistory | None = None, last_window: int = -1) -> None:
        """Start the envs fresh or, given ``history``, rebuilt at their state after ``last_window``."""

    def begin(self, window: int) -> None:
        """Start collecting ``window`` into buffer ``bufs.slot(window)``; returns at once."""

    def finish(self, window: int) -> None:
        """Block until ``window`` is collected; raises ``RoleFailed`` if a role failed meanwhile."""

    def restart(self, history: EnvHistory | None, last_window: int) -> None:
        """After ``RoleFailed``: stop everything and start again as ``start`` would."""

    def close(self) -> None:
        """Stop every role and close the envs; no process or pipe is left behind."""


def _inference_threads(cfg: Config) -> int:
    # Actors use one thread each; the lock-step forward runs in the learner process with its threads.
    return cfg.learner_threads if cfg.mode == "sync" else 1


class SerialRollout:
    """Every role inline in the calling process, window by window (``--serial``)."""

    def __init__(self, cfg: Config, obs_shape, action_spec: ActionSpec, bufs: RolloutBuffers, env_offset: int = 0):
        self.cfg, self.bufs, self.env_offset = cfg, bufs, env_offset
        self.num_groups = cfg.num_envs // cfg.envs_per_group
        self.envs = EnvGroups(cfg, bufs, range(self.num_groups), env_offset)
        self.policy = Policy(obs_shape, action_spec, bufs, cfg.network_options, cfg.actor_device)
        self.stack_dir: Path | None = None  # unused: there are no role processes

    @property
    def pids(self) -> dict[str, int]:
        return {}

    def start(self, history: EnvHistory | None = None, last_window: int = -1) -> None:
        self.envs.start(history, last_window)

    def begin(self, window: int) -> None:
        pass  # the window is collected in finish(), in the caller's process

    def finish(self, window: int) -> None:
        buf, k = self.bufs.slot(window), self.cfg.envs_per_group
        if window > 0:
            self.envs.carry_over(window)
        threads = torch.get_num_threads()
        torch.set_num_threads(_inference_threads(self.cfg))
        try:
            for t in range(self.bufs.alpha):
                if self.cfg.mode == "sync":
                    self.policy.act(buf, t, slice(0, self.cfg.num_envs))
                for g in range(self.num_groups):
                    if self.cfg.mode == "hts":
                        self.policy.act(buf, t, slice(g * k, (g + 1) * k))
                    elif self.cfg.mode == "raw":
                        self.envs.random_actions(buf, g, t)
                    self.envs.step_group(buf, g, t)
        finally:
            torch.set_num_threads(threads)

    def restart(self, history: EnvHistory | None, last_window: int) -> None:
        self.envs.close()
        self.envs = EnvGroups(self.cfg, self.bufs, range(self.num_groups), self.env_offset)
        self.start(history, last_window)

    def close(self) -> None:
        self.envs.close()


def run_executor(
    cfg: Config,
    bufs: RolloutBuffers,
    e: int,
    groups: range,
    env_offset: int,
    history: EnvHistory | None,
    last_window: int,
    num_groups: int,
    inboxes: list[Channel],
    ready: Channel,
    done: Channel,
) -> None:
    """Executor ``e``'s process: build its envs, start them (fresh, or rebuilt from ``history``), serve."""
    envs = EnvGroups(cfg, bufs, groups, env_offset)
    try:
        envs.start(history, last_window)
        executor_loop(e, envs, inboxes[e], ready, done, num_groups, cfg.num_executors, raw=cfg.mode == "raw")
    finally:
        envs.close()


def run_actor(
    stat_row: int,
    policy_args: tuple,
    ready: Channel,
    inboxes: list[Channel],
    group_owner: list[int],
    envs_per_group: int,
) -> None:
    """An actor's process: the network (on its device), then serve ready groups until STOP."""
    actor_loop(stat_row, Policy(*policy_args), ready, inboxes, group_owner, envs_per_group)


def _quiet_put(ch: Channel, msg: int) -> None:
    try:
        ch.put(msg)
    except OSError:
        pass


class ParallelRollout:
    """Executor processes (each owns whole groups of envs) and, in HTS mode, actor processes.

    Executor ``e`` reads its inbox (GO window, a group whose actions are ready, STOP) and posts
    ``(t, buf, g)`` on the ready channel when group ``g`` has its observation for step ``t``; any actor
    takes it, runs the forward and posts ``g`` to the owner's inbox. Each executor posts its index on
    the done channel once its envs are started and after each window.
    """

    def __init__(self, cfg: Config, obs_shape, action_spec: ActionSpec, bufs: RolloutBuffers, env_offset: int = 0):
        self.cfg, self.bufs, self.env_offset = cfg, bufs, env_offset
        self.obs_shape, self.action_spec = obs_shape, action_spec
        self.num_groups = cfg.num_envs // cfg.envs_per_group
        per_exec = self.num_groups // cfg.num_executors
        self.group_owner = [g // per_exec for g in range(self.num_groups)]
        self._open_channels()
        self.policy = (
            Policy(obs_shape, action_spec, bufs, cfg.network_options, cfg.actor_device) if cfg.mode == "sync" else None
        )
        self._clock = RoleClock(bufs.stats[-1], cpu=False)  # the lock-step loop's seconds, main process row
        self.stack_dir: Path | None = None  # where children dump their stacks on SIGUSR1 (watchdog)

    def _open_channels(self) -> None:
        self.inboxes = [Channel() for _ in range(self.cfg.num_executors)]
        self.ready, self.done = Channel(), Channel()
        self.roles = Roles(self.cfg.watchdog_s, self.cfg.start_method)  # the processes and their error pipe

    @property
    def pids(self) -> dict[str, int]:
        return self.roles.pids

    # -- start and stop
    def start(self, history: EnvHistory | None = None, last_window: int = -1) -> None:
        """Start the roles; executors start their envs fresh or, given ``history``, rebuild them at
        their state after ``last_window``. Every argument of a role is named here (the role functions
        are module-level), so that a spawned role is passed exactly these: the shared buffers and pipes
        travel as file descriptors."""
        cfg, per_exec = self.cfg, self.num_groups // self.cfg.num_executors
        channels = (self.inboxes, self.ready, self.done)
        targets: dict[str, Target] = {}
        for e in range(cfg.num_executors):
            groups = range(e * per_exec, (e + 1) * per_exec)
            targets[f"executor {e}"] = (
                run_executor,
                (cfg, self.bufs, e, groups, self.env_offset, history, last_window, self.num_groups, *channels),
            )
        if cfg.lagged:
            for a in range(cfg.num_actors):
                policy_args = (self.obs_shape, self.action_spec, self.bufs, cfg.network_options, cfg.actor_device)
                serving = (self.ready, self.inboxes, self.group_owner, cfg.envs_per_group)
                targets[f"actor {a}"] = (run_actor, (cfg.num_executors + a, policy_args, *serving))
        self.roles.start(targets, self.stack_dir)
        self.done_upto = [-2] * cfg.num_executors  # the last window each executor finished (-1: started)
        self._wait_done(-1, "environment start-up", self._startup_timeout(history))

    def _startup_timeout(self, history: EnvHistory | None) -> float:
        """Rebuilding envs replays their episodes one after another: allow 50 ms per replayed step."""
        if history is None:
            return self.cfg.watchdog_s
        per_executor = self.cfg.num_envs // self.cfg.num_executors
        longest = max((len(a) for a in history.actions), default=0)
        return self.cfg.watchdog_s + 0.05 * longest * per_executor

    def close(self, grace_s: float = 3.0) -> None:
        """Ask every child to stop, kill what is still alive after ``grace_s``, close the pipes."""
        for inbox in self.inboxes:
            _quiet_put(inbox, STOP)
        for _ in range(self.cfg.num_actors if self.cfg.lagged else 0):
            _quiet_put(self.ready, STOP)
        self.roles.stop(grace_s)
        for ch in (*self.inboxes, self.ready, self.done):
            ch.close()

    def restart(self, history: EnvHistory | None, last_window: int) -> None:
        """After a role failed: stop every child, open fresh pipes (nothing stale can arrive) and fork
        the roles again, with every env rebuilt at its state after ``last_window``. Weights and uniforms
        in shared memory are untouched, so the window collected again is the same window."""
        self.close(grace_s=0.0)
        self._open_channels()
        self.start(history, last_window)

    # -- windows
    def begin(self, window: int) -> None:
        """Each executor starts the window as soon as it has finished the ones before (in async mode
        that may be right away, while the learner is several windows behind)."""
        for inbox in self.inboxes:
            inbox.put(encode_go(window))

    def finish(self, window: int) -> None:
        if self.cfg.mode == "sync":
            self._lockstep(self.bufs.slot(window))
        self._wait_done(window, f"window {window} from the executors")

    def _wait_done(self, window: int, what: str, timeout: float | None = None) -> None:
        """Until every executor has finished ``window`` (async: some may be windows ahead already)."""
        while min(self.done_upto) < window:
            w, e = decode_done(self.roles.get(self.done, what, timeout), self.cfg.num_executors)
            self.done_upto[e] = max(self.done_upto[e], w)

    def _lockstep(self, buf: int) -> None:
        """Each step: wait for every group, one batched forward over all envs, release every group."""
        clock = self._clock
        clock.mark()
        for t in range(self.bufs.alpha):
            for _ in range(self.num_groups):
                msg = self.roles.get(self.ready, f"step {t} of the executors")
                step, step_buf, _g = decode_task(msg, self.num_groups, self.bufs.num_slots)
                assert (step, step_buf) == (t, buf), (step, step_buf, t, buf)
            clock.lap("wait_s")
            self.policy.act(buf, t, slice(0, self.cfg.num_envs))
            clock.lap("infer_s")
            for g in range(self.num_groups):
                self.inboxes[self.group_owner[g]].put(g)
            clock.lap("ipc_s")
        clock.flush()
