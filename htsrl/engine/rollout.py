"""How a window gets collected: by forked role processes (``ParallelRollout``) or in the calling
process (``SerialRollout``, for pdb). Both run the same per-group code (``EnvGroups.step_group``,
``Policy.act``) in the same per-group order, so they produce the same numbers.

``begin(w)`` starts window ``w`` into buffer ``w % 2`` and returns at once; ``finish(w)`` blocks until it
is complete. In HTS mode the runner updates on window ``w-1`` between the two. In lock-step mode
(``cfg.mode == 'sync'``) there are no actor processes: ``finish`` waits for every group of a step, runs
one batched forward for all envs, and releases them all. In raw mode executors take random actions
from each env's uniforms themselves: no actors, no inference, the ceiling of the same executors.
"""

from __future__ import annotations

import ctypes
import faulthandler
import gc
import json
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import torch

from htsrl.config import Config
from htsrl.errors import RoleFailed, RolloutError, RolloutHang  # noqa: F401
from htsrl.engine.actor import Policy, actor_loop
from htsrl.engine.channels import STOP, Channel, ErrorChannel, decode_task, encode_go
from htsrl.engine.executor import EnvGroups, executor_loop
from htsrl.engine.history import EnvHistory
from htsrl.engine.shm import STAT, RolloutBuffers


def _inference_threads(cfg: Config) -> int:
    # Actors use one thread each; the lock-step forward runs in the learner process with its threads.
    return cfg.learner_threads if cfg.mode == "sync" else 1


class SerialRollout:
    def __init__(self, cfg: Config, obs_shape, num_actions: int, bufs: RolloutBuffers, env_offset: int = 0):
        self.cfg, self.bufs = cfg, bufs
        self.num_groups = cfg.num_envs // cfg.envs_per_group
        self.envs = EnvGroups(cfg, bufs, range(self.num_groups), env_offset)
        self.policy = Policy(obs_shape, num_actions, bufs)
        self.pids: dict[str, int] = {}

    def start(self, history: EnvHistory | None = None, last_window: int = -1) -> None:
        self.envs.start(history, last_window)

    def begin(self, w: int) -> None:
        pass

    def finish(self, w: int) -> None:
        b, k = w % 2, self.cfg.envs_per_group
        if w > 0:
            self.envs.carry_over(b)
        threads = torch.get_num_threads()
        torch.set_num_threads(_inference_threads(self.cfg))
        try:
            for t in range(self.bufs.alpha):
                if self.cfg.mode == "sync":
                    self.policy.act(b, t, slice(0, self.cfg.num_envs))
                for g in range(self.num_groups):
                    if self.cfg.mode == "hts":
                        self.policy.act(b, t, slice(g * k, (g + 1) * k))
                    elif self.cfg.mode == "raw":
                        self.envs.random_actions(b, g, t)
                    self.envs.step_group(b, g, t)
        finally:
            torch.set_num_threads(threads)

    def close(self) -> None:
        self.envs.close()


def _die_with_parent(parent: int) -> None:
    try:  # PR_SET_PDEATHSIG: the kernel kills this child if the parent dies, even by SIGKILL
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass
    if os.getppid() != parent:  # the parent died between fork and prctl: nobody would kill us
        os._exit(1)


def start_roles(procs) -> None:
    """Fork the roles with every object of the parent frozen, so that no child ever garbage-collects
    what it inherited: the destructor of an object that owns threads (an EnvPool the parent left to its
    collector) would run in the child, where those threads do not exist, and crash it."""
    gc.freeze()
    try:
        for p in procs:
            p.start()
    finally:
        gc.unfreeze()


def _child(role: str, parent: int, errors: ErrorChannel, stack_dir: Path | None, fn, *args) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a group-wide SIGTERM is the parent's to handle too
    try:  # a crash in native env code still prints this child's Python stack
        faulthandler.enable(file=sys.__stderr__)
    except (AttributeError, ValueError, OSError):
        pass  # no usable stderr (embedded interpreter)
    if stack_dir is not None:  # the watchdog asks for a stack dump with SIGUSR1
        dump = open(stack_dir / f"stack-{role.replace(' ', '')}.txt", "w")
        faulthandler.register(signal.SIGUSR1, file=dump, all_threads=True)
    try:
        torch.set_num_threads(1)
        fn(*args)
    except BaseException as exc:  # an htsrl error says whether a restart can help (a replay mismatch cannot)
        errors.report(f"{role} (pid {os.getpid()}) failed:\n{traceback.format_exc()}",
                      retryable=getattr(exc, "retryable", True))
        raise SystemExit(1)


