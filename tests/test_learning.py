"""Learning, not just running: PPO in HTS mode (lag of one) solves CartPole-v1 within 200k steps.

The classic presets are CleanRL's and SB3 zoo's settings, tuned for 500k steps; these tests give the
few flags that make CartPole learn within a CI-sized budget."""

import csv


def test_hts_ppo_solves_cartpole(run, tmp_path):
    s = run(
        env="CartPole-v1",
        algo="ppo",
        mode="hts",
        num_envs=8,
        total_steps=200_000,
        seed=1,
        lr=1e-3,
        epochs=10,
        ent_coef=0.0,
        run_dir=str(tmp_path / "cartpole"),
    )
    with open(tmp_path / "cartpole" / "progress.csv") as f:
        curve = [float(r["charts/mean_return_last_100"]) for r in csv.DictReader(f) if r["charts/mean_return_last_100"]]
    assert s["env_steps"] <= 200_704  # 200k rounded up to whole windows of 8 x 128
    assert max(curve) >= 475, f"best mean return over 100 episodes: {max(curve):.1f}"


def test_a2c_improves_on_cartpole(run, tmp_path):
    run(env="CartPole-v1", algo="a2c", num_envs=8, total_steps=60_000, seed=1, lr=1e-3, run_dir=str(tmp_path / "a2c"))
    with open(tmp_path / "a2c" / "progress.csv") as f:
        curve = [float(r["charts/mean_return_last_100"]) for r in csv.DictReader(f) if r["charts/mean_return_last_100"]]
    assert curve[-1] > 2 * curve[0] and curve[-1] > 60, (curve[0], curve[-1])
