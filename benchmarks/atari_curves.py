"""Atari learning curves at a published budget, beside CleanRL's, and the race to a score on this machine.

    python benchmarks/atari_curves.py --games Pong --seeds 1 2 3 --total-steps 3000000 --parallel 2
    python benchmarks/atari_curves.py --games Pong --seeds 1 --total-steps 3000000 \\
        --setting control="--mode sync --precision fp32 --learner-shards 1"
    python benchmarks/atari_curves.py --games Pong Breakout --summarize-only --cleanrl-sps 437

Each run is an ordinary ``htsrl train --env ALE/<Game>-v5 --env-backend envpool`` with the defaults (the
atari-ppo preset) in OUT/<game>__s<seed>, or OUT/<game>-<setting>__s<seed> for a named setting; a run that
saved a checkpoint and has not finished is resumed (``--resume``: bitwise the run it continues), a finished
one is only read (benchmarks/learning_comparison.py starts them). Runs may share the CPU: a run's numbers
per env step do not depend on timing; its wall clock does, so say what shared the machine.

Writes into RESULTS (small files, to commit; never the checkpoints):
- per run ``<run>.curve.csv``: agent steps, wall seconds, the mean full-game score of the last 100 games
  (Atari's ``charts/mean_return_last_100``: the true score, all lives, unclipped) and games ended;
  ``<run>.summary.json``, ``<run>.config.json``, and ``<run>.resources.csv`` (the ``resources/*`` columns);
- per game ``<game>.png``: every seed, their mean and min-max band against agent steps with CleanRL's
  published points on the same axes, and against wall-clock hours on this machine (CleanRL's points too
  when ``--cleanrl-sps``, its steps/s measured here, is given);
- ``curves.json`` and a printed table: per run the score at each published budget, the agent steps and
  wall time at which it first reached each race score (counted once 100 games have ended, so a lucky first
  few games are no level reached), and private memory in the last tenth of the run against 10-20% of it.

A run whose folder is not in OUT (made on another machine: only its small outputs were committed) is read
from its exported files in the first ``--read`` folder that has them, so a plot can set committed runs
beside new ones, or be drawn again from the repository alone:

    python benchmarks/atari_curves.py --games Pong --seeds 1 2 3 --summarize-only \\
        --setting e1mb8= --setting e2= --setting e2lr5= --results benchmarks/results/atari_curves/pong_screen \\
        --read benchmarks/results/atari_curves --read benchmarks/results/atari_curves/pong_screen
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np

from htsrl.monitor import LAST_EPISODES

_spec = importlib.util.spec_from_file_location(
    "learning_comparison", Path(__file__).with_name("learning_comparison.py")
)
learning_comparison = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(learning_comparison)

SCORE = "charts/mean_return_last_100"
BUDGETS = (1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000)
# CleanRL's published PPO curves: the mean episodic return of 3 seeds, read off the learning-curve plots of
# its documentation (docs.cleanrl.dev, rl-algorithms/ppo: "ppo_atari_envpool.py" and "ppo_atari.py",
# experiment results) at each budget, about +-1 point on Pong and +-5% on Breakout; the 10M point is the
# table's final figure. Agent steps (one step = 4 frames), 8 envs x 128 steps, lr annealed over 10M.
CLEANRL = {
    "Pong": {
        "CleanRL ppo_atari_envpool (Pong-v5)": (-11.4, 10.8, 17.4, 19.7, 20.45),
        "CleanRL ppo_atari (PongNoFrameskip-v4)": (-8.4, 12.9, 17.2, 19.6, 20.36),
    },
    "Breakout": {
        "CleanRL ppo_atari_envpool (Breakout-v5)": (17, 38, 70, 169, 211),
        "CleanRL ppo_atari (BreakoutNoFrameskip-v4)": (20, 46, 102, 192, 414.66),
    },
}
CLEANRL_ENVPOOL = {game: next(iter(curves)) for game, curves in CLEANRL.items()}  # the one run here for SPS
RACE = {"Pong": (0, 10, 17, 18, 20), "Breakout": (30, 70, 100)}
MIN_GAMES = LAST_EPISODES  # a last-100 mean counts as a level reached once 100 games have ended


def run_name(game: str, setting: str, seed: int) -> str:
    label = game.lower() if setting == "defaults" else f"{game.lower()}-{setting}"
    return f"{label}__s{seed}"


def run_file(where: Path, name: str) -> Path:
    """A run's file: inside its run folder, or exported beside it as ``<run>.<name>`` (a results folder)."""
    return where / name if where.is_dir() else where.parent / f"{where.name}.{name}"


