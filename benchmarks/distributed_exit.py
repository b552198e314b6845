"""Run N consecutive 2-rank torchrun jobs to completion and count the ones that do not exit 0.

A finished job must exit 0 every time: a scheduler marks it failed otherwise. This catches faults that
show only at exit (a C++ destructor aborting after "run saved", a rank leaving while its peer still
talks to it), which one CI run hits only now and then.

    python benchmarks/distributed_exit.py --jobs 30 --out dist_exit
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JOB = [
    "--env",
    "synthetic/exponential",
    "--env-kwargs",
    '{"mean_s": 0.002}',
    "--num-envs",
    "8",
    "--num-executors",
    "2",
    "--alpha",
    "32",
    "--total-steps",
    str(8 * 32 * 40),
    "--checkpoint-every",
    "1000",
    "--no-progress",
    "--seed",
    "4",
]


def run_job(run_dir: Path, timeout_s: float) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "htsrl",
        "train",
        *JOB,
        "--run-dir",
        str(run_dir),
    ]
    t0 = time.monotonic()
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
        code, err = out.returncode, out.stderr
    except subprocess.TimeoutExpired as e:
        code, err = (
            None,
            (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or ""),
        )
    saved = err.count("run saved in")
    return {
        "exit_code": code,
        "seconds": round(time.monotonic() - t0, 1),
        "ranks_saved": saved,
        "stderr_tail": "" if code == 0 else err[-2000:],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=30)
    p.add_argument("--timeout-s", type=float, default=300.0)
    p.add_argument("--out", default="dist_exit")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="htsrl-dist-exit-") as tmp:
        for j in range(args.jobs):
            r = run_job(Path(tmp) / f"job{j}", args.timeout_s)
            results.append(r)
            status = "ok" if r["exit_code"] == 0 else f"FAILED (exit {r['exit_code']})"
            print(
                f"job {j + 1:3d}/{args.jobs}: {status} in {r['seconds']} s, ranks saved {r['ranks_saved']}", flush=True
            )
            if r["exit_code"] != 0:
                print("  " + r["stderr_tail"].strip().replace("\n", "\n  ")[-1500:], flush=True)
    failures = sum(r["exit_code"] != 0 for r in results)
    summary = {"jobs": args.jobs, "failures": failures, "job": JOB, "results": results}
    (out / "distributed_exit.json").write_text(json.dumps(summary, indent=2))
    print(f"{args.jobs - failures} of {args.jobs} jobs exited 0; {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
