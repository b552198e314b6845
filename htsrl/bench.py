"""``htsrl bench``: throughput side by side on the same machine and envs.

Modes, run interleaved (raw sync hts sb3 raw sync hts sb3 ...) so that machine noise hits all alike:
- ``raw``:  random actions through the same executors, no inference, no learning (the ceiling);
- ``sync``: htsrl lock-step A2C/PPO;
- ``hts``:  htsrl HTS-RL;
- ``sb3``:  Stable-Baselines3 with SubprocVecEnv, same env count, rollout length and network;
- ``raw-envpool``, ``sync-envpool``, ``hts-envpool``: the same on EnvPool executors (Atari), with their
  ratio to the Python-env row of the same mode (``x python``);
- ``sync-bf16``, ``hts-bf16``, ``async-bf16``: the same with ``--precision bf16`` (image envs), with their
  ratio to the fp32 row of the same mode (``x fp32``); beside them the plain modes run fp32, otherwise
  they run the default precision (bf16 for Atari PPO and A2C where the CPU has it).
Each mode takes its own default learner threads (hts 1, sync 2) and shards (Atari PPO in bf16: hts and
async 2, sync 1) unless ``--learner-threads`` or ``--learner-shards`` is given; ``sb3`` gets lock-step's
threads.
Rates are steady state (the first fifth of each run excluded), reported as medians over repetitions,
in agent steps per second, with emulator frames beside them (Atari: steps x frameskip; football with
several controlled players: steps / players, one step per player per game frame). For synthetic envs
it also prints the Claim 1 prediction next to the measured rollout speedup.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

from htsrl.checks import check_bf16
from htsrl.config import Config, ConfigError, default_learner_threads, resolve
from htsrl.engine.summary import layout
from htsrl.env_families import SYNTHETIC, family_of
from htsrl.run_dir import RunDir

ENGINE_MODES = ("raw", "sync", "hts", "async")
ENVPOOL, BF16 = "-envpool", "-bf16"
# a variant of an engine mode: (the config it overrides, the name of its ratio to the plain mode's row)
VARIANTS = {ENVPOOL: ({"env_backend": "envpool"}, "python"), BF16: ({"precision": "bf16"}, "fp32")}
MODES = (
    *ENGINE_MODES,
    "sb3",
    *(m + ENVPOOL for m in ENGINE_MODES),
    *(m + BF16 for m in ENGINE_MODES if m != "raw"),  # raw mode has no network
)


def split_mode(mode: str) -> tuple[str, str]:
    """``("hts", "-bf16")`` from ``"hts-bf16"``; the suffix is "" for a plain mode."""
    for suffix in VARIANTS:
        if mode.endswith(suffix):
            return mode.removesuffix(suffix), suffix
    return mode, ""


def steady_rate(run_dir: Path) -> tuple[float, float]:
    """(steps/s, median rollout seconds per window) over the last four fifths of a run."""
    with open(RunDir(run_dir).progress) as f:
        rows = list(csv.DictReader(f))
    if len(rows) < 3:
        raise ConfigError("a benchmark run needs at least 3 windows; raise --steps")
    k = max(1, len(rows) // 5)
    steps = [float(r["env_steps"]) for r in rows]
    wall = [float(r["wall_time_s"]) for r in rows]
    rollout = [float(r["time/rollout_s"]) for r in rows[k:]]
    return (steps[-1] - steps[k]) / (wall[-1] - wall[k]), statistics.median(rollout)


def run_htsrl(cfg: Config, mode: str, run_dir: Path, per_mode: dict) -> dict:
    """``per_mode``: settings whose default depends on the mode (``learner_threads``, ``learner_shards``: None
    lets each mode take its own) or on the modes compared (``precision``)."""
    from htsrl.engine.runner import train

    base, suffix = split_mode(mode)
    cfg = Config.from_dict(
        {
            **cfg.__dict__,
            **per_mode,
            **(VARIANTS[suffix][0] if suffix else {}),
            "mode": base,
            "run_dir": str(run_dir),
            "progress": False,
            "checkpoint_every": 0,
            "overwrite": True,  # a measurement's runs are its own: a rerun of the bench replaces them
        }
    )
    summary = train(cfg)
    sps, rollout_s = steady_rate(run_dir)
    saved = RunDir(run_dir).saved_config_dict()  # the defaults this mode resolved to
    return {
        **{k: saved[k] for k in ("learner_threads", "learner_shards", "precision", "envs_per_group")},
        "mode": mode,
        "sps": sps,
        "rollout_s": rollout_s,
        "summary_sps": summary["sps"],
        "time_split": summary["time_split"],
        "env_steps": summary["env_steps"],
    }


def run_sb3(cfg: Config, steps: int, threads: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "htsrl.baselines.sb3",
        "--env",
        cfg.env,
        "--algo",
        cfg.algo,
        "--num-envs",
        str(cfg.num_envs),
        "--n-steps",
        str(cfg.alpha),
        "--steps",
        str(steps),
        "--seed",
        str(cfg.seed),
        "--threads",
        str(threads),
        "--device",
        cfg.device,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["?"]
        raise RuntimeError(f"SB3 baseline failed: {tail[0]} (pip install 'htsrl[bench]')")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"mode": "sb3", "sps": result["steady_sps"], "rollout_s": None, "env_steps": result["steps"]}


def claim1_prediction(cfg: Config) -> dict | None:
    if family_of(cfg.env) is not SYNTHETIC:
        return None
    from htsrl.analysis.claim1 import predicted_speedup, simulate
    from htsrl.envs.synthetic import SyntheticEnv

    env = SyntheticEnv(distribution=SYNTHETIC.name_in(cfg.env), **{k: v for k, v in cfg.env_kwargs.items()})
    if env.distribution == "exponential":
        return {"model": "exponential (closed form)", "speedup": predicted_speedup(cfg.num_envs, cfg.alpha)}
    if env.distribution in ("constant", "straggler"):
        # Deterministic step times: every step and every window waits for the slowest env alike.
        return {"model": "deterministic step times", "speedup": 1.0}
    sample = np.array([env.step_time() for _ in range(20_000)])
    sim = simulate(sample, cfg.num_envs, cfg.alpha)
    return {"model": f"Monte Carlo on {cfg.env} step times", "speedup": sim["speedup"]}


def bench(cfg: Config, steps: int, reps: int, modes: list[str], out_dir: Path) -> dict:
    # each mode its own default learner threads and shards, unless given; SB3, a lock-step trainer, gets the
    # threads lock-step gets
    user_threads, user_precision, user_groups = cfg.learner_threads, cfg.precision, cfg.envs_per_group
    user_shards = cfg.learner_shards
    cfg = resolve(Config.from_dict({**cfg.__dict__, "total_steps": steps}))
    sb3_threads = user_threads or default_learner_threads("sync")
    # the -bf16 rows are compared with the plain rows in fp32; without them, plain rows take the default
    with_bf16 = any(m.endswith(BF16) for m in modes)
    per_mode = {
        "learner_threads": user_threads,
        "learner_shards": user_shards,
        "precision": "fp32" if with_bf16 else user_precision,
        "envs_per_group": user_groups,  # the default depends on the precision
    }
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ConfigError(f"unknown bench modes {unknown}; choose from {list(MODES)}")
    if "sb3" in modes:
        if cfg.recurrent != "none":
            raise ConfigError(
                f"the sb3 mode runs SB3's feed-forward network; beside --recurrent {cfg.recurrent} it would "
                "compare two networks (leave sb3 out of --modes)"
            )
        if cfg.players > 1:
            raise ConfigError(
                f"the sb3 mode runs one player per env; {cfg.env} with {cfg.players} controlled players is "
                "htsrl's only (leave sb3 out of --modes)"
            )
        try:
            import stable_baselines3  # noqa: F401
        except ImportError:
            raise ConfigError("the sb3 mode needs Stable-Baselines3: pip install 'htsrl[bench]'") from None
    if with_bf16:
        from htsrl.envs import probe_env

        if user_precision not in (None, "fp32"):
            raise ConfigError(
                f"the {BF16} modes are compared with the same modes in fp32; leave --precision at fp32 "
                "(or give plain modes only)"
            )
        obs_shape = probe_env(cfg.env, cfg.env_kwargs, cfg.env_backend).obs_shape
        check_bf16(cfg.env, obs_shape, f"each {BF16} mode", instead=f"leave out the {BF16} modes")
    if any(m.endswith(ENVPOOL) for m in modes):
        if cfg.env_backend == "envpool":
            raise ConfigError(
                "the -envpool modes are compared with the same modes on Python envs; leave "
                "--env-backend at python (or give plain modes only)"
            )
        from htsrl.envs import probe_env

        resolve(Config.from_dict({**cfg.__dict__, "env_backend": "envpool"}))  # Atari only
        probe_env(cfg.env, cfg.env_kwargs, "envpool")
    out_dir.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    for rep in range(reps):
        for mode in modes:
            print(f"[bench] rep {rep + 1}/{reps} {mode} ...", file=sys.stderr, flush=True)
            if mode == "sb3":
                r = run_sb3(cfg, steps, sb3_threads)
            else:
                r = run_htsrl(cfg, mode, out_dir / f"{mode}_{rep}", per_mode)
            r["rep"] = rep
            runs.append(r)
            print(f"[bench]   {r['sps']:,.0f} steps/s", file=sys.stderr, flush=True)
    frames_per_step = family_of(cfg.env).frames_per_step / cfg.players
    med = {m: statistics.median(r["sps"] for r in runs if r["mode"] == m) for m in modes}
    table = []
    for m in modes:
        rates = [r["sps"] for r in runs if r["mode"] == m]
        row = {
            "mode": m,
            "sps_median": med[m],
            "sps_min": min(rates),
            "sps_max": max(rates),
            "frames_per_s": med[m] * frames_per_step,
        }
        for ref in ("raw", "sync", "sb3"):
            if ref in med and ref != m:
                row[f"x_{ref}"] = med[m] / med[ref]
        base, suffix = split_mode(m)
        if suffix and base in med:
            row[f"x_{VARIANTS[suffix][1]}"] = med[m] / med[base]
        table.append(row)
    result = {
        **layout(cfg),
        # per mode, as each resolves its own defaults
        "envs_per_group": {r["mode"]: r["envs_per_group"] for r in runs if "envs_per_group" in r},
        "learner_threads": {r["mode"]: r.get("learner_threads", sb3_threads) for r in runs},
        "learner_shards": {r["mode"]: r["learner_shards"] for r in runs if "learner_shards" in r},
        "precision": {r["mode"]: r["precision"] for r in runs if "precision" in r},
        "steps_per_run": steps,
        "reps": reps,
        "cpu_count": os.cpu_count(),
        "frames_per_step": frames_per_step,
        "players": cfg.players,
        "table": table,
        "runs": runs,
        "time_split": _split(runs, steps),
        "machine": _machine(),
    }
    if "hts" in med:
        result["compute_bound"] = _compute_bound(runs, "hts")
    if "hts" + BF16 in med:
        result["compute_bound_bf16"] = _compute_bound(runs, "hts" + BF16)
    prediction = claim1_prediction(cfg)
    if prediction and "sync" in med and "hts" in med:
        roll = {m: statistics.median(r["rollout_s"] for r in runs if r["mode"] == m) for m in ("sync", "hts")}
        prediction["measured_rollout_speedup"] = roll["sync"] / roll["hts"]
        prediction["measured_sps_ratio"] = med["hts"] / med["sync"]
        prediction["relative_error"] = prediction["measured_rollout_speedup"] / prediction["speedup"] - 1
        result["claim1"] = prediction
    (out_dir / "bench.json").write_text(json.dumps(result, indent=2))
    _bar_chart(result, out_dir / "bench.png")
    print(format_table(result))
    return result


def _split(runs: list[dict], steps: int) -> dict:
    """Median per-role seconds (and CPU ms per agent step) of the htsrl runs of each mode."""
    out = {}
    for mode in MODES:
        mine = [r for r in runs if r["mode"] == mode and "time_split" in r]
        if not mine:
            continue
        roles = {}
        for role in mine[0]["time_split"]:
            roles[role] = {
                k: statistics.median(r["time_split"][role][k] for r in mine) for k in mine[0]["time_split"][role]
            }
            roles[role]["cpu_ms_per_step"] = 1e3 * roles[role]["cpu_s"] / mine[0]["env_steps"]
        out[mode] = roles
    return out


def _compute_bound(runs: list[dict], mode: str) -> dict:
    """cores / (CPU seconds per agent step of env + inference + learning), measured inside the HTS runs."""
    hts = [r for r in runs if r["mode"] == mode]
    per = {}
    for role, key in (("executors", "env"), ("actors", "inference"), ("learner", "learning")):
        per[key] = statistics.median(1e3 * r["time_split"][role]["cpu_s"] / r["env_steps"] for r in hts)
    total = sum(per.values())
    limit = os.cpu_count() / (total / 1e3)
    achieved = statistics.median(r["sps"] for r in hts)
    return {"cpu_ms_per_step": per, "total_ms": total, "limit_sps": limit, "hts_fraction": achieved / limit}


def _machine() -> dict:
    import platform

    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def format_table(result: dict) -> str:
    refs = [r for r in ("raw", "sync", "sb3", "python", "fp32") if any(f"x_{r}" in row for row in result["table"])]
    head = f"{'mode':<12} {'steps/s':>9} {'(min-max)':>15} {'frames/s':>9} " + " ".join(f"{'x ' + r:>7}" for r in refs)
    lines = [
        f"{result['env']} {result['algo']} | {result['num_envs']} envs, alpha {result['alpha']}, "
        f"{result['num_executors']} executors, {result['num_actors']} actors | "
        f"{result['reps']} reps x {result['steps_per_run']} steps",
    ]
    per_mode = [
        ("learner threads", "learner_threads"),
        ("shards", "learner_shards"),
        ("precision", "precision"),
        ("groups of", "envs_per_group"),
    ]
    parts = [
        f"{label}: " + ", ".join(f"{m} {v}" for m, v in result[key].items())
        for label, key in per_mode
        if isinstance(result.get(key), dict) and result[key]  # older bench.json: one number
    ]
    if parts:
        lines.append(" | ".join(parts))
    lines += [head, "-" * len(head)]
    for row in result["table"]:
        ratios = " ".join(f"{row[f'x_{r}']:>7.2f}" if f"x_{r}" in row else f"{'':>7}" for r in refs)
        lines.append(
            f"{row['mode']:<12} {row['sps_median']:>9,.0f} {row['sps_min']:>7,.0f}-{row['sps_max']:<7,.0f} "
            f"{row['frames_per_s']:>9,.0f} {ratios}"
        )
    for mode, roles in result["time_split"].items():
        parts = []
        for role, v in roles.items():
            busy = {k: round(v[k], 1) for k in ("env_s", "infer_s", "learn_s", "wait_s", "ipc_s") if v[k]}
            parts.append(f"{role} {busy} cpu {v['cpu_ms_per_step']:.2f} ms/step")
        lines.append(f"time split [{mode}]: " + "; ".join(parts))
    for key, mode in (("compute_bound", "hts"), ("compute_bound_bf16", "hts" + BF16)):
        if key not in result:
            continue
        cb = result[key]
        terms = ", ".join(f"{k} {v:.2f}" for k, v in cb["cpu_ms_per_step"].items())
        lines.append(
            f"compute bound [{mode}]: {result['cpu_count']} cores / ({terms} ms CPU per step) = "
            f"{cb['limit_sps']:,.0f} steps/s; it reaches {cb['hts_fraction']:.2f} of it"
        )
    if "claim1" in result:
        c = result["claim1"]
        lines.append(
            f"Claim 1 [{c['model']}]: predicted rollout speedup {c['speedup']:.2f}x, measured "
            f"{c['measured_rollout_speedup']:.2f}x ({100 * c['relative_error']:+.1f}%); "
            f"HTS/sync steps/s {c['measured_sps_ratio']:.2f}x"
        )
    return "\n".join(lines)


def _bar_chart(result: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = result["table"]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows)), 3.5))
    med = [r["sps_median"] for r in rows]
    err = [[r["sps_median"] - r["sps_min"] for r in rows], [r["sps_max"] - r["sps_median"] for r in rows]]
    colors = {"raw": "#999", "sync": "#d62728", "hts": "#1f77b4", "async": "#9467bd", "sb3": "#2ca02c"}
    ax.bar(
        [r["mode"] for r in rows],
        med,
        yerr=err,
        capsize=4,
        color=[colors[split_mode(r["mode"])[0]] for r in rows],
        hatch=[{ENVPOOL: "//", BF16: "xx", "": ""}[split_mode(r["mode"])[1]] for r in rows],
    )
    for i, v in enumerate(med):
        ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom")
    ax.set_ylabel("agent steps / s")
    ax.set_title(f"{result['env']} {result['algo']}, {result['num_envs']} envs ({result['cpu_count']} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
