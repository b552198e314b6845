"""Actor inference cost of the Nature CNN per sample: fp32, bf16 under autocast (the weights recast at every
call), and bf16 with the trunk copy the actors keep (``NatureCNN.cache_bf16_trunk``), at batch sizes 1-8.

One torch thread, as an actor runs; Breakout-shaped uint8 observations; median of 5 blocks of ``--calls``
forwards. Prints ms per sample and whether the trunk copy gives autocast's logits and values bitwise.

    python benchmarks/inference_cost.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from htsrl.nn import build_model


def per_sample_ms(forward, obs: torch.Tensor, calls: int) -> float:
    for _ in range(10):
        forward(obs)
    blocks = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            forward(obs)
        blocks.append((time.perf_counter() - start) / calls / obs.shape[0] * 1e3)
    return statistics.median(blocks)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    args = p.parse_args()
    torch.set_num_threads(1)
    fp32 = build_model((4, 84, 84), 4).eval()
    autocast = build_model((4, 84, 84), 4, precision="bf16").eval()
    autocast.load_state_dict(fp32.state_dict())
    copied = build_model((4, 84, 84), 4, precision="bf16").eval()
    copied.load_state_dict(fp32.state_dict())
    copied.cache_bf16_trunk()
    print("batch  fp32  bf16-autocast  bf16-copy  (ms per sample)  copy == autocast")
    with torch.inference_mode():
        for b in args.batches:
            obs = torch.randint(0, 255, (b, 4, 84, 84), dtype=torch.uint8)
            same = all(torch.equal(x, y) for x, y in zip(autocast(obs), copied(obs)))
            times = [per_sample_ms(m, obs, args.calls) for m in (fp32, autocast, copied)]
            print(f"{b:>5} {times[0]:>5.2f} {times[1]:>14.2f} {times[2]:>10.2f} {'':>16} {same}")


if __name__ == "__main__":
    main()
