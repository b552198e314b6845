"""Table 1 of the HTS-RL paper beside today's: A2C steps/s on its twelve Atari games, per implementation.

    python benchmarks/table1.py                                    # 12 games x 16 and 8 envs x 3 reps, CPU
    python benchmarks/table1.py --games Breakout Qbert --num-envs 16 --reps 5
    python benchmarks/table1.py --kostrikov ~/kostrikov            # + Kostrikov's A2C (python: DIR/venv)
    python benchmarks/table1.py --plot-only benchmarks/results/table1/table1.json

Per game, repetition after repetition, each env count runs every implementation in turn (htsrl HTS,
htsrl lock-step, SB3's A2C, and Kostrikov's A2C when ``--kostrikov`` is given), so that a drift of the
machine falls on all of them alike. Rates are agent steps per second in steady state, the first fifth
of each run excluded, printed as mean ± std over the repetitions as the paper prints its own; ratios
are of those means. The paper's table (``PAPER_TABLE1``) is printed first, then today's per env count
with the paper's ratios beside the measured ones. After each game the JSON (``--out``) is rewritten, so a
stopped table keeps its games; the same command continues it, skipping the games already measured with
the same settings. The PNG beside the JSON has, per env count, each implementation's bars per game and,
in a panel below, HTS/Kostrikov and HTS/SB3 (filled) beside the paper's HTS-RL/Kostrikov and
HTS-RL/OpenAI Baselines (hollow).
Never run it beside a learning run: its numbers would be the other run's noise.

The same settings for every implementation: A2C with the atari-a2c preset (htsrl/presets.py, which is
Kostrikov's defaults: RMSprop 7e-4, n-step returns over alpha = 5 steps per env, Nature CNN), the same
env count, and DeepMind's Atari preprocessing with sticky actions off: htsrl and SB3 step ``ALE/<Game>-v5``
through htsrl's own wrappers (htsrl/envs/atari.py: frameskip 4 with max-pool, noop reset, 84x84 gray,
episodic life, fire reset, sign rewards, 4 stacked frames; bench's sb3 mode builds SB3's envs with the same
function), Kostrikov steps ``<Game>NoFrameskip-v4`` through his wrappers, which are the same ones. CPU
unless ``--device cuda``. Threads: HTS 1 learner thread, lock-step 2 (htsrl's defaults per mode), SB3 2
(what ``htsrl bench`` gives it), Kostrikov 1 (his main.py calls ``torch.set_num_threads(1)``).

Precision: htsrl runs fp32 here by default (``--precision fp32``), as SB3 and Kostrikov do and as the paper
did, so that every row computes the same network in the same arithmetic. ``--precision default`` gives
htsrl its own defaults instead (bf16 for Atari A2C on a CPU with native bfloat16, fp32 elsewhere), the
precision ``htsrl bench`` uses when it has no -bf16 rows. The table header and the JSON say what each
htsrl row resolved to (precision, learner threads, shards, env groups).

Sizing: 12 games x 2 env counts x 3 reps x 3 implementations = 216 runs of 3,200 agent steps (40 updates
at 16 envs, 80 at 8; the rate from the last 32 and 64), about 40 min on a quiet 2-core machine; with
Kostrikov 288 runs, about 65 min (his 16 worker processes each import torch before his clock starts).
The script prints the plan and its estimate at the start, and the time left after each game.

How htsrl's HTS rows spend the CPU (``htsrl bench``'s time split): CPU ms per agent step of the executors
(env), the actors (inference) and the learner (learning), and the fraction of the compute bound (cores /
their sum) that HTS reaches. A game whose measured ratio falls short of the paper's is marked with what
holds it back: the largest of the three costs when HTS is at its CPU bound, waiting when it is not.

Kostrikov's A2C: a checkout of github.com/ikostrikov/pytorch-a2c-ppo-acktr-gail (not on PyPI) at
41332b78dfb50321c29bade65f9d244387f68a60, the commit htsrl/presets.py cites, unmodified, run as
``main.py --env-name <Game>NoFrameskip-v4 --algo a2c --num-processes N --num-steps 5 --num-env-steps S
--seed 1 --save-dir '' [--no-cuda]`` (no model checkpoints, as bench runs htsrl without them). Its own FPS
line prints only once two games have ended, which on most of these games takes longer than a benchmark
run, so a small runner (``KOSTRIKOV_RUNNER``) starts main.py as it is and notes the time after each step
of its vec env; its rate is taken from those times by the rule htsrl's rate uses (whole windows after the
first fifth). Over the same updates it agrees with its own FPS lines (Breakout, 8 envs: 324 against
321 steps/s). Its last printed FPS, where it printed one, is kept beside it in the JSON.

Kostrikov's venv, step by step (2026). The commit's own gym 0.18 and atari-py do not install on Python
3.11, the only Python with a CPU torch wheel here; gym 0.21 has the same old API (reset() -> obs, step()
-> 4 values, seed()) and SB3 1.0, the SB3 of the commit's date, whose Atari wrappers and SubprocVecEnv it
imports, takes it. gym 0.21's metadata needs an old setuptools to build:

    K=~/kostrikov  # any folder outside this repository
    git clone <github.com/ikostrikov/pytorch-a2c-ppo-acktr-gail> $K
    git -C $K checkout 41332b78dfb50321c29bade65f9d244387f68a60
    python3.11 -m venv $K/venv && $K/venv/bin/pip install torch==2.13.0
    python3.11 -m venv $K/build && $K/build/bin/pip install "setuptools<66" "wheel<0.40"
    $K/build/bin/pip wheel --no-deps --no-build-isolation gym==0.21.0 -w $K/wheels
    # write $K/ale_v4_shim/pyproject.toml and $K/ale_v4_shim/ale_v4_shim.py (below), then
    $K/venv/bin/pip install $K/wheels/gym-0.21.0-py3-none-any.whl stable-baselines3==1.0 \\
        "opencv-python-headless<4.12" "gymnasium>=1.0" ale-py==0.12.1 h5py $K/ale_v4_shim

(numpy ends at 2.4 and works.) ``ale_v4_shim`` is a two-file package, outside this repository, that
registers ``<Game>NoFrameskip-v4`` with gym 0.21 as the class that the commit's envs.py tests for
(``gym.envs.atari.atari_env.AtariEnv``): today's ale-py (ROMs included; the emulator htsrl and SB3 run)
with gymnasium's NoFrameskip-v4 settings (frameskip 1, no sticky actions, minimal action set),
RGB observations as atari-py gave, behind gym 0.21's API. Its ``pyproject.toml``:

    [build-system]
    requires = ["setuptools>=61"]
    build-backend = "setuptools.build_meta"
    [project]
    name = "ale-v4-shim"
    version = "0.1"
    [project.entry-points."gym.envs"]
    ale_v4_shim = "ale_v4_shim:register_envs"
    [tool.setuptools]
    py-modules = ["ale_v4_shim"]

and its ``ale_v4_shim.py``:

    import sys
    import types

    import gym
    import numpy as np
    from gym.utils import seeding


    class AtariEnv(gym.Env):
        def __init__(self, **kwargs):
            from ale_py.env import AtariEnv as AleEnv

            self._env = AleEnv(obs_type="rgb", **kwargs)  # RGB, as atari-py gave
            self.ale = self._env.ale  # EpisodicLifeEnv reads ale.lives()
            self.action_space = gym.spaces.Discrete(int(self._env.action_space.n))
            self.observation_space = gym.spaces.Box(0, 255, self._env.observation_space.shape, np.uint8)
            self.seed()

        def seed(self, seed=None):
            self.np_random, seed = seeding.np_random(seed)  # a RandomState: NoopResetEnv calls randint
            self._reset_seed = seed  # the emulator is seeded at the next reset
            return [seed]

        def reset(self):
            obs, _ = self._env.reset(seed=self._reset_seed)
            self._reset_seed = None
            return obs

        def step(self, action):
            obs, reward, terminated, truncated, info = self._env.step(int(action))
            return obs, reward, terminated or truncated, info

        def get_action_meanings(self):
            return self._env.get_action_meanings()


    def register_envs():  # gym's env-plugin hook calls it at the end of `import gym.envs`, in every process
        import ale_py
        import gymnasium

        gymnasium.register_envs(ale_py)
        atari = types.ModuleType("gym.envs.atari")
        atari.atari_env = sys.modules[__name__]
        sys.modules["gym.envs.atari"] = sys.modules["gym.envs"].atari = atari
        registration = sys.modules["gym.envs.registration"]
        for env_id, spec in gymnasium.registry.items():
            if env_id.endswith("NoFrameskip-v4") and spec.entry_point == "ale_py.env:AtariEnv":
                # into the table itself: through the hook, register() would prefix the id with the plugin's name
                registration.registry.env_specs[env_id] = registration.EnvSpec(
                    env_id, entry_point="ale_v4_shim:AtariEnv", kwargs=dict(spec.kwargs)
                )
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from htsrl.bench import _compute_bound, _machine, run_htsrl, run_sb3
from htsrl.config import Config, default_learner_threads, resolve

PAPER_CITATION = (
    'Liu, Yeh, Schwing, "High-Throughput Synchronous Deep RL", NeurIPS 2020, Table 1: A2C, 16 env '
    "processes, one GPU; steps per second, mean ± std"
)
PAPER_COLUMNS = ("kostrikov", "baselines", "rlpyt", "hts_rl")
PAPER_LABELS = {"kostrikov": "Kostrikov", "baselines": "OpenAI Baselines", "rlpyt": "rlpyt", "hts_rl": "HTS-RL"}
PAPER_TABLE1 = {  # game: (mean, std) per column of PAPER_COLUMNS
    "BankHeist": ((1382, 6), (991, 14), (1737, 39), (2111, 21)),
    "BeamRider": ((1663, 14), (1081, 18), (2086, 32), (2586, 14)),
    "Breakout": ((1225, 12), (829, 31), (1508, 60), (1885, 15)),
    "Frostbite": ((1337, 8), (962, 15), (1803, 17), (1973, 24)),
    "Jamesbond": ((1353, 5), (1014, 1), (1991, 24), (2139, 31)),
    "Krull": ((1443, 6), (1057, 11), (2001, 29), (2657, 16)),
    "KungFuMaster": ((1532, 15), (1056, 8), (1979, 55), (2483, 15)),
    "MsPacman": ((1574, 9), (1052, 3), (1972, 13), (2364, 5)),
    "Qbert": ((1232, 13), (953, 7), (1621, 43), (1860, 6)),
    "Seaquest": ((1593, 10), (946, 21), (1918, 25), (2633, 32)),
    "SpaceInvaders": ((1514, 20), (1010, 7), (1899, 32), (2318, 12)),
    "StarGunner": ((1622, 19), (1110, 5), (2066, 24), (2616, 25)),
}
PAPER_NUM_ENVS = 16
KOSTRIKOV_COMMIT = "41332b78dfb50321c29bade65f9d244387f68a60"

ALPHA = 5  # the atari-a2c preset's rollout length, Kostrikov's --num-steps default
IMPLEMENTATIONS = ("hts", "sync", "sb3", "kostrikov")
LABELS = {"hts": "htsrl HTS", "sync": "lock-step", "sb3": "SB3 A2C", "kostrikov": "Kostrikov"}
# the paper's column each measured ratio's reference stands for (SB3 A2C is OpenAI Baselines' successor)
PAPER_REFERENCE = {"sb3": "baselines", "kostrikov": "kostrikov"}
# for the estimate printed at the start only: seconds to start a run, and steps/s on a quiet 2-core machine
# (BENCHMARKS.md, Breakout A2C 16 envs: htsrl 490-770, SB3 377-462)
START_S = {"hts": 3, "sync": 3, "sb3": 6, "kostrikov": 15}
ASSUMED_SPS = {"hts": 550, "sync": 550, "sb3": 400, "kostrikov": 400}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "table1" / "table1.json"

# Starts Kostrikov's main.py unmodified and notes the time after each step of the vec env it makes; the
# last stdout line is those times (and the versions that ran). argv: checkout, then main.py's arguments.
KOSTRIKOV_RUNNER = r"""
import json, os, runpy, sys, time
checkout = sys.argv[1]
os.chdir(checkout)
sys.path.insert(0, checkout)
sys.argv = ["main.py", *sys.argv[2:]]
import a2c_ppo_acktr.envs as envs_module
marks = []
make_vec_envs = envs_module.make_vec_envs
def make_timed_vec_envs(*args, **kwargs):
    envs = make_vec_envs(*args, **kwargs)
    step = envs.step
    def step_and_mark(actions):
        out = step(actions)
        marks.append(time.perf_counter())
        return out
    envs.step = step_and_mark
    return envs
