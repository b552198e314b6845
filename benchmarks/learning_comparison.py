"""Learning per env step: settings x seeds on one env, same seeds on every side, mean and spread.

Each run is an ordinary ``htsrl train`` in OUT/<setting>__s<seed>; a run that exists and has not
finished is resumed (``--resume``), so a comparison can span several sessions, and a finished one is
only read. The numbers of a run per env step do not depend on timing, so runs may share the CPU.

    python benchmarks/learning_comparison.py --env football/academy_empty_goal_close --total-steps 131072 \\
        --seeds 1 2 3 --setting hts-current="--mode hts --proximal current" \\
        --setting hts-behaviour="--mode hts --proximal behaviour" --setting sync="--mode sync" \\
        --threshold 0.8 --metric charts/mean_score_last_100 --parallel 3 --out lag_football

Prints a table and writes OUT/comparison.json: per setting the mean and spread (min, max) over seeds of
the final value of ``--metric`` (last 100 episodes), the first env step (and wall second) at which it
reached ``--threshold`` (once 100 episodes have ended), and the medians of the lag diagnostics and the
final policy entropy.
``--summarize-only`` reads what is there (partial runs included, marked).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

DIAGNOSTICS = (
    "lag/clipfrac_at_start",
    "lag/kl_behaviour_current",
    "lag/ratio_current_behaviour",
    "lag/weight_clamped",
    "losses/clipfrac",
)


def run_dir(out: Path, setting: str, seed: int) -> Path:
    return out / f"{setting}__s{seed}"


def command(args, setting_flags: str, seed: int, where: Path) -> list[str]:
    """Resume a run that saved a checkpoint; start anew one that did not get that far."""
    base = [sys.executable, "-m", "htsrl", "train"]
    if (where / "checkpoint.pt").exists():
        return [*base, "--resume", str(where), "--no-progress", *shlex.split(args.extra)]
    if where.exists():
        shutil.rmtree(where)
    return [
        *base,
        "--env",
        args.env,
        "--total-steps",
        str(args.total_steps),
        "--seed",
        str(seed),
        "--run-dir",
        str(where),
        "--no-progress",
        *shlex.split(setting_flags),
        *shlex.split(args.extra),
    ]


def _finished(where: Path) -> bool:
    summary = where / "summary.json"
    return summary.exists() and json.loads(summary.read_text())["finished"]


def read(where: Path, metric: str, threshold: float | None) -> dict | None:
    path = where / "progress.csv"
    if not path.is_file():
        return None
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    values = [(int(r["env_steps"]), float(r["wall_time_s"]), float(r[metric])) for r in rows if r.get(metric)]
    # A mean of the last 100 over the first few episodes (short ones end first) is no level reached:
    # the threshold counts once 100 episodes have ended (runs from before charts/episodes: every row).
    full = [
        r.get("charts/episodes", "") in ("", None) or int(float(r["charts/episodes"])) >= 100
        for r in rows
        if r.get(metric)
    ]
    out = {
        "env_steps": int(rows[-1]["env_steps"]),
        "finished": _finished(where),
        "final": values[-1][2] if values else None,
        "first_step_at_threshold": None,
        "first_wall_at_threshold": None,
    }
    if threshold is not None:
        for (step, wall, value), counted in zip(values, full):
            if counted and value >= threshold:
                out["first_step_at_threshold"], out["first_wall_at_threshold"] = step, wall
                break
    for name in DIAGNOSTICS:
        xs = [float(r[name]) for r in rows if r.get(name)]
        out[f"median {name}"] = statistics.median(xs) if xs else None
    entropies = [float(r["losses/entropy"]) for r in rows if r.get("losses/entropy")]
    out["entropy_first"], out["entropy_last"] = (entropies[0], entropies[-1]) if entropies else (None, None)
    sps = [float(r["charts/sps"]) for r in rows if r.get("charts/sps")]
    out["sps"] = sps[-1] if sps else None
    return out


def spread(xs: list) -> dict | None:
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {
        "mean": statistics.fmean(xs),
        "min": min(xs),
        "max": max(xs),
        "n": len(xs),
        "std": statistics.stdev(xs) if len(xs) > 1 else 0.0,
    }


def summarize(args, settings: dict[str, str]) -> dict:
    out = Path(args.out)
    table = {}
    for name in settings:
        runs = {s: read(run_dir(out, name, s), args.metric, args.threshold) for s in args.seeds}
        done = {s: r for s, r in runs.items() if r is not None}
        table[name] = {
            "runs": runs,
            "final": spread([r["final"] for r in done.values() if r["finished"]]),
            "first_step_at_threshold": spread([r["first_step_at_threshold"] for r in done.values()]),
            "reached_threshold": sum(r["first_step_at_threshold"] is not None for r in done.values()),
            "finished": sum(r["finished"] for r in done.values()),
        }
    result = {
        "env": args.env,
        "total_steps": args.total_steps,
        "seeds": args.seeds,
        "metric": args.metric,
        "threshold": args.threshold,
        "settings": settings,
        "table": table,
    }
    (out / "comparison.json").write_text(json.dumps(result, indent=2))
    print(f"\n{args.env}, {args.total_steps} steps, seeds {args.seeds}, {args.metric}")
    print(
        "| setting | finished | final mean (min-max) | steps to reach "
        f"{args.threshold} mean (min-max), reached | per seed: final / steps to threshold / clipfrac at start / "
        "KL / entropy end |"
    )
    print("|---|---|---|---|---|")
    for name, row in table.items():
        f, t = row["final"], row["first_step_at_threshold"]
        fs = f"{f['mean']:.3f} ({f['min']:.3f}-{f['max']:.3f})" if f else "-"
        ts = (
            f"{t['mean']:,.0f} ({t['min']:,}-{t['max']:,}), {row['reached_threshold']}/{len(args.seeds)}"
            if t
            else f"-, 0/{len(args.seeds)}"
        )
        per = []
        for s, r in row["runs"].items():
            if r is None:
                per.append(f"s{s}: -")
                continue
            fmt = lambda x, p=3: "-" if x is None else f"{x:.{p}f}"  # noqa: E731
            mark = "" if r["finished"] else f" (at {r['env_steps']:,})"
            per.append(
                f"s{s}: {fmt(r['final'])}{mark} / {r['first_step_at_threshold'] or '-'} / "
                f"{fmt(r['median lag/clipfrac_at_start'])} / {fmt(r['median lag/kl_behaviour_current'], 4)} / "
                f"{fmt(r['entropy_last'], 2)}"
            )
        print(f"| {name} | {row['finished']}/{len(args.seeds)} | {fs} | {ts} | {'; '.join(per)} |")
    return result


def launch(jobs: list[tuple], parallel: int, logs: Path) -> None:
    """Run ``(label, run folder, args, setting flags, seed)`` jobs, ``parallel`` at a time, each started or
    resumed by ``command``; a finished run is skipped. Each run's output goes to LOGS/<label>.log."""
    queue = [job for job in jobs if not _finished(job[1])]
    running: list[tuple[subprocess.Popen, str]] = []
    while queue or running:
        while queue and len(running) < parallel:
            label, where, args, flags, seed = queue.pop(0)
            log = open(logs / f"{label}.log", "a")
            cmd = command(args, flags, seed, where)
            print(f"start {label}: {shlex.join(cmd[1:])}", flush=True)
            running.append((subprocess.Popen(cmd, stdout=log, stderr=log), label))
        time.sleep(2)
        for proc, label in list(running):
            if proc.poll() is not None:
                running.remove((proc, label))
                print(f"done {label}: exit {proc.returncode}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", required=True)
    p.add_argument("--total-steps", type=int, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument(
        "--setting",
        action="append",
        required=True,
        metavar="NAME=FLAGS",
        help="a named setting and its htsrl train flags; repeat for each side",
    )
    p.add_argument("--extra", default="", help="flags given to every run (e.g. --num-executors 2)")
    p.add_argument("--metric", default="charts/mean_return_last_100")
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--parallel", type=int, default=1, help="runs at a time")
    p.add_argument("--summarize-only", action="store_true")
    p.add_argument("--out", default="learning_comparison")
    args = p.parse_args()
    settings = dict(s.split("=", 1) for s in args.setting)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.summarize_only:
        # seed-major order: the first seeds of every setting finish first
        jobs = [
            (f"{name}__s{seed}", run_dir(out, name, seed), args, settings[name], seed)
            for seed in args.seeds
            for name in settings
        ]
        launch(jobs, args.parallel, out)
    summarize(args, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