def read_curve(where: Path) -> dict | None:
    """(agent steps, wall s, score, games) of every row with a score, and the resources/* rows: from the run
    folder's progress.csv, or from the files ``export_run`` wrote when only those are here (``--read``)."""
    if not where.is_dir():
        return read_exported(where)
    path = where / "progress.csv"
    if not path.is_file():
        return None
    with open(path) as f:
        rows = list(csv.DictReader(f))
    curve = [
        (int(r["env_steps"]), float(r["wall_time_s"]), float(r[SCORE]), int(float(r["charts/episodes"])))
        for r in rows
        if r.get(SCORE)
    ]
    resources = [
        {"env_steps": r["env_steps"], **{k: v for k, v in r.items() if k.startswith("resources/")}}
        for r in rows
        if r.get("resources/open_fds")
    ]
    sampled_outside = where.parent / f"{where.name}.resources.csv"
    if not resources and sampled_outside.is_file():  # a run from before resources/* were sampled in-run,
        with open(sampled_outside) as f:  # sampled every 30 s by htsrl.resources.sample from another process
            resources = list(csv.DictReader(f))
    return {"curve": curve, "resources": resources, "env_steps": int(rows[-1]["env_steps"]) if rows else 0}


def read_exported(where: Path) -> dict | None:
    """``read_curve`` of a run from the files ``export_run`` wrote for it (``<run>.curve.csv``, ...)."""
    path = run_file(where, "curve.csv")
    if not path.is_file():
        return None
    with open(path) as f:
        curve = [(int(r[0]), float(r[1]), float(r[2]), int(r[3])) for r in list(csv.reader(f))[1:]]
    resources = []
    if run_file(where, "resources.csv").is_file():
        with open(run_file(where, "resources.csv")) as f:
            resources = list(csv.DictReader(f))
    summary = run_file(where, "summary.json")
    done = json.loads(summary.read_text()).get("env_steps", 0) if summary.is_file() else 0
    steps = [int(r["env_steps"]) for r in resources] + [c[0] for c in curve] + [done]
    return {"curve": curve, "resources": resources, "env_steps": max(steps)}


def find_run(name: str, out: Path, read: list[Path]) -> Path:
    """The run folder in OUT; else the first results folder in ``read`` with the run's exported curve (a
    run whose folder, checkpoints included, stayed on another machine); else the folder a run would have."""
    for folder in read:
        if not (out / name).is_dir() and (folder / f"{name}.curve.csv").is_file():
            return folder / name
    return out / name


def first_reach(curve: list[tuple], score: float) -> tuple[int, float] | None:
    for steps, wall, value, games in curve:
        if games >= MIN_GAMES and value >= score:
            return steps, wall
    return None


def score_at(curve: list[tuple], steps: int) -> float | None:
    """The last-100 mean at the last row at or before ``steps`` (None past the run's end)."""
    before = [value for s, _, value, _ in curve if s <= steps]
    return before[-1] if before and curve[-1][0] >= steps else None


def cleanrl_steps_to(game: str, score: float) -> float | None:
    """Agent steps at which CleanRL's envpool curve first reaches ``score``, linear between its points."""
    points = [(0, None), *zip(BUDGETS, CLEANRL[game][CLEANRL_ENVPOOL[game]])]
    for (s0, v0), (s1, v1) in zip(points[1:], points[2:]):
        if v0 >= score:
            return float(s0)
        if v1 >= score:
            return s0 + (score - v0) / (v1 - v0) * (s1 - s0)
    return None


def growth(resources: list[dict], total_steps: int) -> dict | None:
    """Whether a run leaks: the median private memory of the samples in the last tenth of the run against
    those from 10% to 20% of it (medians: a checkpoint being written is a brief peak, not a trend, and the
    peak is reported apart), and the range of shared memory and descriptors after the first 10%."""
    if not resources:
        return None
    steps = np.array([int(r["env_steps"]) for r in resources])
    last = steps.max()

    def col(name: str, lo: float, hi: float) -> list[float]:
        return [float(r[name]) for r, s in zip(resources, steps) if lo <= s <= hi and r.get(name)]

    early = col("resources/private_mb", 0.1 * total_steps, 0.2 * total_steps)
    late = col("resources/private_mb", 0.9 * last, last)
    if not early or not late or last < 0.3 * total_steps:
        return None
    after = 0.1 * total_steps
    shm, fds = col("resources/shm_mb", after, last), col("resources/open_fds", after, last)
    return {
        "private_mb_10_20pct": statistics.median(early),
        "private_mb_last_10pct": statistics.median(late),
        "private_growth_pct": 100 * (statistics.median(late) / statistics.median(early) - 1),
        "private_mb_peak": max(col("resources/private_mb", after, last)),
        "shm_mb_min_max": [min(shm), max(shm)],
        "open_fds_min_max": [min(fds), max(fds)],
    }