envs_module.make_vec_envs = make_timed_vec_envs
runpy.run_path("main.py", run_name="__main__")
import gym, stable_baselines3, torch
versions = {"torch": torch.__version__, "gym": gym.__version__, "stable_baselines3": stable_baselines3.__version__}
print("TABLE1 " + json.dumps({"marks": marks, "versions": versions}))
"""


def log(message: str) -> None:
    print(f"[table1] {message}", file=sys.stderr, flush=True)


# --- measuring ---------------------------------------------------------------------------------------


def htsrl_config(game: str, num_envs: int, steps: int, device: str) -> Config:
    return resolve(
        Config(env=f"ALE/{game}-v5", algo="a2c", num_envs=num_envs, alpha=ALPHA, total_steps=steps, device=device)
    )


def measure_htsrl(mode: str, game: str, num_envs: int, args: argparse.Namespace) -> dict:
    # None lets each mode resolve its own default, as htsrl bench does
    per_mode = {
        "learner_threads": None,
        "learner_shards": None,
        "envs_per_group": None,
        "precision": None if args.precision == "default" else args.precision,
    }
    with tempfile.TemporaryDirectory(prefix="table1_") as tmp:  # only its progress.csv is read
        return run_htsrl(htsrl_config(game, num_envs, args.steps, args.device), mode, Path(tmp) / "run", per_mode)


def measure_sb3(game: str, num_envs: int, args: argparse.Namespace) -> dict:
    threads = default_learner_threads("sync")  # htsrl bench gives SB3, a lock-step trainer, lock-step's threads
    run = run_sb3(htsrl_config(game, num_envs, args.steps, args.device), args.steps, threads)
    return {**run, "learner_threads": threads, "precision": "fp32"}


def kostrikov_command(game: str, num_envs: int, args: argparse.Namespace, log_dir: str) -> list[str]:
    main_args = ["--env-name", f"{game}NoFrameskip-v4", "--algo", "a2c", "--num-processes", str(num_envs)]
    main_args += ["--num-steps", str(ALPHA), "--num-env-steps", str(args.steps), "--seed", "1"]
    main_args += ["--log-dir", log_dir, "--save-dir", ""]  # no model checkpoints, as htsrl's bench runs
    if args.device == "cpu":
        main_args.append("--no-cuda")
    return [str(args.kostrikov_python), "-c", KOSTRIKOV_RUNNER, str(args.kostrikov), *main_args]


def steady_rate_from_marks(marks: list[float], num_envs: int) -> float:
    """Agent steps/s from the times after each vec-env step: whole windows (alpha steps and an update), from
    the first window end after the first fifth of the run to the last, the rule htsrl bench's rate uses."""
    last = len(marks) - 1
    ends = [k for k in range(len(marks) // 5, last) if (last - k) % ALPHA == 0]
    if not ends:
        raise SystemExit(f"Kostrikov's run made {len(marks)} vec-env steps; raise --steps")
    return num_envs * (last - ends[0]) / (marks[last] - marks[ends[0]])


def measure_kostrikov(game: str, num_envs: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="table1_kostrikov_") as tmp:  # its monitor files
        out = subprocess.run(
            kostrikov_command(game, num_envs, args, f"{tmp}/log"),
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    if out.returncode:
        raise SystemExit(f"Kostrikov's main.py failed on {game}:\n{out.stderr[-3000:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1].removeprefix("TABLE1 "))
    printed = re.findall(r"num timesteps (\d+), FPS (\d+)", out.stdout)
    return {
        "mode": "kostrikov",
        "sps": steady_rate_from_marks(report["marks"], num_envs),
        "printed_fps_last": int(printed[-1][1]) if printed else None,  # cumulative since its loop began
        "env_steps": len(report["marks"]) * num_envs,
        "learner_threads": 1,  # its main.py: torch.set_num_threads(1)
        "precision": "fp32",
        "versions": report["versions"],
    }


def measure(impl: str, game: str, num_envs: int, args: argparse.Namespace) -> dict:
    if impl == "sb3":
        return measure_sb3(game, num_envs, args)
    if impl == "kostrikov":
        return measure_kostrikov(game, num_envs, args)
    return measure_htsrl(impl, game, num_envs, args)


def measure_game(game: str, args: argparse.Namespace, implementations: list[str]) -> list[dict]:
    """Every repetition runs every env count and implementation in turn (interleaved)."""
    runs = []
    for rep in range(args.reps):
        for num_envs in args.num_envs:
            for impl in implementations:
                log(f"{game} {num_envs} envs, rep {rep + 1}/{args.reps}: {LABELS[impl]} ...")
                t0 = time.perf_counter()
                run = measure(impl, game, num_envs, args)
                run.update(mode=impl, num_envs=num_envs, rep=rep, wall_s=time.perf_counter() - t0)
                runs.append(run)
                log(f"  {run['sps']:,.0f} steps/s ({run['wall_s']:.0f} s)")
    return runs


# --- summarizing -------------------------------------------------------------------------------------


def spread(rates: list[float]) -> dict:
    return {
        "mean": statistics.mean(rates),
        "std": statistics.stdev(rates) if len(rates) > 1 else 0.0,
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "n": len(rates),
    }


def paper_ratio(game: str, reference: str) -> float | None:
    row = PAPER_TABLE1.get(game)
    return row[PAPER_COLUMNS.index("hts_rl")][0] / row[PAPER_COLUMNS.index(reference)][0] if row else None


def short_of_paper(ratios: dict) -> bool | None:
    """HTS/Kostrikov below the paper's HTS-RL/Kostrikov (the paper's own comparison); without Kostrikov,
    HTS/SB3 below the paper's HTS-RL/OpenAI Baselines. None for a game that is not in the paper."""
    for impl, reference in (("kostrikov", "kostrikov"), ("sb3", "baselines")):
        if f"hts/{impl}" in ratios:
            paper = ratios[f"paper hts_rl/{reference}"]
            return None if paper is None else ratios[f"hts/{impl}"] < paper
    return None


def holding_back(bound: dict) -> str:
    """What holds HTS back: below its CPU bound it waits; at it, its largest CPU cost."""
    if bound["hts_fraction"] < 0.8:
        return f"waits ({bound['hts_fraction']:.2f} of bound)"
    cost, ms = max(bound["cpu_ms_per_step"].items(), key=lambda kv: kv[1])
    return f"{cost} ({ms / bound['total_ms']:.0%} of CPU)"


def summarize_env_count(game: str, runs: list[dict]) -> dict:
    """One env count of one game: each implementation's spread, the ratios of HTS to the others beside the
    paper's, HTS's time split, and what holds it back where it falls short of the paper's ratio."""
    by_impl = {impl: [r for r in runs if r["mode"] == impl] for impl in IMPLEMENTATIONS}
    by_impl = {impl: mine for impl, mine in by_impl.items() if mine}
    row = {"sps": {impl: spread([r["sps"] for r in mine]) for impl, mine in by_impl.items()}}
    hts = row["sps"]["hts"]["mean"]
    row["ratios"] = {"hts/sync": hts / row["sps"]["sync"]["mean"]}
    for impl, reference in PAPER_REFERENCE.items():
        if impl in row["sps"]:
            row["ratios"][f"hts/{impl}"] = hts / row["sps"][impl]["mean"]
            row["ratios"][f"paper hts_rl/{reference}"] = paper_ratio(game, reference)
    row["short_of_paper"] = short_of_paper(row["ratios"])
    row["hts_time_split"] = _compute_bound(by_impl["hts"], "hts")
    row["held_back_by"] = holding_back(row["hts_time_split"]) if row["short_of_paper"] else None
    row["resolved"] = {impl: resolved_settings(mine[0]) for impl, mine in by_impl.items()}
    return row


def resolved_settings(run: dict) -> dict:
    """The settings a run resolved to (htsrl's modes each take their own defaults)."""
    return {k: run[k] for k in ("precision", "learner_threads", "learner_shards", "envs_per_group") if k in run}


def summarize_game(game: str, runs: list[dict], num_envs: list[int]) -> dict:
    rows = {str(n): summarize_env_count(game, [r for r in runs if r["num_envs"] == n]) for n in num_envs}
    return {"rows": rows, "runs": runs, "wall_s": sum(r["wall_s"] for r in runs)}


# --- the JSON: settings, incremental saving, continuing ------------------------------------------------


def settings_of(args: argparse.Namespace, implementations: list[str]) -> dict:
    return {
        "algo": "a2c",
        "alpha": ALPHA,
        "steps_per_run": args.steps,
        "reps": args.reps,
        "num_envs": args.num_envs,
        "device": args.device,
        "htsrl_precision": args.precision,
        "implementations": implementations,
        "envs": {"htsrl, sb3": "ALE/<Game>-v5 (htsrl.envs.atari)", "kostrikov": "<Game>NoFrameskip-v4"},
    }


def new_result(settings: dict, args: argparse.Namespace) -> dict:
    return {
        "paper": {
            "citation": PAPER_CITATION,
            "num_envs": PAPER_NUM_ENVS,
            "columns": list(PAPER_COLUMNS),
            "games": {g: {c: list(v) for c, v in zip(PAPER_COLUMNS, row)} for g, row in PAPER_TABLE1.items()},
        },
        "settings": settings,
        "kostrikov": {"checkout": str(args.kostrikov), "commit": checkout_commit(args.kostrikov)}
        if args.kostrikov
        else None,
        "machine": {**_machine(), "cpu_count": os.cpu_count()},
        "games": {},
    }


def checkout_commit(checkout: Path) -> str:
    out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    if out.returncode:  # an archive of the commit, as the docstring's setup makes
        return f"{KOSTRIKOV_COMMIT} (not a git checkout: the commit it was made from, unchecked)"
    return out.stdout.strip()


def load_or_start(path: Path, settings: dict, args: argparse.Namespace) -> dict:
    if not path.exists():
        return new_result(settings, args)
    result = json.loads(path.read_text())
    if result["settings"] != settings:
        raise SystemExit(
            f"{path} holds a table measured with other settings ({result['settings']}); give another --out "
            "to start a new table, or the same settings to continue this one"
        )
    return result


def save(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)  # a stop mid-write leaves the previous table whole


# --- printing ----------------------------------------------------------------------------------------


def mean_std(s: dict | None) -> str:
    return f"{s['mean']:,.0f}±{s['std']:,.0f}" if s else "-"


def ratio_pair(measured: float | None, paper: float | None) -> str:
    left = f"{measured:.2f}" if measured is not None else "-"
    return f"{left} ({paper:.2f})" if paper is not None else left


def format_paper_table() -> str:
    head = f"{'game':<14}" + "".join(f"{PAPER_LABELS[c]:>17}" for c in PAPER_COLUMNS) + f"{'HTS-RL/Kostrikov':>18}"
    lines = [PAPER_CITATION, head, "-" * len(head)]
    for game, row in PAPER_TABLE1.items():
        cells = "".join(f"{f'{m:,}±{s}':>17}" for m, s in row)
        lines.append(f"{game:<14}{cells}{paper_ratio(game, 'kostrikov'):>18.2f}")
    return "\n".join(lines)


def format_settings(result: dict, num_envs: str) -> str:
    s = result["settings"]
    resolved = {}
    for game in result["games"].values():
        for impl, values in game["rows"].get(num_envs, {}).get("resolved", {}).items():
            resolved.setdefault(impl, values)
    parts = [f"{LABELS[i]}: " + ", ".join(f"{k} {v}" for k, v in vs.items()) for i, vs in resolved.items() if vs]
    return (
        f"today, {num_envs} envs: A2C, alpha {s['alpha']}, {s['device']} ({result['machine']['cpu_count']} cores), "
        f"{s['reps']} reps x {s['steps_per_run']:,} agent steps, steps/s mean±std over reps; ratios of "
        f"means, the paper's ({PAPER_NUM_ENVS} envs, GPU) in parentheses\n" + " | ".join(parts)
    )


def format_env_count(result: dict, num_envs: str) -> str:
    impls = result["settings"]["implementations"]
    head = f"{'game':<14}" + "".join(f"{LABELS[i]:>12}" for i in impls) + f"{'HTS/lock':>9}"
    head += "".join(f"{'HTS/' + LABELS[i].split()[0]:>17}" for i in PAPER_REFERENCE if i in impls)
    head += f"  {'CPU ms/step env/inf/learn':<26}{'bound':>6}  falls short: held back by"
    lines = [format_settings(result, num_envs), head, "-" * len(head)]
    for game, entry in result["games"].items():
        row = entry["rows"].get(num_envs)
        if row is None:
            continue
        line = f"{game:<14}" + "".join(f"{mean_std(row['sps'].get(i)):>12}" for i in impls)
        line += f"{row['ratios']['hts/sync']:>9.2f}"
        for impl, reference in PAPER_REFERENCE.items():
            if impl in impls:
                pair = ratio_pair(row["ratios"].get(f"hts/{impl}"), row["ratios"].get(f"paper hts_rl/{reference}"))
                line += f"{pair:>17}"
        split = row["hts_time_split"]
        ms = "/".join(f"{split['cpu_ms_per_step'][k]:.2f}" for k in ("env", "inference", "learning"))
        line += f"  {ms:<26}{split['hts_fraction']:>6.2f}  {row['held_back_by'] or ''}"
        lines.append(line)
    return "\n".join(lines)


def format_table(result: dict) -> str:
    blocks = [format_paper_table()]
    blocks += [format_env_count(result, str(n)) for n in result["settings"]["num_envs"]]
    blocks.append(
        "CPU ms/step, of the HTS runs: executors (env), actors (inference), learner (learning) per agent step; "
        "bound: the fraction of cores / their sum that HTS reaches. Falls short: HTS/Kostrikov below the paper's "
        "HTS-RL/Kostrikov (without Kostrikov: HTS/SB3 below HTS-RL/OpenAI Baselines); held back by the "
        "largest CPU cost when HTS is at 0.8 or more of its bound, by waiting when below"
    )
    return "\n\n".join(blocks)


# --- plotting ----------------------------------------------------------------------------------------

COLORS = {"hts": "#1f77b4", "sync": "#d62728", "sb3": "#2ca02c", "kostrikov": "#ff7f0e"}


def plot(result: dict, path: Path) -> None:
    """Per env count, two panels: each implementation's steps/s per game (mean, std bars), and below them the
    measured ratios (filled) beside the paper's (hollow)."""
    try:
        import matplotlib
    except ImportError:
        log(f"no PNG: matplotlib is not installed (pip install 'htsrl[bench]'); {path} not drawn")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = list(result["games"])
    env_counts = [str(n) for n in result["settings"]["num_envs"]]
    fig, axes = plt.subplots(
        2 * len(env_counts),
        1,
        figsize=(max(7, 1.1 * len(games) + 3), 6 * len(env_counts)),
        gridspec_kw={"height_ratios": [2, 1] * len(env_counts)},
        squeeze=False,
    )
    for i, num_envs in enumerate(env_counts):
        rows = [result["games"][g]["rows"].get(num_envs) for g in games]
        plot_rates(axes[2 * i, 0], result, games, rows, num_envs)
        plot_ratios(axes[2 * i + 1, 0], result, games, rows)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rates(ax, result: dict, games: list[str], rows: list[dict | None], num_envs: str) -> None:
    impls = result["settings"]["implementations"]
    width = 0.8 / len(impls)
    for i, impl in enumerate(impls):
        stats = [row["sps"].get(impl) if row else None for row in rows]
        ax.bar(
            [x + (i - (len(impls) - 1) / 2) * width for x in range(len(games))],
            [s["mean"] if s else 0 for s in stats],
            width,
            yerr=[s["std"] if s else 0 for s in stats],
            capsize=2,
            color=COLORS[impl],
            label=LABELS[impl],
        )
    ax.set_xticks(range(len(games)), games)
    ax.set_ylabel("agent steps / s")
    ax.set_title(
        f"A2C, {num_envs} envs, alpha {result['settings']['alpha']}, {result['settings']['device']} "
        f"({result['machine']['cpu_count']} cores), mean and std over {result['settings']['reps']} reps"
    )
    ax.legend(fontsize=8, ncol=len(impls), loc="lower right")


def plot_ratios(ax, result: dict, games: list[str], rows: list[dict | None]) -> None:
    pairs = [(impl, ref) for impl, ref in PAPER_REFERENCE.items() if impl in result["settings"]["implementations"]]
    for i, (impl, reference) in enumerate(pairs):
        x0 = (i - (len(pairs) - 1) / 2) * 0.3
        measured = [row["ratios"].get(f"hts/{impl}") if row else None for row in rows]
        paper = [row["ratios"].get(f"paper hts_rl/{reference}") if row else None for row in rows]
        xs = [x + x0 for x in range(len(games))]
        ax.plot([x - 0.06 for x in xs], measured, "D", color=COLORS[impl], label=f"HTS / {LABELS[impl]}")
        label = f"paper: HTS-RL / {PAPER_LABELS[reference]} ({PAPER_NUM_ENVS} envs, GPU)"
        ax.plot([x + 0.06 for x in xs], paper, "D", mfc="none", color=COLORS[impl], label=label)
    ax.axhline(1.0, color="#999", lw=0.8)
    ax.set_xticks(range(len(games)), games)
    ax.set_xlim(-0.5, len(games) - 0.5)
    ax.set_ylim(0, 1.25 * ax.get_ylim()[1])
    ax.set_ylabel("steps/s ratio")
    ax.set_title("HTS's ratios: measured (filled) and the paper's (hollow)", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="best")


# --- main --------------------------------------------------------------------------------------------


def estimate_s(games: int, args: argparse.Namespace, implementations: list[str]) -> float:
    per_rep = sum(START_S[i] + args.steps / ASSUMED_SPS[i] for i in implementations)
    return games * len(args.num_envs) * args.reps * per_rep


def is_ale_game(game: str) -> bool:
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    return f"ALE/{game}-v5" in gymnasium.registry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    usage = (
        __doc__.split("\n\nKostrikov's venv, step by step")[0] + "\n\n(Kostrikov's venv: see this file's docstring.)"
    )
    p = argparse.ArgumentParser(description=usage, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--games", nargs="+", default=list(PAPER_TABLE1), help="Atari games (default: the paper's 12)")
    p.add_argument("--num-envs", nargs="+", type=int, default=[PAPER_NUM_ENVS, 8], help="env counts (default 16 8)")
    p.add_argument("--reps", type=int, default=3, help="repetitions, interleaved (default 3)")
    p.add_argument("--steps", type=int, default=3200, help="agent steps per run (default 3200)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="learner (and SB3/Kostrikov) device")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16", "default"),
        help="htsrl's precision: fp32 (default, as the others), bf16, or htsrl's own default (bf16 on CPUs with it)",
    )
    p.add_argument("--kostrikov", type=Path, help="a checkout of ikostrikov/pytorch-a2c-ppo-acktr-gail")
    p.add_argument("--kostrikov-python", type=Path, help="the python of its venv (default KOSTRIKOV/venv/bin/python)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON (the PNG goes beside it)")
    p.add_argument("--plot-only", type=Path, metavar="JSON", help="print the table and redraw the PNG of a saved JSON")
    args = p.parse_args(argv)
    if args.reps < 1 or args.steps < 1 or min(args.num_envs) < 1:
        p.error("--reps, --steps and --num-envs must be positive")
    unknown = [] if args.plot_only else [g for g in args.games if not is_ale_game(g)]
    if unknown:
        p.error(f"no Atari game {unknown} (ALE/<Game>-v5; the paper's: {' '.join(PAPER_TABLE1)})")
    if args.kostrikov:
        args.kostrikov = args.kostrikov.resolve()
        args.kostrikov_python = args.kostrikov_python or args.kostrikov / "venv" / "bin" / "python"
        if not (args.kostrikov / "main.py").exists() or not args.kostrikov_python.exists():
            p.error(f"--kostrikov needs {args.kostrikov}/main.py and the python {args.kostrikov_python}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plot_only:
        result = json.loads(args.plot_only.read_text())
        print(format_table(result))
        plot(result, args.plot_only.with_suffix(".png"))
        return 0
    implementations = [i for i in IMPLEMENTATIONS if i != "kostrikov" or args.kostrikov]
    result = load_or_start(args.out, settings_of(args, implementations), args)
    todo = [g for g in args.games if g not in result["games"]]
    runs = len(todo) * len(args.num_envs) * args.reps * len(implementations)
    log(
        f"{runs} runs: {len(todo)} games x {len(args.num_envs)} env counts x {args.reps} reps x "
        f"{len(implementations)} implementations ({len(args.games) - len(todo)} games already in {args.out}); "
        f"about {estimate_s(len(todo), args, implementations) / 60:.0f} min on a quiet 2-core machine"
    )
    started = time.perf_counter()
    for done, game in enumerate(todo, 1):
        result["games"][game] = summarize_game(game, measure_game(game, args, implementations), args.num_envs)
        save(result, args.out)
        elapsed = time.perf_counter() - started
        log(f"{game} saved; {elapsed / 60:.1f} min so far, about {elapsed / done * (len(todo) - done) / 60:.0f} left")
    print(format_table(result))
    plot(result, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
