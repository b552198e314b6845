"""Blocking signals between roles: pipes that carry fixed 8-byte messages.

A write of 8 bytes to a pipe is atomic and a reader takes whole messages, so any number of processes
may write to and read from one channel without a lock. A reader blocks in ``read(2)``: nothing spins.
"""

from __future__ import annotations

import os
import struct

_MSG = struct.Struct("=q")
STOP = -1


class Channel:
    def __init__(self) -> None:
        self.r, self.w = os.pipe()

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

    def close(self) -> None:
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass


class ErrorChannel:
    """Children report a failure (role name + traceback) in one atomic write (<= PIPE_BUF bytes);
    reports are NUL-terminated so that several arriving together can be told apart."""

    LIMIT = 4000

    def __init__(self) -> None:
        self.r, self.w = os.pipe()

    def report(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        if len(data) > self.LIMIT:
            data = b"...\n" + data[-(self.LIMIT - 4):]
        os.write(self.w, data + b"\0")

    def read(self) -> str:
        """The first report waiting, with a count of any others."""
        reports = [r for r in os.read(self.r, 65536).split(b"\0") if r]
        text = reports[0].decode("utf-8", "replace").rstrip()
        if len(reports) > 1:
            text += f"\n({len(reports) - 1} more role(s) failed at the same time)"
        return text

    def close(self) -> None:
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass


def encode_task(t: int, b: int, g: int, num_groups: int) -> int:
    """'Group g has its observation for step t of buffer b ready' as one integer."""
    return (t * 2 + b) * num_groups + g


def decode_task(msg: int, num_groups: int) -> tuple[int, int, int]:
    tb, g = divmod(msg, num_groups)
    t, b = divmod(tb, 2)
    return t, b, g


def encode_go(window: int) -> int:
    """Executor command 'collect window w' (negative, apart from group ids and STOP)."""
    return -2 - window


def decode_go(msg: int) -> int:
    return -2 - msg
