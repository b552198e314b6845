"""Checkpoints: everything a run needs to continue bitwise-identically, written atomically.

File layout: ``MAGIC | sha256(payload) | len(payload) | payload`` where the payload is a ``torch.save``
of the state dict. A file whose magic, length or hash is off is refused whole, never half-loaded. A
write goes to a temporary file that is fsynced and renamed over the old one, so a failure while
saving (full disk, crash) leaves the previous checkpoint intact.

The hash catches corruption, not tampering: anyone can write a file with a matching hash. So a
checkpoint holds only tensors and plain Python types (numbers, strings, lists, dicts) and is loaded
with ``weights_only=True``: a shared run directory whose checkpoint would run code when unpickled is
refused, and the code does not run.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
from pathlib import Path

import torch

from htsrl.errors import CheckpointError, CheckpointWriteError

MAGIC = b"HTSRLCK1"
FILENAME = "checkpoint.pt"


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    path = Path(run_dir) / FILENAME
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + hashlib.sha256(payload).digest() + len(payload).to_bytes(8, "little"))
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException as e:  # a full disk, or a second Ctrl-C mid-write: no temporary file stays behind
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(e, OSError):
            raise CheckpointWriteError(
                f"could not write checkpoint {path}: {e}; the previous checkpoint is kept"
            ) from e
        raise
    return path


def load_checkpoint(run_dir: Path) -> dict:
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    data = path.read_bytes()
    head = len(MAGIC) + 32 + 8
    if len(data) < head or not data.startswith(MAGIC):
        raise CheckpointError(f"{path} is not an htsrl checkpoint (bad header); refusing to load it")
    digest = data[len(MAGIC) : len(MAGIC) + 32]
    length = int.from_bytes(data[len(MAGIC) + 32 : head], "little")
    payload = data[head:]
    if len(payload) != length:
        raise CheckpointError(f"{path} is truncated ({len(payload)} of {length} bytes); refusing to load it")
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"{path} is corrupt (sha256 mismatch); refusing to load it")
    try:
        return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported[^\n]*?(GLOBAL [\w.]+|operand \d+|class [\w.]+)", str(e))
        what = f" ({found.group(0).strip()})" if found else ""
        older = (
            " (checkpoints of htsrl 0.1 held numpy arrays: resume such a run with the htsrl that wrote it)"
            if "numpy" in str(e)
            else ""
        )
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain types{what}; loading it could run "
            f"code, so htsrl refuses it{older}"
        ) from None