class ParallelRollout:
    def __init__(self, cfg: Config, obs_shape, num_actions: int, bufs: RolloutBuffers, env_offset: int = 0):
        self.cfg, self.bufs, self.env_offset = cfg, bufs, env_offset
        self.obs_shape, self.num_actions = obs_shape, num_actions
        self.num_groups = cfg.num_envs // cfg.envs_per_group
        per_exec = self.num_groups // cfg.num_executors
        self.group_owner = [g // per_exec for g in range(self.num_groups)]
        self._open_channels()
        self.procs: dict[str, mp.Process] = {}
        self.policy = Policy(obs_shape, num_actions, bufs) if cfg.mode == "sync" else None
        self.pids: dict[str, int] = {}
        self.stack_dir: Path | None = None  # where children dump their stacks on SIGUSR1 (watchdog)

    def _open_channels(self) -> None:
        self.inboxes = [Channel() for _ in range(self.cfg.num_executors)]
        self.ready, self.done, self.errors = Channel(), Channel(), ErrorChannel()

    # -- start and stop
    def start(self, history: EnvHistory | None = None, last_window: int = -1) -> None:
        """Fork the roles; executors start their envs fresh or, given ``history``, rebuild them at
        their state after ``last_window``."""
        self._start_args = (history, last_window)
        self.procs = {}
        ctx = mp.get_context("fork")  # shares the anonymous mapping and the pipes; Linux only
        parent = os.getpid()
        cfg, per_exec = self.cfg, self.num_groups // self.cfg.num_executors
        for e in range(cfg.num_executors):
            groups = range(e * per_exec, (e + 1) * per_exec)
            role = f"executor {e}"
            self.procs[role] = ctx.Process(target=_child, name=f"htsrl-{role}", daemon=True, args=(
                role, parent, self.errors, self.stack_dir, self._run_executor, e, groups))
        if cfg.mode == "hts":
            for a in range(cfg.num_actors):
                role = f"actor {a}"
                self.procs[role] = ctx.Process(target=_child, name=f"htsrl-{role}", daemon=True, args=(
                    role, parent, self.errors, self.stack_dir, self._run_actor, cfg.num_executors + a))
        start_roles(self.procs.values())
        self.pids = {role: p.pid for role, p in self.procs.items()}
        for _ in range(cfg.num_executors):  # each executor reports once its envs are reset
            self._get(self.done, "environment start-up", self._startup_timeout(history))

    def _run_executor(self, e: int, groups: range) -> None:
        envs = EnvGroups(self.cfg, self.bufs, groups, self.env_offset)
        try:
            envs.start(*self._start_args)
            executor_loop(e, envs, self.inboxes[e], self.ready, self.done, self.num_groups,
                          raw=self.cfg.mode == "raw")
        finally:
            envs.close()

    def _run_actor(self, stat_row: int) -> None:
        policy = Policy(self.obs_shape, self.num_actions, self.bufs)
        actor_loop(stat_row, policy, self.ready, self.inboxes, self.group_owner, self.cfg.envs_per_group)

    def close(self, grace_s: float = 3.0) -> None:
        """Ask every child to stop, kill what is still alive after ``grace_s``, close the pipes."""
        for inbox in self.inboxes:
            self._quiet_put(inbox, STOP)
        for _ in range(self.cfg.num_actors if self.cfg.mode == "hts" else 0):
            self._quiet_put(self.ready, STOP)
        deadline = time.monotonic() + grace_s
        started = [p for p in self.procs.values() if p.pid is not None]  # a fork may have failed midway
        for p in started:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in started:
            if p.is_alive():
                p.kill()
                p.join(2.0)
        for ch in (*self.inboxes, self.ready, self.done, self.errors):
            ch.close()

    def restart(self, history: EnvHistory | None, last_window: int) -> None:
        """After a role failed: stop every child, open fresh pipes (nothing stale can arrive) and fork
        the roles again, with every env rebuilt at its state after ``last_window``. Weights and uniforms
        in shared memory are untouched, so the window collected again is the same window."""
        self.close(grace_s=0.0)
        self._open_channels()
        self.start(history, last_window)

    def dump_stacks(self) -> str:
        """Watchdog: ask every child for its Python stack; say where each role was."""
        if self.stack_dir is None:
            return ""
        for p in self.procs.values():
            if p.is_alive():
                os.kill(p.pid, signal.SIGUSR1)
        with open(self.stack_dir / "stack-main.txt", "w") as f:
            faulthandler.dump_traceback(file=f, all_threads=True)
        time.sleep(0.5)
        lines = []
        for role in self.procs:
            path = self.stack_dir / f"stack-{role.replace(' ', '')}.txt"
            frames = [ln.strip() for ln in path.read_text().splitlines() if ln.strip().startswith("File")] \
                if path.exists() else []
            lines.append(f"  {role}: {frames[0] if frames else 'no stack (process gone?)'}")
        return "where each role was (innermost frame; full stacks in stack-*.txt):\n" + "\n".join(lines)

    @staticmethod
    def _quiet_put(ch: Channel, msg: int) -> None:
        try:
            ch.put(msg)
        except OSError:
            pass

    # -- supervision: every wait of the parent also watches for a failed or dead child
    def _startup_timeout(self, history: EnvHistory | None) -> float:
        """Rebuilding envs replays their episodes one after another: allow 50 ms per replayed step."""
        if history is None:
            return self.cfg.watchdog_s
        per_executor = self.cfg.num_envs // self.cfg.num_executors
        longest = max((len(a) for a in history.actions), default=0)
        return self.cfg.watchdog_s + 0.05 * longest * per_executor

    def _get(self, ch: Channel, waiting_for: str, timeout: float | None = None) -> int:
        sentinels = {p.sentinel: role for role, p in self.procs.items()}
        timeout = self.cfg.watchdog_s if timeout is None else timeout
        ready = mp.connection.wait([ch.r, self.errors.r, *sentinels], timeout=timeout)
        if not ready:
            where = self.dump_stacks()
            raise RolloutHang(f"no progress for {timeout:g}s while waiting for {waiting_for} "
                              f"(a hung environment or process?); stopping\n{where}".rstrip())
        if self.errors.r in ready:
            raise RoleFailed(*self.errors.read())
        dead = [sentinels[s] for s in ready if s in sentinels]
        if dead:
            # A child that raised reports on the error pipe just before it exits: prefer that text.
            if mp.connection.wait([self.errors.r], timeout=0.5):
                raise RoleFailed(*self.errors.read())
            role = dead[0]
            code = self.procs[role].exitcode
            how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            raise RoleFailed(f"{role} (pid {self.procs[role].pid}) died unexpectedly ({how})")
        return ch.get()

    # -- windows
    def begin(self, w: int) -> None:
        for inbox in self.inboxes:
            inbox.put(encode_go(w))

    def finish(self, w: int) -> None:
        if self.cfg.mode == "sync":
            self._lockstep(w % 2)
        for _ in range(self.cfg.num_executors):
            self._get(self.done, f"window {w} from the executors")

    def _lockstep(self, b: int) -> None:
        stats = self.bufs.stats[-1]
        for t in range(self.bufs.alpha):
            t0 = time.perf_counter()
            for _ in range(self.num_groups):
                tt, bb, _g = decode_task(self._get(self.ready, f"step {t} of the executors"), self.num_groups)
                assert (tt, bb) == (t, b), (tt, bb, t, b)
            t1 = time.perf_counter()
            self.policy.act(b, t, slice(0, self.cfg.num_envs))
            t2 = time.perf_counter()
            for g in range(self.num_groups):
                self.inboxes[self.group_owner[g]].put(g)
            stats[STAT["wait_s"]] += t1 - t0
            stats[STAT["infer_s"]] += t2 - t1
            stats[STAT["ipc_s"]] += time.perf_counter() - t2


def write_pids(run_dir: Path, pids: dict[str, int]) -> None:
    (run_dir / "pids.json").write_text(json.dumps({"main": os.getpid(), **pids}, indent=2))
