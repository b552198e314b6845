"""Checkpoints: everything a run needs to continue bitwise-identically, written atomically.

File layout: ``MAGIC | sha256(payload) | len(payload) | payload`` where the payload is a ``torch.save``
of the state dict with its large integer arrays encoded (``encode_state``). A file whose magic, length or
hash is off is refused whole, never half-loaded. A write goes to a temporary file that is fsynced and
renamed over the old one, so a failure while saving (full disk, crash) leaves the previous checkpoint
intact. Read one with ``load_checkpoint(run_dir)``: ``torch.load`` cannot open the file itself (the header
comes first), and the payload alone still holds the encoded arrays.

Encoding (``HTSRLCK2``; ``HTSRLCK1`` files, whose payload is the plain state, still load): the weights,
the optimizer's moments and every other floating-point tensor are stored as they are. An integer or bool
tensor of at least ``PACK_MIN_BYTES`` is stored zlib-compressed where that saves an eighth or more, and a
window of stacked frames (``(steps, envs, stack, ...)``, e.g. Atari's 4 frames of 84x84) first keeps each
frame once: a row that is its previous row shifted by one frame (the env stepped within an episode) keeps
only its newest frame, any other row keeps its whole stack. Both are exact by construction, and every
encoded tensor is decoded again and compared on save: a mismatch stores the tensor as it is.

The hash catches corruption, not tampering: anyone can write a file with a matching hash. So a
checkpoint holds only tensors and plain Python types (numbers, strings, lists, dicts) and is loaded
with ``weights_only=True``: a shared run directory whose checkpoint would run code when unpickled is
refused, and the code does not run.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import pickle
import re
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

from htsrl.errors import CheckpointError, CheckpointWriteError
from htsrl.run_dir import RunDir

MAGIC = b"HTSRLCK2"  # 2: large integer arrays encoded (encode_state)
READABLE = (MAGIC, b"HTSRLCK1")  # 1: the plain state
PACKED = "__htsrl_packed__"  # the key that marks an encoded tensor in the payload
PACK_MIN_BYTES = 4096  # smaller tensors are not worth a zlib stream
PACKABLE_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
ZLIB_LEVEL = 6  # an Atari PPO window: 45% smaller than level 1 in about the same time; 9 takes 5x longer


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    path = RunDir(run_dir).checkpoint
    buf = io.BytesIO()
    torch.save(encode_state(state), buf)
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
    """The state ``save_checkpoint`` was given, bitwise (checked by its sha256, unpickled with
    ``weights_only=True``, decoded)."""
    path = RunDir(run_dir).checkpoint
    payload = _load_payload(path)
    try:
        return decode_state(payload)
    except CheckpointError:
        raise
    except Exception as e:  # an encoded part that does not decode: one line, as for any unreadable checkpoint
        raise CheckpointError(
            f"{path} holds a part that does not decode ({type(e).__name__}: {e}); refusing it"
        ) from None


def _load_payload(path: Path):
    """The payload as stored (encoded tensors not yet decoded)."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    data = path.read_bytes()
    head = len(MAGIC) + 32 + 8
    if len(data) < head or not data.startswith(READABLE):
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


# -- encoding: exact, and only of what is redundant (see the module docstring)
def encode_state(obj):
    """``obj`` with every tensor that pays encoded as a plain dict of tensors and plain types (marked by
    ``PACKED``); containers are copied only where something inside them changed (an ``OrderedDict`` keeps
    its type and its ``_metadata``)."""
    if isinstance(obj, torch.Tensor):
        return _encode_tensor(obj)
    return _map_container(obj, encode_state)


def decode_state(obj):
    """The inverse of ``encode_state``; a state that holds no encoded tensor comes back as it is."""
    if isinstance(obj, dict) and PACKED in obj:
        return _decode_tensor(obj)
    return _map_container(obj, decode_state)


def _map_container(obj, fn):
    if isinstance(obj, dict):
        items = {k: fn(v) for k, v in obj.items()}
        if all(items[k] is v for k, v in obj.items()):
            return obj
        out = copy.copy(obj)
        out.update(items)
        return out
    if isinstance(obj, (list, tuple)):
        items = [fn(v) for v in obj]
        if all(a is b for a, b in zip(items, obj)):
            return obj
        return type(obj)(items)
    return obj


def _encode_tensor(t: torch.Tensor):
    # integers only: floating point (weights, moments, values) hardly compresses and is what a resume needs
    if t.dtype not in PACKABLE_DTYPES or t.layout != torch.strided or t.nbytes < PACK_MIN_BYTES:
        return t
    try:  # any failure to encode (memory, say) keeps the tensor as it is: a save never fails for it
        x = t.detach().cpu().contiguous().numpy()
        packed = _pack_frame_stacks(x) or _zlib(x)
        if packed is None:
            return t
        decoded = _decode_tensor(packed).numpy()
    except Exception:
        return t
    if decoded.dtype != x.dtype or decoded.shape != x.shape or not _same_bytes(decoded, x):
        return t  # never expected; the tensor as it is is always right
    return packed


def _same_bytes(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 24) -> bool:
    """Bitwise equality of two contiguous arrays of one size, a chunk at a time (no full-size copies)."""
    a, b = a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8)
    return all(a[i : i + chunk].tobytes() == b[i : i + chunk].tobytes() for i in range(0, a.size, chunk))


