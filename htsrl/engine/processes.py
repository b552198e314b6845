"""Role processes: forking, supervising and stopping them. Nothing here knows what a rollout is.

``Roles`` starts a set of named functions as child processes (forked with the parent's objects frozen,
or spawned: ``--start-method``) and
owns the error pipe they report on. Every wait of the parent goes through ``Roles.get``, which
returns a channel's next message but raises ``RoleFailed`` as soon as a child reports an exception or
dies, and ``RolloutHang`` (after dumping every role's stack) when nothing arrives within the watchdog
timeout. Each child (``_child``) dies with its parent, leaves SIGINT/SIGTERM to it, prints its Python
stack on a native crash, dumps it on SIGUSR1, and reports an exception with whether a restart can help.
"""

from __future__ import annotations

import ctypes
import faulthandler
import gc
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from htsrl.engine.channels import Channel, ErrorChannel
from htsrl.errors import RoleFailed, RolloutHang

Target = tuple[Callable[..., None], tuple]  # a role's function and its arguments


def _die_with_parent(parent: int) -> None:
    try:  # PR_SET_PDEATHSIG: the kernel kills this child if the parent dies, even by SIGKILL
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass
    if os.getppid() != parent:  # the parent died between fork and prctl: nobody would kill us
        os._exit(1)


# Ctrl-C and a group-wide SIGTERM are the parent's to handle; a child ignores them from its first line
# (``_child``). Before that line they must not kill it. A forked child gets there in microseconds: the
# signals stay blocked from before the fork until then (the mask is inherited; the parent gets a
# signal that arrived meanwhile after the forks). A spawned child imports torch first, and exec resets
# the mask, but not an ignored disposition: the parent ignores them while it spawns (a Ctrl-C in those
# moments is lost; the next one stops the run).
_PARENTS_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def start_roles(procs: Iterable[mp.process.BaseProcess], method: str = "fork") -> None:
    """Start the roles with every object of the parent frozen, so that no forked child ever
    garbage-collects what it inherited: the destructor of an object that owns threads (an EnvPool the
    parent left to its collector) would run in the child, where those threads do not exist, and crash
    it. The parent's signals are held off meanwhile (see ``_PARENTS_SIGNALS``)."""
    gc.freeze()
    if method == "fork":
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _PARENTS_SIGNALS)
    else:
        handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _PARENTS_SIGNALS}
    try:
        for p in procs:
            p.start()
    finally:
        if method == "fork":
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        else:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        gc.unfreeze()


def _stack_file(stack_dir: Path, role: str) -> Path:
    return stack_dir / f"stack-{role.replace(' ', '')}.txt"


def _child(role: str, parent: int, errors: ErrorChannel, stack_dir: Path | None, fn, *args) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a group-wide SIGTERM is the parent's to handle too
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _PARENTS_SIGNALS)  # forked: blocked since before the fork
    signal.signal(signal.SIGCONT, signal.SIG_DFL)  # the parent's watchdog handler: no EINTR in env C code
    try:  # a crash in native env code still prints this child's Python stack
        faulthandler.enable(file=sys.__stderr__)
    except (AttributeError, ValueError, OSError):
        pass  # no usable stderr (embedded interpreter)
    if stack_dir is not None:  # the watchdog asks for a stack dump with SIGUSR1
        # opened now: faulthandler writes from its signal handler, even while the role is stuck in native
        # code, so it needs the file open; an empty one is removed when the roles stop (_remove_unused)
        stack_dir.mkdir(parents=True, exist_ok=True)
        dump = open(_stack_file(stack_dir, role), "w")  # noqa: SIM115  (open for the process's lifetime)
        faulthandler.register(signal.SIGUSR1, file=dump, all_threads=True)
    try:
        torch.set_num_threads(1)
        fn(*args)
    except BaseException as exc:  # noqa: BLE001  (whatever a role raises is reported, then it exits)
        # An htsrl error says whether a restart can help (a replay mismatch cannot); anything else may.
        errors.report(
            f"{role} (pid {os.getpid()}) failed:\n{traceback.format_exc()}", retryable=getattr(exc, "retryable", True)
        )
        raise SystemExit(1) from None


def dump_stacks(procs: dict[str, mp.process.BaseProcess], stack_dir: Path | None) -> str:
    """Watchdog: ask every live child for its Python stack (SIGUSR1), dump the parent's, and say where
    each role was (its innermost frame); the full stacks are in ``stack_dir/stack-*.txt``."""
    if stack_dir is None:
        return ""
    for p in procs.values():
        if p.is_alive():
            os.kill(p.pid, signal.SIGUSR1)
    stack_dir.mkdir(parents=True, exist_ok=True)
    with open(stack_dir / "stack-main.txt", "w") as f:
        faulthandler.dump_traceback(file=f, all_threads=True)
    time.sleep(0.5)
    lines = []
    for role in procs:
        path = _stack_file(stack_dir, role)
        frames = (
            [ln.strip() for ln in path.read_text().splitlines() if ln.strip().startswith("File")]
            if path.exists()
            else []
        )
        lines.append(f"  {role}: {frames[0] if frames else 'no stack (process gone?)'}")
    return "where each role was (innermost frame; full stacks in stack-*.txt):\n" + "\n".join(lines)


