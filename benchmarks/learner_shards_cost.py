"""Learner cost per sample of one PPO minibatch step on the Nature CNN: one pass on 1 or 2 torch threads
against ``--learner-shards 2`` (two parts on two threads of one torch thread each, ``LearnerShards``).

Breakout-shaped uint8 observations, a minibatch of 256 (atari-ppo: 8 envs x 128 steps / 4), forward,
backward and an Adam step; ``--precision`` bf16 (the default on a CPU that has it) or fp32. Prints the wall
and CPU milliseconds per sample, medians of ``--reps`` steps, the configurations interleaved twice so a
drift of the machine shows. Run it on an idle machine.

    python benchmarks/learner_shards_cost.py --precision bf16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from htsrl.algos.step import LearnerShards
from htsrl.nn import build_model

BATCH = 256


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    p.add_argument("--reps", type=int, default=15)
    args = p.parse_args()
    torch.manual_seed(0)
    model = build_model((4, 84, 84), 4, precision=args.precision)
    optimizer = torch.optim.Adam(model.parameters(), lr=2.5e-4)
    obs = torch.randint(0, 255, (BATCH, 4, 84, 84), dtype=torch.uint8)
    target = torch.randn(BATCH)

    def part(rows: torch.Tensor):
        def run():
            logits, value = model(obs[rows])
            return ((value - target[rows]) ** 2).sum() / BATCH + logits.logsumexp(-1).sum() / BATCH, None

        return run

    everything = torch.arange(BATCH)
    shards = LearnerShards(2)

    def one_pass(threads: int):
        torch.set_num_threads(threads)
        LearnerShards(1).backward(model, optimizer, [part(everything)])
        optimizer.step()

    def two_shards(_):
        torch.set_num_threads(1)
        shards.backward(model, optimizer, [part(rows) for rows in everything.tensor_split(2)])
        optimizer.step()

    configs = [("one pass, 1 thread", one_pass, 1), ("one pass, 2 threads", one_pass, 2), ("2 shards", two_shards, 0)]
    print(f"{args.precision}, minibatch {BATCH}: ms per sample, median of {args.reps} steps")
    print(f"{'':<22} {'wall':>7} {'CPU':>7}")
    try:
        for _ in range(2):
            for name, step, arg in configs:
                for _ in range(3):
                    step(arg)
                wall, cpu = [], []
                for _ in range(args.reps):
                    t, c = time.perf_counter(), time.process_time()
                    step(arg)
                    wall.append(time.perf_counter() - t)
                    cpu.append(time.process_time() - c)
                per = 1e3 / BATCH
                print(f"{name:<22} {statistics.median(wall) * per:>7.3f} {statistics.median(cpu) * per:>7.3f}")
    finally:
        shards.close()


if __name__ == "__main__":
    main()
