"""``htsrl steptime``: record an env's step times under random actions, fit a Gamma to the sums of
every ``k`` step times and test the fit (Kolmogorov-Smirnov), as the HTS-RL paper does to justify
the Claim 1 model (it reports D = 0.04 at significance 0.05 on academy_3_vs_1_with_keeper)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from htsrl.analysis.claim1 import fit_window_sums
from htsrl.envs import make_env, probe_env


def record_step_times(env_id: str, steps: int, env_kwargs: dict | None = None, seed: int = 0):
    probe_env(env_id, env_kwargs)
    env = make_env(env_id, env_kwargs)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    n = env.action_space.n
    step_times, reset_times = np.empty(steps), []
    for i in range(steps):
        a = int(rng.integers(n))
        t0 = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(a)
        step_times[i] = time.perf_counter() - t0
        if terminated or truncated:
            t0 = time.perf_counter()
            env.reset()
            reset_times.append(time.perf_counter() - t0)
    env.close()
    return step_times, np.array(reset_times)


def steptime_report(env_id: str, steps: int, out_dir: Path, k: int = 100, env_kwargs: dict | None = None) -> dict:
    step_times, reset_times = record_step_times(env_id, steps, env_kwargs)
    fit = fit_window_sums(step_times, k)
    sums = fit.pop("sums")
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "step_times.npy", step_times)
    result = {
        "env": env_id,
        "steps": steps,
        "mean_step_ms": 1e3 * step_times.mean(),
        "cv": float(step_times.std() / step_times.mean()),
        "max_step_ms": 1e3 * step_times.max(),
        "resets": int(len(reset_times)),
        "mean_reset_ms": 1e3 * float(reset_times.mean()) if len(reset_times) else None,
        **fit,
        "gamma_fits_at_0.05": fit["ks_p"] > 0.05,
    }
    (out_dir / "steptime.json").write_text(json.dumps(result, indent=2))
    _histogram(sums, fit, env_id, out_dir / "steptime.png")
    return result


def _histogram(sums: np.ndarray, fit: dict, env_id: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    fig, ax = plt.subplots(figsize=(6, 4))
    ms = sums * 1e3
    ax.hist(ms, bins=40, density=True, alpha=0.6, label=f"sums of {fit['k']} step times (n={len(sums)})")
    x = np.linspace(ms.min(), ms.max(), 300)
    ax.plot(
        x,
        stats.gamma.pdf(x, fit["shape"], scale=fit["scale"] * 1e3),
        "r-",
        label=f"Gamma fit (shape {fit['shape']:.1f})",
    )
    ax.set_xlabel(f"time of {fit['k']} steps (ms)")
    ax.set_ylabel("density")
    ax.set_title(f"{env_id}: KS D = {fit['ks_D']:.3f}, p = {fit['ks_p']:.3f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