def _remove_unused(stack_dir: Path | None, roles: Iterable[str]) -> None:
    """Once the roles are stopped: their stack files that stayed empty (no hang, no dump), then the folder
    if nothing else is in it, so a healthy run leaves no ``stacks/``."""
    if stack_dir is None:
        return
    for role in roles:
        path = _stack_file(stack_dir, role)
        try:
            if path.stat().st_size == 0:
                path.unlink()
        except FileNotFoundError:
            pass
    try:
        stack_dir.rmdir()
    except OSError:  # it holds a dump (or another file), or is gone
        pass


_continued_at = [0.0]  # time.monotonic() of the last SIGCONT this process received


def _on_continue(signum, frame) -> None:
    _continued_at[0] = time.monotonic()


def watch_for_suspension():
    """Note each SIGCONT (a run suspended with Ctrl-Z or SIGSTOP and continued), so that a watchdog wait
    the suspension outlasted starts over instead of calling the run hung. Main thread only; returns the
    handler it replaced (``Roles.stop`` puts it back: ``htsrl.train`` may run inside a host program)."""
    if threading.current_thread() is threading.main_thread():
        return signal.signal(signal.SIGCONT, _on_continue)
    return None


class Roles:
    """Named role processes forked together, the error pipe they report on, and the parent's
    supervised waits on them. One ``Roles`` per start: a restart makes a new one (fresh pipes)."""

    def __init__(self, watchdog_s: float, start_method: str = "fork") -> None:
        self.previous_sigcont = watch_for_suspension()
        self.watchdog_s, self.start_method = watchdog_s, start_method
        self.errors = ErrorChannel()  # opened before the fork, so every child inherits it
        self.procs: dict[str, mp.process.BaseProcess] = {}
        self.stack_dir: Path | None = None

    def start(self, targets: dict[str, Target], stack_dir: Path | None = None) -> None:
        """Start ``fn(*args)`` for every ``role: (fn, args)`` (Linux only). Forked, the children share the
        parent's mappings and pipes; spawned, each is a fresh interpreter that is passed ``fn`` and its
        arguments pickled, the shared buffers and pipes as file descriptors (``shm.SharedArrays``,
        ``channels._Pipe``). ``stack_dir``: where they dump their stacks on SIGUSR1."""
        ctx = mp.get_context(self.start_method)
        parent = os.getpid()
        self.stack_dir = stack_dir
        self.procs = {
            role: ctx.Process(
                target=_child, name=f"htsrl-{role}", daemon=True, args=(role, parent, self.errors, stack_dir, fn, *args)
            )
            for role, (fn, args) in targets.items()
        }
        start_roles(self.procs.values(), self.start_method)

    @property
    def pids(self) -> dict[str, int]:
        """Role name -> pid of every role that was forked (a fork may have failed midway)."""
        return {role: p.pid for role, p in self.procs.items() if p.pid is not None}

    def get(self, ch: Channel, waiting_for: str, timeout: float | None = None) -> int:
        """The next message on ``ch``; raises ``RoleFailed`` if a child reports an exception or dies
        first, and ``RolloutHang`` if nothing arrives within ``timeout`` (default: the watchdog)."""
        sentinels = {p.sentinel: role for role, p in self.procs.items() if p.pid is not None}
        timeout = self.watchdog_s if timeout is None else timeout
        while True:
            began = time.monotonic()
            ready = mp.connection.wait([ch.r, self.errors.r, *sentinels], timeout=timeout)
            if ready or _continued_at[0] < began:
                break
            # suspended (Ctrl-Z, SIGSTOP) and continued during the wait: the clock ran, the roles did not
        if not ready:
            where = dump_stacks(self.procs, self.stack_dir)
            raise RolloutHang(
                f"no progress for {timeout:g}s while waiting for {waiting_for} "
                f"(a hung environment or process?); stopping\n{where}".rstrip()
            )
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

    def stop(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for the children (asked to stop by the caller) to exit, kill what is
        still alive, and close the error pipe."""
        deadline = time.monotonic() + grace_s
        started = [p for p in self.procs.values() if p.pid is not None]  # a fork may have failed midway
        for p in started:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in started:
            if p.is_alive():
                p.kill()
                p.join(2.0)
        _remove_unused(self.stack_dir, self.procs)
        self.errors.close()
        previous = self.previous_sigcont
        if (
            previous is not None
            and previous is not _on_continue
            and threading.current_thread() is threading.main_thread()
        ):
            signal.signal(signal.SIGCONT, previous)  # the host program's handler (SIG_DFL for the CLI)


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
