"""The body of gpu_pong.sh: Pong-v5 with htsrl's defaults and the learner on the GPU (16 envs) for a fixed
wall time, stopped at a barrier (SIGINT, as Ctrl-C: a checkpoint, resumable), then how far it got: agent
steps, steps/s between its first and last progress rows (start-up left out, as in race_sps.py), and the
last-100 score with atari_curves' race levels. The run folder stays in a temporary directory (checkpoints
do not travel back); its small files are exported beside gpu_pong.json, as atari_curves exports them."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

BARRIER_WAIT_S = 60  # after Ctrl-C a run stops at the next barrier: within one window (seconds on a GPU)
_spec = importlib.util.spec_from_file_location("atari_curves", Path(__file__).with_name("atari_curves.py"))
atari_curves = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(atari_curves)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seconds", type=float, default=420.0, help="wall time before the run is stopped")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stop-at-steps", type=int, default=None, help="stop there if sooner (the CPU fallback's bound)")
    a = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / f"pong-{device}{a.num_envs}__s{a.seed}"
        cmd = [sys.executable, "-m", "htsrl", "train", "--env", "ALE/Pong-v5", "--device", device]
        cmd += ["--num-envs", str(a.num_envs), "--total-steps", "3000000", "--seed", str(a.seed)]
        cmd += ["--run-dir", str(run), "--no-progress"]
        if a.stop_at_steps:
            cmd += ["--stop-at-steps", str(a.stop_at_steps)]
        print(" ".join(cmd[1:]), flush=True)
        started = time.time()
        with open(a.out / "train.log", "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            try:
                proc.wait(timeout=a.seconds)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)  # Ctrl-C: the run stops at the next barrier with a checkpoint
                try:
                    proc.wait(timeout=BARRIER_WAIT_S)
                except subprocess.TimeoutExpired:  # a second Ctrl-C stops it at once (and its roles with it)
                    proc.send_signal(signal.SIGINT)
                    proc.wait(timeout=30)
        if proc.returncode not in (0, 130):
            print((a.out / "train.log").read_text()[-3000:], file=sys.stderr)
            return 1
        rows = []
        if (run / "progress.csv").is_file():
            with open(run / "progress.csv") as f:
                rows = list(csv.DictReader(f))
        if not rows:
            print(f"no window ended in {a.seconds:.0f} s: see train.log", file=sys.stderr)
            return 1
        first, last = rows[0], rows[-1]
        steps_per_s = None  # a rate needs two rows: one window's end to another's
        if len(rows) > 1:
            steps_per_s = (int(last["env_steps"]) - int(first["env_steps"])) / (
                float(last["wall_time_s"]) - float(first["wall_time_s"])
            )
        config = json.loads((run / "config.json").read_text())
        summary = atari_curves.summarize_run(run, "Pong")
        atari_curves.export_run(run, a.out)
    result = {
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "seconds": round(time.time() - started, 1),
        "config": {k: config.get(k) for k in ("num_envs", "num_executors", "num_actors", "precision", "mode")},
        "env_steps": int(last["env_steps"]),
        "steps_per_s": steps_per_s,
        "score_last_100": summary["final"] if summary else None,
        "games": summary["games"] if summary else 0,
        "race": summary["race"] if summary else None,
    }
    (a.out / "gpu_pong.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
