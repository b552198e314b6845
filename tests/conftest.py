import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from htsrl import Config, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(tmp_path):
    """run(**config) -> summary of an in-process training run in a fresh folder."""
    counter = iter(range(1000))

    def _run(on_window=None, **kw):
        kw.setdefault("progress", False)
        kw.setdefault("run_dir", str(tmp_path / f"run{next(counter)}"))
        return train(Config(**kw), on_window=on_window)

    return _run


def shm_entries() -> set[str]:
    return set(os.listdir("/dev/shm"))


def start_cli(args: list[str], run_dir: Path) -> subprocess.Popen:
    """Start `python -m htsrl train ...` in its own session (so a test can Ctrl-C its process group)."""
    cmd = [sys.executable, "-m", "htsrl", "train", "--run-dir", str(run_dir), "--no-progress", *args]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=REPO
    )


def wait_for_pids(run_dir: Path, timeout: float = 60.0) -> dict[str, int]:
    path = run_dir / "pids.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass
        time.sleep(0.05)
    raise AssertionError("run never wrote pids.json")


def assert_all_gone(pids, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.05)
    assert not alive, f"orphan processes left: {alive}"


def finish_cli(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of a run started by :func:`start_cli`; a run still going after
    ``timeout`` is a hang: killed, and the test fails."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except Exception:
        kill_group(proc)
        raise AssertionError("run did not stop (hang)") from None
    return proc.returncode, out, err


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def assert_sigkill_recovered(args: list[str], run_dir: Path, victim: str, reference: dict, when=None) -> str:
    """Start ``htsrl train ARGS``, SIGKILL role ``victim`` once ``when()`` returns (default: 1 s after the
    roles started), and check the run finished after one restart with ``reference``'s numbers, leaving
    no orphan and nothing in /dev/shm. Returns the run's stderr."""
    before = shm_entries()
    proc = start_cli(args, run_dir)
    pids = wait_for_pids(run_dir)
    (when or (lambda: time.sleep(1.0)))()
    os.kill(pids[victim], signal.SIGKILL)
    code, _, err = finish_cli(proc, timeout=120)
    assert code == 0, err
    assert f"{victim} (pid {pids[victim]}) died unexpectedly (killed by SIGKILL); restarting" in err
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["restarts"] == 1
    assert s["params_sha256"] == reference["params_sha256"] and s["rollout_sha256"] == reference["rollout_sha256"]
    assert_all_gone([*pids.values(), *wait_for_pids(run_dir).values()])
    assert shm_entries() == before
    return err
