"""Claim 1 analysis against known values, and `htsrl bench` end to end for a few seconds."""

import json

import numpy as np
import pytest

from htsrl.analysis.claim1 import (
    batched_cost,
    cost_table,
    expected_max_erlang,
    fit_window_sums,
    harmonic,
    lockstep_cost,
    predicted_speedup,
    simulate,
)
from htsrl.cli import main

# DESIGN.md section 4 (per-step cost x lambda; alpha = 1 is lock-step)
TABLE = {
    4: [2.083, 1.544, 1.267, 1.131, 1.092, 1.046],
    8: [2.718, 1.808, 1.383, 1.185, 1.129, 1.064],
    16: [3.381, 2.063, 1.489, 1.233, 1.162, 1.080],
    32: [4.058, 2.309, 1.589, 1.277, 1.192, 1.094],
}


def test_harmonic_numbers():
    assert harmonic(1) == 1.0
    assert harmonic(4) == pytest.approx(25 / 12)
    assert lockstep_cost(16, lam=2.0) == pytest.approx(harmonic(16) / 2)


def test_cost_table_matches_design():
    table = cost_table()
    for n, row in TABLE.items():
        assert list(table[n].values()) == pytest.approx(row, abs=1e-3)
    assert predicted_speedup(16, 128) == pytest.approx(2.909, abs=1e-3)


@pytest.mark.parametrize("n,alpha", [(1, 5), (4, 16), (16, 128)])
def test_erlang_max_integral_against_monte_carlo(n, alpha):
    rng = np.random.default_rng(1)
    mc = rng.gamma(alpha, 1.0, size=(400_000, n)).max(axis=1).mean()
    assert expected_max_erlang(n, alpha) == pytest.approx(mc, rel=4e-3)  # ~4 standard errors
    assert expected_max_erlang(1, alpha) == pytest.approx(alpha, rel=1e-6)  # the mean of one Erlang


def test_simulation_agrees_with_closed_form():
    rng = np.random.default_rng(2)
    sim = simulate(rng.exponential(1.0, 200_000), n=16, alpha=64, windows=3000)
    assert sim["lockstep_cost"] == pytest.approx(lockstep_cost(16), rel=0.02)
    assert sim["batched_cost"] == pytest.approx(batched_cost(16, 64), rel=0.02)


def test_gamma_fit_accepts_gamma_and_rejects_bimodal():
    rng = np.random.default_rng(3)
    good = fit_window_sums(rng.exponential(1.0, 100 * 400))
    assert good["ks_p"] > 0.05 and good["shape"] == pytest.approx(100, rel=0.2)
    bimodal = np.concatenate([rng.normal(1.0, 0.01, 100 * 200), rng.normal(5.0, 0.01, 100 * 200)])
    assert fit_window_sums(bimodal)["ks_p"] < 0.05


def test_bench_runs_on_synthetic_env(tmp_path, capsys):
    code = main(
        [
            "bench",
            "--env",
            "synthetic/exponential",
            "--env-kwargs",
            '{"mean_s": 0.001}',
            "--num-envs",
            "8",
            "--alpha",
            "16",
            "--steps",
            str(8 * 16 * 6),
            "--reps",
            "1",
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "Claim 1 [exponential (closed form)]" in out and "x sync" in out
    result = json.loads((tmp_path / "bench.json").read_text())
    assert [row["mode"] for row in result["table"]] == ["raw", "sync", "hts"]
    assert all(row["sps_median"] > 0 for row in result["table"])
    assert result["num_executors"] == 8 and result["envs_per_group"] == {"raw": 1, "sync": 1, "hts": 1}
    # each mode ran with its own default learner threads (the lock-step learner has the cores to itself)
    assert result["learner_threads"] == {"raw": 1, "sync": 2, "hts": 1}
    assert result["learner_shards"] == {"raw": 1, "sync": 1, "hts": 1}  # a vector env: one pass
    assert "learner threads: raw 1, sync 2, hts 1 | shards: raw 1, sync 1, hts 1 | precision: raw fp32" in out
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_steptime_command(tmp_path, capsys):
    code = main(
        [
            "steptime",
            "--env",
            "synthetic/gamma",
            "--env-kwargs",
            '{"mean_s": 0.0002, "cv": 0.5}',
            "--steps",
            "2000",
            "--k",
            "100",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["num_sums"] == 20 and 0 <= result["ks_D"] <= 1 and 0 <= result["ks_p"] <= 1
    assert result["mean_step_ms"] > 0.2  # it sleeps at least its step time
    assert (tmp_path / "steptime.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["steptime", "--env", "synthetic/gamma", "--steps", "100", "--out", str(tmp_path)]) == 2


@pytest.mark.parametrize("env, algo", [("CartPole-v1", "a2c"), ("Pendulum-v1", "ppo"), ("HalfCheetah-v5", "ppo")])
def test_sb3_baseline_reports_rate_and_returns(env, algo, capsys):
    """The SB3 side of `htsrl bench` and of the learning comparisons: its steady rate and the env's own
    episode returns; HalfCheetah's preset (mujoco-ppo) normalizes, so SB3 runs under VecNormalize."""
    from htsrl.baselines import sb3

    # two or more updates and episodes each, few gradient steps (the PPO presets take 320-640 per update)
    n_steps, steps = {"CartPole-v1": (256, 2560), "Pendulum-v1": (256, 1024), "HalfCheetah-v5": (512, 2048)}[env]
    args = ["--env", env, "--algo", algo, "--num-envs", "2", "--n-steps", str(n_steps), "--steps", str(steps)]
    result = sb3.main(args)
    assert result["steps"] == steps and result["steady_sps"] > 0
    assert result["episodes"] >= 2 and result["mean_return_last_100"] is not None
    assert result["normalize"] == {"obs": env == "HalfCheetah-v5", "reward": env == "HalfCheetah-v5"}
    if env == "Pendulum-v1":  # 200-step episodes of rewards in [-16.3, 0]: the env's own returns
        assert -16.3 * 200 <= result["mean_return_last_100"] <= 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
