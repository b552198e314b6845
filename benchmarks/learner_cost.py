"""Learner cost per sample: the current A2C/PPO update against the one at an older commit, interleaved.

Breakout-shaped random windows (obs (4, 84, 84) uint8, Nature CNN, 4 actions) at the Atari presets:
PPO 8 envs x alpha 128, 4 epochs x 4 minibatches, clipped value loss, normalized advantages, Adam;
A2C 16 envs x alpha 5, RMSprop, n-step returns. The stored behaviour values (``Window.value``) are
filled as the actors would, outside the timed region.

Each repetition times ``--updates`` updates of each path, old and new in alternating order, on its own
copy of the model and optimizer. Printed: milliseconds per sample (CPU time of the process via
``time.process_time``, all threads, and wall time), medians over repetitions, and the new/old ratio
(median of the per-repetition ratios, so that machine noise common to a pair cancels). Beside the times,
a noise-free measure of the work: rows the model forwards with and without gradients, and the FLOPs
of one update (``torch.utils.flop_counter``: convolutions and matmuls, forward and backward), per
sample. The old code is read with ``git show <commit>:htsrl/algos/{<algo>,returns,guards}.py``;
without it (``--no-compare``, or the commit or its imports gone) only the new path is timed.

The new path runs with the Config defaults, the preset and ``mode="hts"``; ``--set KEY=VALUE`` changes
any field (e.g. ``--set proximal='"behaviour"'`` where that option exists, for the stored-values path).

    python benchmarks/learner_cost.py --reps 7 --json learner_cost.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils.flop_counter import FlopCounterMode

from htsrl.algos import a2c_update, make_optimizer, ppo_update
from htsrl.algos.returns import Window
from htsrl.config import PRESETS, Config
from htsrl.nn import build_model

REPO = Path(__file__).resolve().parents[1]
OLD_COMMIT = "03654c2"  # the last commit that recomputed every PPO value and ran A2C's bootstrap row with gradients
OBS_SHAPE, ACTIONS = (4, 84, 84), 4
PRESET = {"ppo": "atari-ppo", "a2c": "atari-a2c"}


def load_old(algo: str, commit: str):
    """The ``<algo>_update`` function of htsrl/algos/<algo>.py at ``commit`` (with that commit's
    returns.py and guards.py, so that later changes to those do not break it), or None."""
    try:
        import htsrl.distributed

        local = "Local" if hasattr(htsrl.distributed, "Local") else "SingleProcess"  # renamed after 03654c2
        pkg = f"learner_cost_old_{algo}"
        root = Path(tempfile.mkdtemp(prefix="learner_cost_")) / pkg
        root.mkdir()
        (root / "__init__.py").write_text("")
        for name in ("guards", "returns", algo):
            src = subprocess.run(
                ["git", "show", f"{commit}:htsrl/algos/{name}.py"], cwd=REPO, check=True, capture_output=True, text=True
            ).stdout
            src = src.replace("from htsrl.algos.", f"from {pkg}.")
            (root / f"{name}.py").write_text(src.replace("import Local\n", f"import {local} as Local\n"))
        sys.path.insert(0, str(root.parent))
        try:
            mod = importlib.import_module(f"{pkg}.{algo}")
        finally:
            sys.path.remove(str(root.parent))
        return getattr(mod, f"{algo}_update")
    except (subprocess.CalledProcessError, ImportError, AttributeError, OSError) as e:
        print(
            f"[learner_cost] no old {algo} path at {commit} ({type(e).__name__}: {e}): timing the new one only",
            file=sys.stderr,
        )
        return None


def make_window(model, T: int, N: int, seed: int) -> Window:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 256, (T + 1, N, *OBS_SHAPE), generator=g, dtype=torch.uint8)
    with torch.no_grad():  # what the actors store; not part of the learner's cost
        logits, value = model(obs[:T].flatten(0, 1))
    logp_all = torch.log_softmax(logits, -1).view(T, N, -1)
    actions = torch.randint(0, ACTIONS, (T, N), generator=g)
    return Window(
        obs=obs,
        final_obs=torch.zeros(T, N, *OBS_SHAPE, dtype=torch.uint8),
        actions=actions,
        logp=logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1),
        reward=(torch.rand(T, N, generator=g) < 0.05).float(),
        terminated=torch.rand(T, N, generator=g) < 0.002,
        truncated=torch.zeros(T, N, dtype=torch.bool),
        value=value.view(T, N),
    )


class RowCounter(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.grad_rows, self.nograd_rows = inner, 0, 0

    def forward(self, obs):
        if torch.is_grad_enabled():
            self.grad_rows += obs.shape[0]
        else:
            self.nograd_rows += obs.shape[0]
        return self.inner(obs)


def work(fn, algo, cfg, model, w) -> dict:
    """Rows and FLOPs of one update, per sample, on a throwaway copy of the model."""
    m = RowCounter(copy.deepcopy(model))
    opt = make_optimizer(cfg, m)
    with FlopCounterMode(display=False) as fc:
        if algo == "a2c":
            fn(cfg, m, opt, w)
        else:
            fn(cfg, m, opt, w, torch.Generator().manual_seed(0))
    samples = w.actions.numel()
    return {
        "grad_rows": m.grad_rows / samples,
        "nograd_rows": m.nograd_rows / samples,
        "mflop": fc.get_total_flops() / samples / 1e6,
    }


def make_cfg(algo: str, overrides: dict) -> SimpleNamespace:
    """Config defaults (so fields added later have their defaults), the Atari preset, HTS mode."""
    return SimpleNamespace(
        **{**dataclasses.asdict(Config()), **PRESETS[PRESET[algo]], "algo": algo, "mode": "hts", **overrides}
    )


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def run_algo(algo: str, reps: int, updates: int, old_fn, seed: int, overrides: dict) -> dict:
    cfg = make_cfg(algo, overrides)
    T, N = cfg.alpha, cfg.num_envs
    torch.manual_seed(seed)
    model = build_model(OBS_SHAPE, ACTIONS)
    w = make_window(model, T, N, seed)
    new_fn = a2c_update if algo == "a2c" else ppo_update
    paths = {"new": new_fn} if old_fn is None else {"old": old_fn, "new": new_fn}
    state = {}
    for name in paths:
        m = copy.deepcopy(model)
        state[name] = (m, make_optimizer(cfg, m), torch.Generator().manual_seed(seed))

    def one(name):
        m, opt, gen = state[name]
        if algo == "a2c":
            paths[name](cfg, m, opt, w)
        else:
            paths[name](cfg, m, opt, w, gen)

    flops = {name: work(fn, algo, cfg, model, w) for name, fn in paths.items()}
    for name in paths:  # warm-up: allocator, oneDNN primitives, optimizer state
        one(name)
    samples = updates * T * N
    times = {name: {"cpu_ms": [], "wall_ms": []} for name in paths}
    for rep in range(reps):
        order = list(paths) if rep % 2 == 0 else list(reversed(paths))
        for name in order:
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(updates):
                one(name)
            c1, t1 = time.process_time(), time.perf_counter()
            times[name]["cpu_ms"].append(1e3 * (c1 - c0) / samples)
            times[name]["wall_ms"].append(1e3 * (t1 - t0) / samples)
        print(
            f"[learner_cost] {algo} rep {rep + 1}/{reps}: "
            + ", ".join(
                f"{n} {times[n]['cpu_ms'][-1]:.3f} cpu / {times[n]['wall_ms'][-1]:.3f} wall ms/sample" for n in paths
            ),
            file=sys.stderr,
            flush=True,
        )
    out = {
        "algo": algo,
        "preset": PRESET[algo],
        "num_envs": N,
        "alpha": T,
        "epochs": cfg.epochs,
        "minibatches": cfg.minibatches,
        "overrides": overrides,
        "updates_per_rep": updates,
        "reps": reps,
        "samples_per_update": T * N,
        "work_per_sample": flops,
        "runs": times,
        "median": {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()},
    }
    if "old" in paths:
        out["new_over_old"] = {
            k: statistics.median(n / o for n, o in zip(times["new"][k], times["old"][k])) for k in ("cpu_ms", "wall_ms")
        }
        out["new_over_old"]["mflop"] = flops["new"]["mflop"] / flops["old"]["mflop"]
    return out


def format_table(results: list[dict]) -> str:
    head = (
        f"{'algo':<5} {'path':<4} {'rows/sample grad+nograd':>24} {'MFLOP/sample':>13} {'cpu ms/sample':>14} "
        f"{'wall ms/sample':>15} {'new/old MFLOP':>14} {'new/old cpu':>12} {'new/old wall':>13}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        for name, med in r["median"].items():
            wk = r["work_per_sample"][name]
            ratio = r.get("new_over_old") if name == "new" else None
            rows = f"{wk['grad_rows']:.3f} + {wk['nograd_rows']:.3f}"
            ratios = f"{ratio['mflop']:>14.3f} {ratio['cpu_ms']:>12.3f} {ratio['wall_ms']:>13.3f}" if ratio else ""
            lines.append(
                f"{r['algo']:<5} {name:<4} {rows:>24} {wk['mflop']:>13.1f} {med['cpu_ms']:>14.3f} "
                f"{med['wall_ms']:>15.3f} {ratios}"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", nargs="+", default=["ppo", "a2c"], choices=["ppo", "a2c"])
    p.add_argument("--reps", type=int, default=5, help="repetitions (medians over these)")
    p.add_argument(
        "--updates", type=int, nargs=2, default=[1, 10], metavar=("PPO", "A2C"), help="updates per repetition and path"
    )
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--old", default=OLD_COMMIT, help="commit whose htsrl/algos/<algo>.py is the old path")
    p.add_argument("--no-compare", action="store_true", help="time the new path only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help='config overrides for the new path (JSON values), e.g. mode="sync"',
    )
    p.add_argument("--json", type=Path, help="write the results here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    results = []
    for algo in a.algo:
        old = None if a.no_compare else load_old(algo, a.old)
        results.append(
            run_algo(algo, a.reps, a.updates[0] if algo == "ppo" else a.updates[1], old, a.seed, parse_set(a.set))
        )
    print(format_table(results))
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "threads": a.threads,
                    "old_commit": None if a.no_compare else a.old,
                    "torch": torch.__version__,
                    "python": platform.python_version(),
                    "machine": platform.processor() or platform.machine(),
                    "results": results,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