def _zlib(x: np.ndarray) -> dict | None:
    """``x`` zlib-compressed, or None where that would not save an eighth."""
    data = zlib.compress(np.ascontiguousarray(x), ZLIB_LEVEL)
    if len(data) > x.nbytes * 7 // 8:
        return None
    data = torch.frombuffer(bytearray(data), dtype=torch.uint8)  # bytearray: frombuffer wants it writable
    return {PACKED: "zlib", "dtype": str(x.dtype), "shape": list(x.shape), "data": data}


def _zlib_or_plain(x: np.ndarray):
    packed = _zlib(x) if x.nbytes >= PACK_MIN_BYTES else None
    return torch.from_numpy(np.ascontiguousarray(x)) if packed is None else packed


def _pack_frame_stacks(x: np.ndarray) -> dict | None:
    """``x`` of shape ``(steps, envs, stack, ...)`` with each frame once: ``shifted[t, i]`` says that row
    ``x[t, i]`` is ``x[t - 1, i]`` shifted by one frame (``x[t, i, :-1] == x[t - 1, i, 1:]``), whose newest
    frame ``x[t, i, -1]`` is then all that is kept (in ``new``, row-major); every other row is kept whole
    (in ``stacks``). None where no row is shifted or ``x`` is not such an array."""
    if x.ndim < 4 or x.shape[0] < 2 or x.shape[2] < 2 or x.dtype.kind not in "biu":  # integers: == is bitwise
        return None
    steps, envs = x.shape[:2]
    shifted = np.zeros((steps, envs), np.bool_)
    shifted[1:] = (x[1:, :, :-1] == x[:-1, :, 1:]).reshape(steps - 1, envs, -1).all(axis=-1)
    if not shifted.any():
        return None
    return {
        PACKED: "frame_stacks",
        "dtype": str(x.dtype),
        "shape": list(x.shape),
        "shifted": _zlib_or_plain(shifted),
        "stacks": _zlib_or_plain(x[~shifted]),
        "new": _zlib_or_plain(x[:, :, -1][shifted]),
    }


def _decode_tensor(packed: dict) -> torch.Tensor:
    kind, dtype, shape = packed[PACKED], np.dtype(packed["dtype"]), tuple(packed["shape"])
    if kind == "zlib":
        data = zlib.decompress(packed["data"].numpy().tobytes())
        return torch.from_numpy(np.frombuffer(data, dtype).reshape(shape).copy())
    if kind == "frame_stacks":
        shifted, stacks, new = (decode_state(packed[k]).numpy() for k in ("shifted", "stacks", "new"))
        x = np.empty(shape, dtype)
        x[~shifted] = stacks
        start = 0
        for t in range(1, shape[0]):  # in order: a shifted row is built from the row before it
            rows = shifted[t]
            count = int(rows.sum())
            x[t, rows, :-1] = x[t - 1, rows, 1:]
            x[t, rows, -1] = new[start : start + count]
            start += count
        return torch.from_numpy(x)
    raise CheckpointError(f"unknown encoding {kind!r} in a checkpoint (written by a newer htsrl?)")


# -- what each part takes on disk
def stored_sizes(run_dir: Path) -> dict[str, int]:
    """Bytes each part of the checkpoint in ``run_dir`` takes as stored: the top-level fields, and
    ``learner`` and ``window`` field by field. Each part is ``torch.save``d alone, so each counts about
    1.3 kB of container that the file holds once."""
    sizes = {}
    for key, value in _load_payload(RunDir(run_dir).checkpoint).items():
        parts = value.items() if key in ("learner", "window") and isinstance(value, dict) else [(None, value)]
        for sub, part in parts:
            buf = io.BytesIO()
            torch.save(part, buf)
            sizes[key if sub is None else f"{key}.{sub}"] = len(buf.getvalue())
    return sizes


def print_stored_sizes(run_dirs: list[str], min_bytes: int = 64 * 1024) -> None:
    """A table of ``stored_sizes`` for each run (a column each); parts under ``min_bytes`` in every run
    are summed into one row."""
    tables = [stored_sizes(Path(d)) for d in run_dirs]
    names = list(dict.fromkeys(name for table in tables for name in table))
    big = [n for n in names if any(table.get(n, 0) >= min_bytes for table in tables)]
    rows = [(n, [table.get(n, 0) for table in tables]) for n in big]
    rest = [n for n in names if n not in big]
    rows.append((f"{len(rest)} other parts", [sum(table.get(n, 0) for n in rest) for table in tables]))
    rows.append(("checkpoint.pt (file)", [RunDir(d).checkpoint.stat().st_size for d in run_dirs]))
    width = max(len(n) for n, _ in rows)
    print(f"{'part':{width}s}" + "".join(f"  {Path(d).name:>16s}" for d in run_dirs))
    for name, values in rows:
        print(f"{name:{width}s}" + "".join(f"  {v / 1e6:13.3f} MB" for v in values))


if __name__ == "__main__":  # python -m htsrl.checkpoint RUN_DIR [RUN_DIR ...]
    if len(sys.argv) < 2:
        sys.exit("usage: python -m htsrl.checkpoint RUN_DIR [RUN_DIR ...]: the bytes each part of checkpoint.pt takes")
    print_stored_sizes(sys.argv[1:])
