"""Learning curves from one or more run directories, in the style of the HTS-RL paper's figures:
return against env steps and against wall time, mean line with the min-max spread over seeds."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np

from htsrl.config import IDENTITY, LAYOUT, RUN_CONTROL, Config, fields_of_kind, saved_values
from htsrl.env_families import env_players
from htsrl.errors import ConfigError
from htsrl.presets import PRESETS
from htsrl.run_dir import RunDir

METRIC = "charts/mean_return_last_100"
# Config fields that do not make a run another experiment: which run it is (seed, folder), how many
# processes ran it and how it was controlled (see the kinds in config.py).
NOT_A_SETTING = set(fields_of_kind(IDENTITY, LAYOUT, RUN_CONTROL))


def _progress_of(run_dir: Path) -> Path:
    progress = RunDir(run_dir).progress
    if not progress.is_file():
        raise ConfigError(f"{run_dir} has no {progress.name}: not an htsrl run directory")
    return progress


def read_run(run_dir: Path, metric: str = METRIC) -> dict:
    progress = _progress_of(run_dir)
    cfg = RunDir(run_dir).saved_config_dict()
    cfg = {**dataclasses.asdict(Config()), **saved_values(cfg)}  # fields added since: their value then
    # x is env steps, i.e. game frames: a football run of N controlled players counts N steps per frame
    players = env_players(cfg["env"], cfg.get("env_kwargs"))
    steps, wall, value = [], [], []
    with open(progress) as f:
        for row in csv.DictReader(f):
            if row.get(metric):
                steps.append(float(row["env_steps"]) / players)
                wall.append(float(row["wall_time_s"]))
                value.append(float(row[metric]))
    return {
        "config": cfg,
        "env": cfg.get("env", "?"),
        "players": players,
        "steps": np.array(steps),
        "wall": np.array(wall),
        "value": np.array(value),
    }


def group_runs(runs: list[dict]) -> dict[str, list[dict]]:
    """Runs with the same settings (all but seed and layout) are seeds of one curve. A curve's label is
    its algo and mode, plus every setting in which the curves differ (e.g. ``env_backend=envpool``)."""
    groups: dict[str, list[dict]] = {}
    settings: dict[str, dict] = {}
    for r in runs:
        setting = {k: v for k, v in r["config"].items() if k not in NOT_A_SETTING}
        key = json.dumps(setting, sort_keys=True, default=str)
        groups.setdefault(key, []).append(r)
        settings[key] = setting

    def values_of(k: str) -> set[str]:
        return {json.dumps(s.get(k), default=str) for s in settings.values()}

    differ = sorted({k for s in settings.values() for k in s if k not in ("algo", "mode") and len(values_of(k)) > 1})
    labelled: dict[str, list[dict]] = {}
    for key, members in groups.items():
        s = settings[key]
        # a field at its preset's value is said by the preset's name (curves of other presets differ in many)
        implied = PRESETS.get(s.get("preset"), {}) if "preset" in differ else {}
        shown = [k for k in differ if k not in implied or implied[k] != s.get(k)]
        label = " ".join([f"{s.get('algo', '?')} {s.get('mode', '?')}", *(f"{k}={s.get(k)}" for k in shown)])
        while label in labelled:  # settings that print alike stay apart
            label += "'"
        labelled[label] = members
    return labelled


def read_resources(run_dir: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The ``resources/*`` columns of a run's progress.csv: env steps and, per column, its values (NaN
    where a row has none: they are sampled at most once a second)."""
    with open(_progress_of(run_dir)) as f:
        rows = [r for r in csv.DictReader(f) if r.get("resources/open_fds")]
    names = sorted({k for r in rows for k in r if k.startswith("resources/")})
    steps = np.array([float(r["env_steps"]) for r in rows])
    return steps, {k: np.array([float(r[k]) if r.get(k) else np.nan for r in rows]) for k in names}


RESOURCE_PANELS = (
    ("resident memory per role (MB)", "resources/rss_mb/"),
    ("private memory, all roles (MB)", "resources/private_mb"),
    ("shared memory held (MB)", "resources/shm_mb"),
    ("open descriptors, all roles", "resources/open_fds"),
)


def plot_resources(run_dirs: list[str | Path], out: str | Path, title: str | None = None) -> Path:
    """What each run held against env steps (``htsrl plot --resources``): a leak is a slope here."""
    plt, EngFormatter = _pyplot()
    fig, axes = plt.subplots(1, len(RESOURCE_PANELS), figsize=(4.2 * len(RESOURCE_PANELS), 4))
    drawn = 0
    for run_dir in run_dirs:
        steps, columns = read_resources(Path(run_dir))
        drawn += len(steps)
        for ax, (ylabel, prefix) in zip(axes, RESOURCE_PANELS):
            for name, values in columns.items():
                if name == prefix or (prefix.endswith("/") and name.startswith(prefix)):
                    role = name[len(prefix) :] if prefix.endswith("/") else ""
                    label = " ".join(x for x in (Path(run_dir).name if len(run_dirs) > 1 else "", role) if x)
                    ok = ~np.isnan(values)
                    ax.plot(steps[ok], values[ok], label=label or None)
            ax.set_ylabel(ylabel)
    if not drawn:
        raise ConfigError("no run has resources/* columns to plot (runs before htsrl 0.3.1 have none)")
    for ax in axes:
        ax.set_xlabel("environment steps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_ylim(0, 1.15 * max(ax.dataLim.ymax, 1e-9))  # from zero: a slope reads as a share of the whole
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title or "resources: " + ", ".join(Path(d).name for d in run_dirs))
    fig.tight_layout()
    return _save(fig, plt, out)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import EngFormatter
    except ImportError:
        raise ConfigError('htsrl plot needs matplotlib: pip install -e ".[plot]"') from None
    return plt, EngFormatter


