"""Fault-injection soak: N injected faults at random moments, counting hangs (> 30 s), orphan
processes, leaked /dev/shm segments and determinism breaks (final params_sha256 versus a fault-free
run, for every fault that is recoverable or resumable).

    python benchmarks/soak.py --faults 100 --out soak
    python benchmarks/soak.py --envpool --faults 24 --out soak_envpool   # Breakout on EnvPool executors

``--envpool`` soaks the EnvPool backend (Atari Breakout, real envs) with the process-level faults: the
env-level ones need the fault-injection env.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

BASE = [
    "--env",
    "htsrl/Faulty-v0",
    "--num-envs",
    "4",
    "--alpha",
    "16",
    "--epochs",
    "1",
    "--minibatches",
    "1",
    "--total-steps",
    str(4 * 16 * 40),
    "--checkpoint-every",
    "4",
    "--no-progress",
    "--seed",
    "5",
]
KINDS = (
    "kill_executor",
    "kill_actor",
    "env_raise_once",
    "env_segfault_once",
    "kill_main",
    "ctrl_c",
    "hang_once",
    "nan_reward",
)
QUIET = {"fail_at": -1, "sleep_s": 0.002}  # the fault-injection env, no fault
ENVPOOL_BASE = ["--env", "ALE/Breakout-v5", "--env-backend", "envpool", *BASE[2:]]
ENVPOOL_KINDS = ("kill_executor", "kill_actor", "kill_main", "ctrl_c")
HANG_S = 30.0


def cli(args, run_dir, env_kwargs) -> subprocess.Popen:
    """``env_kwargs`` None: the EnvPool soak (no fault-injection env)."""
    base = BASE if env_kwargs is not None else ENVPOOL_BASE
    kw = ["--env-kwargs", json.dumps(env_kwargs)] if env_kwargs is not None else []
    cmd = [sys.executable, "-m", "htsrl", "train", *base, "--run-dir", str(run_dir), *kw, *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc) -> tuple[int | None, str, bool]:
    try:
        _, err = proc.communicate(timeout=HANG_S)
        return proc.returncode, err, False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        return None, err, True


def pids_of(run_dir: Path, timeout=20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads((run_dir / "pids.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.05)
    return {}


def alive(pids) -> list[int]:
    out = []
    for p in pids:
        try:
            if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def summary_field(run_dir: Path, key: str):
    try:
        return json.loads((run_dir / "summary.json").read_text())[key]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None


def sha(run_dir: Path) -> str | None:
    return summary_field(run_dir, "params_sha256")


def trial(kind: str, run_dir: Path, rng: random.Random, envpool: bool = False) -> dict:
    kwargs = None if envpool else dict(QUIET)
    args: list[str] = []
    fail_at = rng.randrange(20, 600)
    if kind in ("env_raise_once", "env_segfault_once", "hang_once"):
        kwargs.update(
            fail_at=fail_at,
            once_file=str(run_dir / "fired"),
            fault={"env_raise_once": "raise", "env_segfault_once": "segfault", "hang_once": "hang"}[kind],
        )
        if kind == "hang_once":
            args = ["--watchdog-s", "2"]
    if kind == "nan_reward":
        kwargs.update(fail_at=fail_at, fault="nan_reward")
    proc = cli(args, run_dir, kwargs)
    pids = pids_of(run_dir)
    seen = set(pids.values())
    if kind in ("kill_executor", "kill_actor", "kill_main", "ctrl_c"):
        time.sleep(rng.uniform(0.2, 2.5))
        victim = {"kill_executor": f"executor {rng.randrange(2)}", "kill_actor": "actor 0", "kill_main": "main"}.get(
            kind
        )
        try:
            if kind == "ctrl_c":
                os.killpg(proc.pid, signal.SIGINT)
            else:
                os.kill(pids[victim], signal.SIGKILL)
        except (ProcessLookupError, KeyError):
            pass
    code, err, hung = finish(proc)
    seen |= set(pids_of(run_dir, timeout=0.1).values())
    resumed = False
    if kind in ("kill_main", "ctrl_c", "hang_once") and not hung and code != 0:
        resumed = True
        proc = subprocess.Popen(
            [sys.executable, "-m", "htsrl", "train", "--resume", str(run_dir), "--no-progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        code, err2, hung = finish(proc)
        err += err2
        if code == 2 and "no checkpoint at" in err2:  # the fault came before the first checkpoint:
            proc = cli(args, run_dir, kwargs)  # what a user does then is start again
            code, err3, hung = finish(proc)
            err += err3
        seen |= set(pids_of(run_dir, timeout=0.1).values())
    time.sleep(0.3)
    return {
        "kind": kind,
        "exit": code,
        "hung": hung,
        "orphans": alive(seen),
        "resumed": resumed,
        "restarts": summary_field(run_dir, "restarts"),
        "sha": sha(run_dir),
        "message": err.strip().splitlines()[-1:] if err.strip() else [],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--faults", type=int, default=100)
    p.add_argument("--out", default="soak")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--envpool", action="store_true", help="Breakout on EnvPool executors, process-level faults")
    args = p.parse_args()
    kinds = ENVPOOL_KINDS if args.envpool else KINDS
    ref_kwargs = None if args.envpool else QUIET
    rng = random.Random(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="htsrl-soak-"))
    shm_before = set(os.listdir("/dev/shm"))
    ref_dir = work / "reference"
    proc = cli([], ref_dir, ref_kwargs)
    finish(proc)
    reference = sha(ref_dir)
    assert reference, "the fault-free reference run failed"
    results = []
    for i in range(args.faults):
        kind = kinds[i % len(kinds)]
        r = trial(kind, work / f"t{i:03d}", rng, args.envpool)
        recoverable = kind != "nan_reward"
        r["determinism_break"] = recoverable and r["sha"] != reference
        r["clean_stop"] = (not recoverable) and r["exit"] == 1
        results.append(r)
        print(
            f"{i:3d} {kind:<18} exit {r['exit']} hung {r['hung']} orphans {len(r['orphans'])} "
            f"restarts {r['restarts']} resumed {r['resumed']} "
            f"sha {'ok' if r['sha'] == reference else r['sha'] and r['sha'][:8]}",
            flush=True,
        )
    leaked = sorted(set(os.listdir("/dev/shm")) - shm_before)
    table = {}
    for kind in kinds:
        mine = [r for r in results if r["kind"] == kind]
        table[kind] = {
            "faults": len(mine),
            "hangs": sum(r["hung"] for r in mine),
            "orphans": sum(len(r["orphans"]) for r in mine),
            "determinism_breaks": sum(r["determinism_break"] for r in mine),
            "exit_codes": dict(Counter(str(r["exit"]) for r in mine)),
        }
    total = {k: sum(v[k] for v in table.values()) for k in ("faults", "hangs", "orphans", "determinism_breaks")}
    total["leaked_shm_segments"] = len(leaked)
    summary = {"reference_sha256": reference, "per_kind": table, "total": total, "leaked": leaked, "runs": results}
    (out / "soak.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{'fault':<18} {'n':>3} {'hangs':>5} {'orphans':>7} {'det.breaks':>10}  exit codes")
    for kind, v in table.items():
        print(
            f"{kind:<18} {v['faults']:>3} {v['hangs']:>5} {v['orphans']:>7} {v['determinism_breaks']:>10}  "
            f"{v['exit_codes']}"
        )
    print(
        f"{'total':<18} {total['faults']:>3} {total['hangs']:>5} {total['orphans']:>7} "
        f"{total['determinism_breaks']:>10}  leaked /dev/shm segments: {len(leaked)}"
    )


if __name__ == "__main__":
    main()