def summarize_run(where: Path, game: str) -> dict | None:
    got = read_curve(where)
    if got is None or not got["curve"]:
        return None
    curve = got["curve"]
    summary_path = run_file(where, "summary.json")
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    total = json.loads(run_file(where, "config.json").read_text())["total_steps"]
    race = {}
    for score in RACE.get(game, ()):
        hit = first_reach(curve, score)
        race[str(score)] = {"steps": hit[0], "wall_s": hit[1]} if hit else None
    return {
        "env_steps": got["env_steps"],
        "finished": bool(summary.get("finished")),
        "final": curve[-1][2],
        "games": curve[-1][3],
        "wall_s": curve[-1][1],
        "at_budget": {str(b): score_at(curve, b) for b in BUDGETS},
        "race": race,
        "resources": growth(got["resources"], total),
    }


def export_run(where: Path, results: Path) -> None:
    """The run's small outputs into RESULTS, named after the run."""
    got = read_curve(where)
    if got is None or not where.is_dir():  # read from a results folder (--read): exported already
        return
    with open(results / f"{where.name}.curve.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["agent_steps", "wall_s", "score_last_100", "games"])
        w.writerows(got["curve"])
    if got["resources"]:
        with open(results / f"{where.name}.resources.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(got["resources"][0]), restval="")
            w.writeheader()
            w.writerows(got["resources"])
    for name in ("summary.json", "config.json"):
        if run_file(where, name).is_file():
            shutil.copyfile(run_file(where, name), results / f"{where.name}.{name}")


def run_cpu(where: Path) -> str | None:
    """The CPU that clocked a run's hours (``summary.json``'s ``machines``), or None where that is not known:
    a summary from before htsrl wrote it, or a resumed run (the summary names its last invocation's only)."""
    path = run_file(where, "summary.json")
    summary = json.loads(path.read_text()) if path.is_file() else {}
    machines = summary.get("machines")
    if not machines or summary.get("resumed_at_steps") is not None or not machines[0].get("cpu"):
        return None
    kind = machines[0].get("cpu_kind")
    return f"{machines[0]['cpu']} ({kind})" if kind else machines[0]["cpu"]


def machine_said(cpus: set[str | None]) -> str:
    """Where the hours were clocked, for the hours panel's legend: one CPU, several, or not recorded."""
    known = cpus - {None}
    if not known:
        return ""
    if None in cpus:
        return ", CPU not recorded for every seed"
    return f", on {known.pop()}" if len(known) == 1 else ", on several CPUs"


def plot_game(
    game: str, runs: dict[str, dict[int, Path]], cleanrl_sps: float | None, out: Path, htsrl_sps: float | None = None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    fig, (by_steps, by_hours) = plt.subplots(1, 2, figsize=(12, 4.8))
    hours_shown = 0.0
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for setting, seeds in runs.items():
        read = {s: read_curve(w) for s, w in seeds.items()}  # each progress.csv read once
        curves = {s: r["curve"] for s, r in read.items() if r and r["curve"]}
        if not curves:
            continue
        color = next(colors)
        label = f"htsrl {setting}" + (" (atari-ppo, EnvPool)" if setting == "defaults" else "")
        shared = ", as run (2 runs shared the cores)" if htsrl_sps else ""
        shared += machine_said({run_cpu(w) for s, w in seeds.items() if s in curves})
        for ax, x, scale in ((by_steps, 0, 1.0), (by_hours, 1, 1 / 3600)):
            for c in curves.values():
                ax.plot([r[x] * scale for r in c], [r[2] for r in c], color=color, alpha=0.35, lw=0.8)
            end = min(c[-1][x] for c in curves.values())
            grid = np.linspace(max(c[0][x] for c in curves.values()), end, 300)
            ys = np.stack([np.interp(grid, [r[x] for r in c], [r[2] for r in c]) for c in curves.values()])
            who = f"mean of {len(curves)} seeds" if len(curves) > 1 else f"seed {next(iter(curves))}"
            shown = f"{label}, {who}" + (shared if ax is by_hours else "")
            ax.plot(grid * scale, ys.mean(0), color=color, lw=2, label=shown)
            if ax is by_steps:  # the mean per step, which --htsrl-sps also draws against hours below
                steps_grid, steps_mean = grid, ys.mean(0)
            if len(curves) > 1:  # the band on the same grid as the mean it surrounds
                ax.fill_between(grid * scale, ys.min(0), ys.max(0), color=color, alpha=0.15)
            if ax is by_hours:
                hours_shown = max(hours_shown, max(c[-1][1] for c in curves.values()) / 3600)
        if htsrl_sps and setting == "defaults":  # the same curve at the steps/s it runs at alone, as CleanRL's is
            by_hours.plot(
                steps_grid / htsrl_sps / 3600,
                steps_mean,
                color=color,
                ls="--",
                lw=1.5,
                label=f"{label}, at {htsrl_sps:.0f} steps/s measured here alone",
            )
    for (name, values), marker in zip(CLEANRL.get(game, {}).items(), ("o", "s")):
        by_steps.plot(BUDGETS, values, marker=marker, ls=":", color="k", alpha=0.7, label=name + ", published")
        if cleanrl_sps and name == CLEANRL_ENVPOOL[game]:
            hours = [b / cleanrl_sps / 3600 for b in BUDGETS]
            by_hours.plot(
                hours,
                values,
                marker=marker,
                ls=":",
                color="k",
                alpha=0.7,
                label=f"{name} at {cleanrl_sps:.0f} steps/s measured here",
            )
    by_steps.set_xlabel("agent steps (x4 frames)")
    by_steps.xaxis.set_major_formatter(EngFormatter(sep=""))
    by_hours.set_xlabel("wall-clock hours on this machine (2 cores)")
    if cleanrl_sps:  # up to CleanRL's 3M point or a little past htsrl's runs: its 10M would squash them
        by_hours.set_xlim(0, max(1.15 * hours_shown, BUDGETS[2] / cleanrl_sps / 3600 * 1.05))
    for ax in (by_steps, by_hours):
        ax.set_ylabel("mean score, last 100 full games")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{game}-v5, PPO: htsrl defaults against CleanRL's published curves")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def merged(path: Path, result: dict) -> dict:
    """``result`` over the curves.json already there: the runs this invocation read replace theirs, the
    others (other games, settings or seeds) stay, so a run summarized alone never drops its neighbours."""
    if not path.is_file():
        return result
    old = json.loads(path.read_text())
    old_settings, games = old.get("settings", {}), old.get("games", {})
    for game, settings in result["games"].items():
        for setting, seeds in settings.items():
            found = {str(k): v for k, v in seeds.items() if v is not None}  # a run not found keeps its entry
            games.setdefault(game, {}).setdefault(setting, {}).update(found)
    seeds = sorted({int(s) for g in games.values() for runs in g.values() for s in runs})
    given = {k: v for k, v in result.items() if v is not None}  # a speed not given keeps the one there
    return {
        **old,
        **given,
        "seeds": seeds,
        # a setting named without its flags (--summarize-only --setting e2=) keeps the flags recorded there
        "settings": {**old_settings, **{k: v for k, v in result["settings"].items() if v or k not in old_settings}},
        "games": games,
    }


def table(result: dict) -> None:
    for game, settings in result["games"].items():
        print(f"\n{game}-v5 (score = mean of the last 100 full games; race counted once 100 games ended)")
        race = RACE.get(game, ())
        head = " | ".join(f"{b // 1_000_000}M" for b in BUDGETS[:3])
        races = " | ".join(f"to {s}: steps, min" for s in race)
        print(f"| run | steps done | {head} | {races} | private MB at 10-20% -> last 10% (growth; peak) | fds |")
        print("|---|---|" + "---|" * (3 + len(race) + 2))
        for setting, seeds in settings.items():
            for seed, r in seeds.items():
                if r is None:
                    continue
                at = " | ".join(
                    "-" if r["at_budget"][str(b)] is None else f"{r['at_budget'][str(b)]:.2f}" for b in BUDGETS[:3]
                )

                def hit(score, r=r) -> str:
                    h = r["race"][str(score)]
                    if h is None:
                        return "-"
                    alone = f" ({h['steps'] / result['htsrl_sps'] / 60:.0f} alone)" if result["htsrl_sps"] else ""
                    return f"{h['steps'] / 1e6:.2f}M, {h['wall_s'] / 60:.0f}{alone}"

                hits = " | ".join(hit(s) for s in race)
                g = r["resources"]
                mem = "-"
                if g:
                    mem = f"{g['private_mb_10_20pct']:.0f} -> {g['private_mb_last_10pct']:.0f} "
                    mem += f"({g['private_growth_pct']:+.1f}%; peak {g['private_mb_peak']:.0f})"
                fds = "{:.0f}-{:.0f}".format(*g["open_fds_min_max"]) if g else "-"
                done = f"{r['env_steps']:,}{'' if r['finished'] else ' (going)'}"
                print(f"| {setting} s{seed} | {done} | {at} | {hits} | {mem} | {fds} |")
        if result["cleanrl_sps"] and game in RACE:
            print(f"CleanRL ppo_atari_envpool at {result['cleanrl_sps']:.0f} steps/s here, from its published curve:")
            for s in race:
                steps = cleanrl_steps_to(game, s)
                if steps is not None:
                    print(f"  to {s}: {steps / 1e6:.2f}M steps, {steps / result['cleanrl_sps'] / 60:.0f} min")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--games", nargs="+", default=["Pong"], help="Atari games (ALE/<Game>-v5)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--total-steps", type=int, default=3_000_000, help="agent steps per run")
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="a named setting beside the defaults, with its htsrl train flags (repeat)",
    )
    p.add_argument("--no-defaults", action="store_true", help="run only the --setting runs")
    p.add_argument("--extra", default="", help="flags for every run (e.g. --stop-at-steps 1500000)")
    p.add_argument("--parallel", type=int, default=2, help="runs at a time (two fit 2 cores)")
    p.add_argument("--summarize-only", action="store_true", help="read what is there, start nothing")
    p.add_argument("--cleanrl-sps", type=float, default=None, help="CleanRL's ppo_atari_envpool steps/s measured here")
    p.add_argument(
        "--htsrl-sps", type=float, default=None, help="htsrl's steps/s measured here alone (benchmarks/race_sps.py)"
    )
    p.add_argument("--out", default="runs/atari_curves", help="run folders")
    p.add_argument("--results", default="benchmarks/results/atari_curves", help="small outputs to commit")
    p.add_argument(
        "--read",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="results folder to read a run's exported curve from when OUT has no folder for it (repeat)",
    )
    args = p.parse_args()
    settings = {} if args.no_defaults else {"defaults": ""}
    settings.update(s.split("=", 1) for s in args.setting)
    out, results = Path(args.out), Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    where = {
        (game, setting, seed): find_run(run_name(game, setting, seed), out, args.read)
        for game in args.games
        for seed in args.seeds
        for setting in settings
    }
    if not args.summarize_only:
        jobs = []
        for (game, setting, seed), folder in where.items():  # seed-major: first seeds of every side finish first
            if folder != out / folder.name:  # read from a results folder (--read): nothing to run
                continue
            run_args = argparse.Namespace(
                env=f"ALE/{game}-v5", total_steps=args.total_steps, extra=f"--env-backend envpool {args.extra}"
            )
            jobs.append((folder.name, folder, run_args, settings[setting], seed))
        jobs.sort(key=lambda job: job[4])
        learning_comparison.launch(jobs, args.parallel, out)
    result = {
        "total_steps": args.total_steps,
        "seeds": args.seeds,
        "settings": settings,
        "cleanrl_sps": args.cleanrl_sps,
        "htsrl_sps": args.htsrl_sps,
        "games": {},
    }
    for game in args.games:
        result["games"][game] = {
            setting: {seed: summarize_run(where[game, setting, seed], game) for seed in args.seeds}
            for setting in settings
        }
        for folder in (where[game, s, seed] for s in settings for seed in args.seeds):
            export_run(folder, results)
        runs = {s: {seed: where[game, s, seed] for seed in args.seeds} for s in settings}
        plot_game(game, runs, args.cleanrl_sps, results / f"{game.lower()}.png", args.htsrl_sps)
    for game, settings_ in result["games"].items():
        finals = [r["final"] for seeds in settings_.values() for r in seeds.values() if r and r["finished"]]
        if len(finals) > 1:
            spread = f"{statistics.fmean(finals):.2f} ({min(finals):.2f}-{max(finals):.2f})"
            print(f"{game}: final score over {len(finals)} finished runs: {spread}")
    (results / "curves.json").write_text(json.dumps(merged(results / "curves.json", result), indent=2))
    table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
