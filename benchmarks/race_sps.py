"""Steps/s of CleanRL's ``ppo_atari_envpool.py`` and of htsrl's defaults on one Atari game, interleaved on a
quiet machine: the divisor that turns steps-to-score (CleanRL's published curve, htsrl's measured one) into
wall time here (benchmarks/atari_curves.py --cleanrl-sps, BENCHMARKS.md "the race to a score").

    python benchmarks/race_sps.py --cleanrl DIR --game Pong --steps 40960 --reps 3 --out race_sps.json

DIR holds CleanRL's script, unmodified, and its venv (``DIR/ppo_atari_envpool.py``, ``DIR/venv``; envpool
0.8.4 with gym 0.23.1, which still have the API it uses). Both run 8 envs x 128 steps (CleanRL's defaults,
htsrl's atari-ppo preset) on EnvPool. CleanRL's own "SPS:" line counts every step from the start of its
loop (after its envs are made); htsrl's rate is every step over the wall time of its last progress.csv row,
which counts from before its env processes start: if anything, htsrl's side is the slower. Never run it
beside a learning run.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cleanrl_sps(folder: Path, game: str, steps: int) -> float:
    cmd = [str(folder / "venv" / "bin" / "python"), "ppo_atari_envpool.py", "--env-id", f"{game}-v5"]
    cmd += ["--num-envs", "8", "--total-timesteps", str(steps), "--seed", "1"]
    with tempfile.TemporaryDirectory() as tmp:  # its runs/ (TensorBoard) go to a scratch folder
        out = subprocess.run(
            cmd, cwd=folder, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": tmp}
        )
    if out.returncode:
        raise SystemExit(f"CleanRL failed: {out.stderr[-2000:]}")
    return float(re.findall(r"SPS: (\d+)", out.stdout)[-1])  # its last: global_step / time since the loop began


def htsrl_sps(game: str, steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "htsrl", "train", "--env", f"ALE/{game}-v5", "--env-backend", "envpool"]
        cmd += ["--total-steps", str(steps), "--run-dir", f"{tmp}/run", "--no-progress"]
        subprocess.run(cmd, check=True, capture_output=True)
        with open(f"{tmp}/run/progress.csv") as f:
            rows = list(csv.DictReader(f))
    first, last = rows[0], rows[-1]
    return (int(last["env_steps"]) - int(first["env_steps"])) / (
        float(last["wall_time_s"]) - float(first["wall_time_s"])
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cleanrl", required=True, type=Path, help="folder with ppo_atari_envpool.py and venv/")
    p.add_argument("--game", default="Pong")
    p.add_argument("--steps", type=int, default=40_960)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", default="race_sps.json")
    args = p.parse_args()
    rows = []
    for rep in range(args.reps):  # interleaved, so a drift of the machine falls on both sides
        t0 = time.time()
        c = cleanrl_sps(args.cleanrl, args.game, args.steps)
        h = htsrl_sps(args.game, args.steps)
        rows.append({"rep": rep, "cleanrl_sps": c, "htsrl_sps": h, "ratio": h / c})
        print(f"rep {rep}: CleanRL {c:.0f} steps/s, htsrl {h:.0f} steps/s, {h / c:.2f}x ({time.time() - t0:.0f} s)")
    med = {k: statistics.median(r[k] for r in rows) for k in ("cleanrl_sps", "htsrl_sps", "ratio")}
    spread = {k: [min(r[k] for r in rows), max(r[k] for r in rows)] for k in med}
    print(
        f"median: CleanRL {med['cleanrl_sps']:.0f}, htsrl {med['htsrl_sps']:.0f} steps/s, {med['ratio']:.2f}x "
        f"(range {spread['ratio'][0]:.2f}-{spread['ratio'][1]:.2f})"
    )
    result = {"game": args.game, "steps": args.steps, "reps": rows, "median": med, "range": spread}
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
