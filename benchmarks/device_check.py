"""The body of device_check.sh: determinism matrix on the device, then the bench tables."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch


def train(args: list[str], run_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "htsrl", "train", "--no-progress", "--overwrite", "--run-dir", str(run_dir), *args]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return json.loads((run_dir / "summary.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--tiny", action="store_true", help="seconds-long version (CI)")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    info = {
        "device": device,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
    }
    print(f"device check on {info}", flush=True)

    # 1. Determinism matrix on the device: learner on `device` with CPU actors (forked), then with the
    #    actors on `device` too (spawned; on CPU: spawned CPU actors, which must equal the forked ones)
    envs = [("CartPole-v1", ["--num-envs", "8", "--alpha", "32", "--total-steps", str(8 * 32 * (3 if a.tiny else 20))])]
    if not a.tiny:
        envs.append(("ALE/Breakout-v5", ["--num-envs", "8", "--alpha", "32", "--total-steps", str(8 * 32 * 8)]))
    layouts = [(1, 1), (2, 2)] if a.tiny else list(itertools.product([1, 2, 4], [1, 2, 3]))
    actor_layouts = [(2, 1)] if a.tiny else [(2, 1), (2, 2), (4, 3)]
    spawned = ["--actor-device", device, "--start-method", "spawn"]
    matrix = {}
    for env, extra in envs:
        for actors, runs in (
            ("cpu-actors", [(e, act, []) for e, act in layouts]),
            (f"spawned-{device}-actors", [(e, act, spawned) for e, act in actor_layouts]),
        ):
            shas = {}
            for e, act, flags in runs:
                s = train(
                    [
                        "--env",
                        env,
                        "--device",
                        device,
                        "--num-executors",
                        str(e),
                        "--num-actors",
                        str(act),
                        *flags,
                        *extra,
                    ],
                    out / "runs" / f"{env.replace('/', '-')}_{actors}_{e}x{act}",
                )
                shas[f"{e}x{act}"] = s["params_sha256"]
            if device == "cpu" and actors != "cpu-actors":  # spawned CPU actors: the forked numbers too
                shas["forked"] = matrix[env]["layouts"]["1x1"]
            key = env if actors == "cpu-actors" else f"{env} {actors}"
            matrix[key] = {"layouts": shas, "all_equal": len(set(shas.values())) == 1}
            print(
                f"determinism {key}: {'EQUAL' if matrix[key]['all_equal'] else 'DIFFERENT'} over {len(shas)} layouts",
                flush=True,
            )
    (out / "matrix.json").write_text(json.dumps({**info, "matrix": matrix}, indent=2))

    # 2. Bench: Breakout A2C and PPO, 16 envs, raw / sync / hts (/ sb3 when it imports)
    try:
        import stable_baselines3  # noqa: F401

        modes = "raw,sync,hts,sb3"
    except ImportError:
        modes = "raw,sync,hts"
    cores = os.cpu_count() or 2
    # an executor owns whole groups: 16 envs make 4 groups by default (config.default_envs_per_group), so at
    # most 4 executors (8 would be refused before start on a 16-core machine)
    executors = "2" if a.tiny else str(min(4, max(2, cores // 2)))
    tables = {}
    benches = [
        (algo, steps, modes, [])
        for algo, steps in (("a2c", 16 * 5 * (4 if a.tiny else 600)), ("ppo", 16 * 128 * (3 if a.tiny else 12)))
    ]
    if device == "cuda":  # HTS with the actors' forward on the GPU, beside the rows above (paper's GPU table)
        benches += [(f"{algo}-gpu-actors", steps, "hts", spawned) for algo, steps, _, _ in benches[:2]]
    for name, steps, modes, flags in benches:
        algo = name.split("-")[0]
        bench_dir = out / f"bench_{name}"
        cmd = [
            sys.executable,
            "-m",
            "htsrl",
            "bench",
            "--env",
            "ALE/Breakout-v5",
            "--algo",
            algo,
            "--num-envs",
            "16",
            "--num-executors",
            executors,
            "--num-actors",
            "1" if a.tiny else "2",
            "--device",
            device,
            "--steps",
            str(steps),
            "--reps",
            "1" if a.tiny else "2",
            "--modes",
            modes,
            "--out",
            str(bench_dir),
            *flags,
        ]
        if a.tiny:
            cmd += ["--alpha", "5" if algo == "a2c" else "16", "--epochs", "1"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        print(res.stdout, flush=True)
        if res.returncode != 0:
            raise RuntimeError(f"bench {name} failed:\n{res.stderr[-2000:]}")
        tables[name] = json.loads((bench_dir / "bench.json").read_text())["table"]
    summary = {
        **info,
        "matrix_all_equal": all(m["all_equal"] for m in matrix.values()),
        "bench": tables,
        "wall_s": time.time() - t0,
    }
    (out / "device_check.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "bench"}), flush=True)
    if not summary["matrix_all_equal"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
