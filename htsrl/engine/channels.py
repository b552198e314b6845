"""Blocking signals between roles: pipes that carry fixed 8-byte messages, and the error pipe.

A write of 8 bytes to a pipe is atomic and a reader takes whole messages, so any number of processes
may write to and read from one channel without a lock. A reader blocks in ``read(2)``: nothing spins.

Messages (one per group per step in each direction, nothing per env)::

    executor --(t, buf, g ready: encode_task)--> ready channel --> any actor --(g)--> executor's inbox
    executor --(window, its index: encode_done)--> done channel --> main
    main ------(GO window: encode_go | STOP)---> inbox of every executor
    child -----(retryable flag + traceback)----> error channel --> main
"""

from __future__ import annotations

import os
import struct

_MSG = struct.Struct("=q")
STOP = -1


class _Pipe:
    def __init__(self) -> None:
        self.r, self.w = os.pipe()

    def __reduce__(self):
        """Pickled only while a child is spawned: ``multiprocessing`` passes both ends to it."""
        from multiprocessing.reduction import DupFd

        return _reopen, (type(self), DupFd(self.r), DupFd(self.w))

    def close(self) -> None:
        for fd in (self.r, self.w):
            close_fd(fd)


def close_fd(fd: int) -> None:
    """Close ``fd``; one already closed (or never opened) is no error."""
    try:
        os.close(fd)
    except OSError:
        pass


def _reopen(cls, r, w) -> _Pipe:
    pipe = cls.__new__(cls)
    pipe.r, pipe.w = r.detach(), w.detach()
    return pipe


class Channel(_Pipe):
    def put(self, value: int) -> None:
        os.write(self.w, _MSG.pack(value))

    def get(self) -> int:
        data = os.read(self.r, 8)
        while len(data) < 8:  # cannot happen with whole-message writers; kept for safety
            more = os.read(self.r, 8 - len(data))
            if not more:
                raise EOFError("channel closed")
            data += more
        return _MSG.unpack(data)[0]


class ErrorChannel(_Pipe):
    """Children report a failure (role name + traceback) in one atomic write (<= PIPE_BUF bytes).

    A report is one flag byte, ``R`` (a restart may help) or ``F`` (final: a restart cannot help, say a
    replay mismatch), then the text, then a NUL, so that several arriving together can be told apart.
    """

    LIMIT = 4000
    RETRYABLE, FINAL = b"R", b"F"

    def report(self, text: str, retryable: bool = True) -> None:
        data = text.encode("utf-8", "replace")
        if len(data) > self.LIMIT:
            data = b"...\n" + data[-(self.LIMIT - 4) :]
        os.write(self.w, (self.RETRYABLE if retryable else self.FINAL) + data + b"\0")

    def read(self) -> tuple[str, bool]:
        """``(text, retryable)``: the first report waiting (a final one before any retryable one), with a
        count of any others; retryable only if every report waiting is."""
        reports = [r for r in os.read(self.r, 65536).split(b"\0") if r]
        reports.sort(key=lambda r: r[:1] != self.FINAL)  # stable: final reports first
        retryable = all(r[:1] != self.FINAL for r in reports)
        text = reports[0][1:].decode("utf-8", "replace").rstrip()
        if len(reports) > 1:
            text += f"\n({len(reports) - 1} more role(s) failed at the same time)"
        return text, retryable


def encode_task(t: int, buf: int, g: int, num_groups: int, num_slots: int) -> int:
    """'Group g has its observation for step t of buffer buf ready' as one integer."""
    return (t * num_slots + buf) * num_groups + g


def decode_task(msg: int, num_groups: int, num_slots: int) -> tuple[int, int, int]:
    """``(t, buf, g)`` of an :func:`encode_task` message."""
    tb, g = divmod(msg, num_groups)
    t, buf = divmod(tb, num_slots)
    return t, buf, g


def encode_done(window: int, executor: int, num_executors: int) -> int:
    """'Executor ``executor`` has finished ``window``' (window -1: its envs are started)."""
    return (window + 1) * num_executors + executor


def decode_done(msg: int, num_executors: int) -> tuple[int, int]:
    """``(window, executor)`` of an :func:`encode_done` message."""
    w, e = divmod(msg, num_executors)
    return w - 1, e


def encode_go(window: int) -> int:
    """Executor command 'collect window ``window``' (negative, apart from group ids and STOP)."""
    return -2 - window


def decode_go(msg: int) -> int:
    return -2 - msg