def _save(fig, plt, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


CI_RESAMPLES = 2000  # bootstrap resamples of the seeds for the 95% band (seeded: a plot is reproducible)


def seed_statistics(ys: np.ndarray) -> dict[str, np.ndarray]:
    """Across seeds (rows of ``ys``, one column per x): the mean with its 95% percentile-bootstrap
    interval (scipy.stats.bootstrap over the seeds), the interquartile mean (rliable's IQM: the mean of
    the middle half, scipy.stats.trim_mean), min and max. One seed: the band is that seed's curve."""
    import inspect

    try:
        from scipy import stats
    except ImportError:
        raise ConfigError('htsrl plot needs scipy for the band over seeds: pip install -e ".[plot]"') from None

    mean = ys.mean(0)
    if len(ys) > 1:
        seeded = {"rng": 0} if "rng" in inspect.signature(stats.bootstrap).parameters else {"random_state": 0}
        ci = stats.bootstrap(
            (ys,), np.mean, axis=0, n_resamples=CI_RESAMPLES, method="percentile", confidence_level=0.95, **seeded
        ).confidence_interval
        low, high = ci.low, ci.high
    else:
        low = high = mean
    return {
        "mean": mean,
        "ci_low": low,
        "ci_high": high,
        "iqm": stats.trim_mean(ys, 0.25, axis=0),
        "min": ys.min(0),
        "max": ys.max(0),
    }


def plot_runs(run_dirs: list[str | Path], out: str | Path, title: str | None = None, metric: str = METRIC) -> Path:
    """Curves of ``metric`` (a progress.csv column; default the mean return of the last 100 episodes)
    against env steps (game frames: a run of several football players is put on the same axis as one
    of one player) and wall time; one curve per setting: the mean over its seeds with a 95% bootstrap band,
    and their IQM dashed. The numbers drawn go to a CSV beside the image (``curves.png`` -> ``curves.csv``)."""
    if Path(out).suffix.lower() == ".csv":
        raise ConfigError(f"--out {out} is the image (PNG); the numbers go beside it, in the same name with .csv")
    plt, EngFormatter = _pyplot()
    runs = [read_run(Path(d), metric) for d in run_dirs]
    runs = [r for r in runs if len(r["value"])]
    if not runs:
        raise ConfigError("no run has episode returns to plot yet")
    groups = group_runs(runs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4 + 0.3 * len(groups)))
    colors = itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    drawn = []
    for (label, members), color in zip(groups.items(), colors):
        for ax, x_key in zip(axes, ("steps", "wall")):
            end = min(m[x_key][-1] for m in members)
            start = max(m[x_key][0] for m in members)
            grid = np.linspace(start, end, 200) if end > start else np.array([end])
            ys = np.stack([np.interp(grid, m[x_key], m["value"]) for m in members])
            st = seed_statistics(ys)
            n = len(members)
            ax.plot(
                grid,
                st["mean"],
                color=color,
                label=f"{label} (n={n}" + (": mean, 95% CI; IQM dashed)" if n > 1 else ")"),
            )
            if n > 1:
                ax.fill_between(grid, st["ci_low"], st["ci_high"], color=color, alpha=0.25)
                ax.plot(grid, st["iqm"], color=color, ls="--", lw=1)
            drawn += [
                {"curve": label, "x_axis": x_key, "x": x, "seeds": n, **{k: v[i] for k, v in st.items()}}
                for i, x in enumerate(grid)
            ]
    several = any(r["players"] > 1 for r in runs)
    axes[0].set_xlabel(
        "environment steps (game frames: one step of all controlled players)" if several else "environment steps"
    )
    axes[0].xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k, 1M: long step counts stay legible
    axes[1].set_xlabel("wall time (s)")
    ylabel = "mean return (last 100 episodes)" if metric == METRIC else metric
    for ax in axes:
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=1, frameon=False)  # one legend, below both plots
    fig.suptitle(title or ", ".join(sorted({r["env"] for r in runs})))
    fig.tight_layout(rect=(0, 0.06 * len(labels), 1, 1))
    out = _save(fig, plt, out)
    with open(out.with_suffix(".csv"), "w", newline="") as f:  # what was drawn, to check or plot elsewhere
        writer = csv.DictWriter(f, fieldnames=list(drawn[0]))
        writer.writeheader()
        writer.writerows(drawn)
    return out
