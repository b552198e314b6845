"""Claim 1 of the HTS-RL paper: what synchronization costs, lock-step versus every ``alpha`` steps.

With i.i.d. step times of rate ``lam`` (mean ``1/lam``) and ``n`` envs:

- lock-step (A2C): every step waits for the slowest env, ``E[max of n Exp(lam)] = H_n / lam``;
- batched every ``alpha`` steps: each env's window is ``Erlang(alpha, lam)``, so a step costs
  ``E[max of n Erlang(alpha, lam)] / alpha`` with
  ``E[max] = integral_0^inf 1 - P(alpha, lam t)^n dt`` (``P`` the regularized lower incomplete gamma).

For a measured step-time sample (any distribution) :func:`simulate` gives both costs by Monte Carlo.
:func:`fit_window_sums` checks the paper's modelling assumption: sums of ``k`` step times follow a
Gamma distribution (Kolmogorov-Smirnov test).
"""

from __future__ import annotations

import numpy as np
from scipy import integrate, special, stats


def harmonic(n: int) -> float:
    return float(np.sum(1.0 / np.arange(1, n + 1)))


def lockstep_cost(n: int, lam: float = 1.0) -> float:
    """Expected wall time per step (all envs) of lock-step synchronization, exponential step times."""
    return harmonic(n) / lam


def expected_max_erlang(n: int, alpha: int, lam: float = 1.0) -> float:
    """E[max of n i.i.d. Erlang(alpha, lam)] by numerical integration."""

    def tail(t: float) -> float:
        return 1.0 - special.gammainc(alpha, lam * t) ** n

    mean = alpha / lam
    # The integrand is ~1 up to the mean and vanishes a few standard deviations beyond it.
    upper = mean + 20.0 * np.sqrt(alpha) / lam + 20.0 / lam * np.log(n + 1)
    value, _ = integrate.quad(tail, 0.0, upper, limit=400, points=[mean])
    return float(value)


def batched_cost(n: int, alpha: int, lam: float = 1.0) -> float:
    """Expected wall time per step when all envs meet every ``alpha`` steps, exponential step times."""
    return expected_max_erlang(n, alpha, lam) / alpha


def predicted_speedup(n: int, alpha: int) -> float:
    """Rollout speedup of batched synchronization over lock-step (exponential step times)."""
    return lockstep_cost(n) / batched_cost(n, alpha)


def simulate(step_times: np.ndarray, n: int, alpha: int, windows: int = 2000, seed: int = 0) -> dict:
    """Monte Carlo of both schedules on step times resampled from a measured sample."""
    rng = np.random.default_rng(seed)
    draws = rng.choice(np.asarray(step_times, dtype=float), size=(windows, alpha, n))
    lockstep = draws.max(axis=2).mean()
    batched = draws.sum(axis=1).max(axis=1).mean() / alpha
    return {
        "lockstep_cost": float(lockstep),
        "batched_cost": float(batched),
        "speedup": float(lockstep / batched),
        "mean_step": float(draws.mean()),
    }


def fit_window_sums(step_times: np.ndarray, k: int = 100) -> dict:
    """Fit a Gamma to the sums of every ``k`` consecutive step times and KS-test the fit."""
    x = np.asarray(step_times, dtype=float)
    sums = x[: len(x) // k * k].reshape(-1, k).sum(axis=1)
    if len(sums) < 8:
        raise ValueError(f"need at least {8 * k} step times for a fit, got {len(x)}")
    shape, loc, scale = stats.gamma.fit(sums, floc=0.0)
    ks = stats.kstest(sums, "gamma", args=(shape, loc, scale))
    return {
        "k": k,
        "num_sums": int(len(sums)),
        "shape": float(shape),
        "scale": float(scale),
        "ks_D": float(ks.statistic),
        "ks_p": float(ks.pvalue),
        "sums": sums,
    }


def cost_table(ns=(4, 8, 16, 32), alphas=(1, 4, 16, 64, 128, 512)) -> dict[int, dict[int, float]]:
    """Per-step cost times lambda; alpha = 1 is lock-step (DESIGN.md section 4)."""
    return {n: {a: (lockstep_cost(n) if a == 1 else batched_cost(n, a)) for a in alphas} for n in ns}
