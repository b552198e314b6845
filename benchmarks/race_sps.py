"""Steps/s of CleanRL's ``ppo_atari_envpool.py`` and of htsrl settings on one Atari game, interleaved on a
quiet machine: the divisor that turns steps-to-score (CleanRL's published curve, htsrl's measured one) into
wall time here (benchmarks/atari_curves.py --cleanrl-sps, BENCHMARKS.md "the race to a score").

    python benchmarks/race_sps.py --cleanrl DIR --game Pong --steps 40960 --reps 3 --out race_sps.json
    python benchmarks/race_sps.py --cleanrl DIR --game Pong --setting e2lr5="--epochs 2 --lr 5e-4"

DIR holds CleanRL's script, unmodified, and its venv (``DIR/ppo_atari_envpool.py``, ``DIR/venv``; envpool
0.8.4 with gym 0.23.1, which still have the API it uses); without ``--cleanrl`` only htsrl's sides run.
htsrl's defaults always run; each ``--setting NAME=FLAGS`` adds a side with those ``htsrl train`` flags.
CleanRL and the defaults both run 8 envs x 128 steps (CleanRL's defaults, htsrl's atari-ppo preset) on
EnvPool. CleanRL's own "SPS:" line counts every step from the start of its loop (after its envs are made);
htsrl's rate counts the steps between its first and last progress.csv rows over the wall time between them
(so its start-up, and its first window, are left out on its side as CleanRL's start-up is on CleanRL's).
Never run it beside a learning run.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shlex
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


def htsrl_sps(game: str, steps: int, flags: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "htsrl", "train", "--env", f"ALE/{game}-v5", "--env-backend", "envpool"]
        cmd += ["--total-steps", str(steps), "--run-dir", f"{tmp}/run", "--no-progress", *flags]
        subprocess.run(cmd, check=True, capture_output=True)
        with open(f"{tmp}/run/progress.csv") as f:
            rows = list(csv.DictReader(f))
    first, last = rows[0], rows[-1]
    return (int(last["env_steps"]) - int(first["env_steps"])) / (
        float(last["wall_time_s"]) - float(first["wall_time_s"])
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cleanrl", type=Path, help="folder with ppo_atari_envpool.py and venv/ (else htsrl only)")
    p.add_argument("--setting", action="append", default=[], metavar="NAME=FLAGS", help="an htsrl side (repeat)")
    p.add_argument("--game", default="Pong")
    p.add_argument("--steps", type=int, default=40_960)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", default="race_sps.json")
    args = p.parse_args()
    sides: dict[str, list[str]] = {"htsrl": []}  # "htsrl": the defaults, the name the first results used
    for item in args.setting:
        name, sep, flags = item.partition("=")
        if not sep or not name or name in sides or name == "cleanrl":
            p.error(f"--setting wants a new NAME=FLAGS, got {item!r}")
        sides[name] = shlex.split(flags)
    rows = []
    for rep in range(args.reps):  # interleaved, so a drift of the machine falls on every side
        t0 = time.time()
        row: dict = {"rep": rep}
        if args.cleanrl:
            row["cleanrl_sps"] = cleanrl_sps(args.cleanrl, args.game, args.steps)
        for name, flags in sides.items():
            row[f"{name}_sps"] = htsrl_sps(args.game, args.steps, flags)
            if args.cleanrl:
                row[f"{name}_ratio"] = row[f"{name}_sps"] / row["cleanrl_sps"]
        row["ratio"] = row.get("htsrl_ratio")  # the key the first results used
        rows.append(row)
        rates = ", ".join(f"{k[:-4]} {v:.0f}" for k, v in row.items() if k.endswith("_sps"))
        print(f"rep {rep}: steps/s {rates} ({time.time() - t0:.0f} s)", flush=True)
    keys = [k for k in rows[0] if k != "rep" and rows[0][k] is not None]
    med = {k: statistics.median(r[k] for r in rows) for k in keys}
    spread = {k: [min(r[k] for r in rows), max(r[k] for r in rows)] for k in keys}
    for k in keys:
        print(f"median {k}: {med[k]:.2f} (range {spread[k][0]:.2f}-{spread[k][1]:.2f})")
    settings = {name: " ".join(flags) for name, flags in sides.items()}
    result = {"game": args.game, "steps": args.steps, "settings": settings, "reps": rows}
    result |= {"median": med, "range": spread}
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
