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
from htsrl.config import LAYOUT, RUN_CONTROL, fields_of_kind

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


# -- resume == uninterrupted (issue 28)

# What a resumed run must reproduce bitwise, beside the final state: the summary's numbers and every
# progress.csv column that does not depend on timing.
SUMMARY_NUMBERS = (
    "params_sha256",
    "rollout_sha256",
    "episodes",
    "mean_return_last_100",
    "mean_score_last_100",
    "updates",
    "env_steps",
    "policy_lag",
)
# Config fields a segment of a resumed run may change: layout and run control (config.py's kinds), its folder.
NOT_STATE = {"run_dir", *fields_of_kind(LAYOUT, RUN_CONTROL)}


def learning_rows(run_dir: Path) -> list[dict]:
    """progress.csv without the columns that depend on timing."""
    import csv

    with open(Path(run_dir) / "progress.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    timing = ("wall_time_s", "charts/sps")
    measured = ("time/", "resources/")  # seconds, and what the processes held when sampled (once a second)
    return [{k: v for k, v in r.items() if k not in timing and not k.startswith(measured)} for r in rows]


def assert_same_state(got, want, path: str = "state") -> None:
    """Field by field, bitwise: tensors (dtype, shape, bits), arrays, numbers (NaN equals NaN), containers.
    Layout and run-control config fields and the monitor's wall time are not state."""
    import math

    import numpy as np
    import torch

    if isinstance(want, dict):
        skip = NOT_STATE if path.endswith(".config") else {"wall_time_s"} if path.endswith(".monitor") else set()
        assert set(got) == set(want), f"{path}: keys {sorted(set(got) ^ set(want))} differ"
        for k in want:
            if k not in skip:
                assert_same_state(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want), f"{path}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_state(g, w, f"{path}[{i}]")
    elif isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.dtype == want.dtype and got.shape == want.shape, path
        assert _bytes(got) == _bytes(want), f"{path}: tensors differ"
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.tobytes() == want.tobytes(), path
    elif isinstance(want, float) and math.isnan(want):
        assert isinstance(got, float) and math.isnan(got), f"{path}: {got!r} != nan"
    else:
        assert type(got) is type(want) and got == want, f"{path}: {got!r} != {want!r}"


def _bytes(t) -> bytes:
    import torch

    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


class StateRecorder:
    """Records, while it is active, every state a Trainer saves (``("saved", run_dir, state)``) and the state
    of every resumed Trainer right after its restore (``("restored", run_dir, state)``)."""

    def __init__(self):
        self.events: list[tuple[str, str, dict]] = []

    def __enter__(self):
        import copy

        from htsrl.engine import runner, state

        self._patched = (state.save_checkpoint, runner.Trainer._restore)
        save, restore = self._patched

        def saving(run_dir, state):
            self.events.append(("saved", str(run_dir), copy.deepcopy(state)))
            return save(run_dir, state)

        def restoring(trainer, ckpt):
            restore(trainer, ckpt)
            state = trainer.state(ckpt["last_window"], ckpt["next_window"], ckpt["finished"], trainer.pending)
            self.events.append(("restored", str(trainer.run_dir), copy.deepcopy(state)))

        state.save_checkpoint, runner.Trainer._restore = saving, restoring
        return self

    def __exit__(self, *exc):
        from htsrl.engine import runner, state

        state.save_checkpoint, runner.Trainer._restore = self._patched

    def states(self, kind: str, run_dir) -> dict[int, dict]:
        """The last state of ``kind`` recorded for ``run_dir`` at each barrier, by ``next_window``."""
        return {s["next_window"]: s for k, d, s in self.events if k == kind and d == str(run_dir)}


def assert_resume_is_bitwise(tmp_path: Path, stops: tuple[int, ...], layouts: list[dict], **cfg) -> dict:
    """Train ``cfg`` once uninterrupted (with a checkpoint at every barrier) and once stopped after each of
    ``stops`` windows and resumed, segment ``i + 1`` in layout ``layouts[i]``. Then, bitwise:
    - each checkpoint of the stopped run equals the uninterrupted run's state at that barrier, field by
      field (every tensor, RNG state, counter, history, buffer row);
    - each resumed trainer, right after its restore, holds exactly the checkpoint it loaded;
    - the finished runs' summaries, progress.csv learning columns and final checkpoints are the same.
    Stops of both parities exercise both parameter slots. Returns the uninterrupted run's summary."""
    from htsrl.checkpoint import load_checkpoint

    assert len(layouts) == len(stops)
    full_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "stopped"
    cfg.setdefault("progress", False)
    with StateRecorder() as rec:
        full = train(Config(**cfg, run_dir=str(full_dir), checkpoint_every=1))
        steps_per_window = full["env_steps"] // full["updates"]
        segment = train(Config(**cfg, run_dir=str(run_dir), stop_at_steps=stops[0] * steps_per_window))
        assert not segment["finished"]
        for i, layout in enumerate(layouts):
            stop = stops[i + 1] * steps_per_window if i + 1 < len(stops) else None
            saved = json.loads((run_dir / "config.json").read_text())
            segment = train(Config.from_dict({**saved, **layout, "stop_at_steps": stop}), resume=True)
            assert segment["finished"] == (stop is None) and segment["resumed_at_steps"] > 0
    reference = rec.states("saved", full_dir)
    saved = rec.states("saved", run_dir)
    restored = rec.states("restored", run_dir)
    assert sorted(restored) == sorted(stops)
    for w in stops:
        assert_same_state(saved[w], reference[w], f"checkpoint at window {w}")
        assert_same_state(restored[w], saved[w], f"resumed at window {w}")
    assert {k: segment[k] for k in SUMMARY_NUMBERS} == {k: full[k] for k in SUMMARY_NUMBERS}
    assert learning_rows(run_dir) == learning_rows(full_dir)
    assert_same_state(load_checkpoint(run_dir), load_checkpoint(full_dir), "final checkpoint")
    return full
