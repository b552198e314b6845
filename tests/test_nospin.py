"""Invariant 4: waiting processes block. With an env that sleeps 20 ms per step, every role spends
almost all its time waiting, and must burn under 5% of a core doing it."""


def test_blocked_roles_burn_no_cpu(run):
    s = run(env="htsrl/Counter-v0", env_kwargs={"sleep_s": 0.02}, preset="classic-ppo", num_envs=2,
            alpha=20, total_steps=2 * 20 * 6, num_executors=1, num_actors=2, epochs=1, minibatches=1)
    wall = s["wall_time_s"]
    assert wall > 2.0
    split = s["time_split"]
    assert split["actors"]["cpu_s"] / 2 < 0.05 * wall, split
    assert split["executors"]["cpu_s"] < 0.05 * wall + 0.5, split  # +0.5 s: env construction and reset
    learner_wait_cpu = split["learner"]["cpu_s"] - split["learner"]["learn_s"]
    assert split["learner"]["wait_s"] > 0.5 * wall
    assert learner_wait_cpu < 0.05 * wall, split
