"""CPU cost of one Atari agent step (4 emulator frames and the DeepMind preprocessing) by the inner ALE
env's observation type: ``rgb`` (ale-py's default) against ``grayscale`` (htsrl's default since
AtariPreprocessing reads the screen from the emulator itself and drops the inner observation).

Both envs live in one process and take turns in blocks of ``--steps`` random actions, so drift in the
machine's speed hits both alike; prints the median CPU ms per agent step and the ratio, and writes JSON.

    python benchmarks/atari_env_cost.py --env ALE/Breakout-v5 --blocks 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from htsrl.envs import make_env


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="ALE/Breakout-v5")
    p.add_argument("--blocks", type=int, default=40)
    p.add_argument("--steps", type=int, default=400, help="agent steps per block")
    p.add_argument("--out", default="atari_env_cost.json")
    args = p.parse_args()
    envs = {kind: make_env(args.env, {"obs_type": kind}) for kind in ("rgb", "grayscale")}
    num_actions = next(iter(envs.values())).action_space.n
    actions = np.random.default_rng(0).integers(0, num_actions, args.steps).tolist()
    for env in envs.values():
        env.reset(seed=1)
    per_step_ms: dict[str, list[float]] = {kind: [] for kind in envs}
    for block in range(args.blocks):
        order = list(envs) if block % 2 else list(envs)[::-1]
        for kind in order:
            env = envs[kind]
            start = time.process_time()
            for a in actions:
                _, _, terminated, truncated, _ = env.step(a)
                if terminated or truncated:
                    env.reset()
            per_step_ms[kind].append((time.process_time() - start) / args.steps * 1e3)
    medians = {kind: statistics.median(v) for kind, v in per_step_ms.items()}
    print(f"{args.env}: CPU ms per agent step, median of {args.blocks} blocks of {args.steps}")
    for kind, ms in medians.items():
        print(f"  inner obs_type={kind:<10} {ms:.3f}")
    print(f"  grayscale / rgb: {medians['grayscale'] / medians['rgb']:.3f}")
    with open(args.out, "w") as f:
        json.dump({"env": args.env, "median_cpu_ms_per_step": medians, "blocks_ms": per_step_ms}, f, indent=1)


if __name__ == "__main__":
    main()
