"""What a run holds while it trains (the ``resources/*`` metrics): memory per role, shared memory, open
descriptors. Sampled from ``/proc`` by the main process after a window, at most once a second, so a run of
hours shows a leak as a slope in ``progress.csv``, TensorBoard and ``htsrl plot --resources``. Linux only:
elsewhere ``sample`` returns {}.

- ``resources/rss_mb/<role>``: resident memory of each role (``main`` is the learner's process). It counts
  the shared rollout buffers in every process that touched them, so the roles do not add up;
- ``resources/private_mb``: the anonymous resident memory of all roles together (``RssAnon``), where a
  leak shows. A forked role's pages still shared copy-on-write with the main process count in both, and
  turn private as they are written: a slow rise early in a run, which levels off, is that;
- ``resources/shm_mb``: shared memory the run's processes hold open, each file once: the memfd of the
  buffers and anything in /dev/shm (htsrl names nothing there; a library that does shows here);
- ``resources/open_fds``: descriptors open in all roles together.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

MB = 1024 * 1024


def _status_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.endswith(" kB"):
            fields[key] = int(value[:-3])
    return fields


def _fds(pid: int) -> tuple[int, dict[tuple[int, int], int]]:
    """How many descriptors ``pid`` has open, and the shared-memory files among them: (dev, inode) -> bytes."""
    folder = f"/proc/{pid}/fd"
    names = os.listdir(folder)
    shared = {}
    for name in names:
        try:
            target = os.readlink(f"{folder}/{name}")
            if target.startswith(("/memfd:", "/dev/shm/")):
                st = os.stat(f"{folder}/{name}")
                shared[(st.st_dev, st.st_ino)] = st.st_size
        except OSError:  # closed while we looked
            continue
    return len(names), shared


def role_key(role: str) -> str:
    """``executor 0`` -> ``executor_0``: a metric name without spaces."""
    return role.replace(" ", "_")


def sample(pids: dict[str, int]) -> dict[str, float]:
    """One sample of every live role in ``pids`` (role -> pid); a role that has just died is left out."""
    if not sys.platform.startswith("linux"):
        return {}
    out: dict[str, float] = {}
    private_kb = fds = 0
    shared: dict[tuple[int, int], int] = {}
    for role, pid in pids.items():
        try:
            status = _status_kb(pid)
            n, held = _fds(pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        out[f"resources/rss_mb/{role_key(role)}"] = status.get("VmRSS", 0) / 1024
        private_kb += status.get("RssAnon", 0)
        fds += n
        shared.update(held)
    if not out:  # no role could be read (all just ended): no sample rather than zeros
        return {}
    out["resources/private_mb"] = private_kb / 1024
    out["resources/shm_mb"] = sum(shared.values()) / MB
    out["resources/open_fds"] = float(fds)
    return out
