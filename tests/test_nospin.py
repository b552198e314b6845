"""Invariant 4: waiting processes block. With an env that sleeps 20 ms per step, every role spends
almost all its time waiting, and must burn under 5% of a core doing it, forked or spawned."""

import pytest


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_blocked_roles_burn_no_cpu(run, start_method):
    s = run(
        start_method=start_method,
        env="htsrl/Counter-v0",
        env_kwargs={"sleep_s": 0.02},
        preset="classic-ppo",
        num_envs=2,
        alpha=20,
        total_steps=2 * 20 * 6,
        num_executors=1,
        num_actors=2,
        epochs=1,
        minibatches=1,
    )
    wall = s["wall_time_s"]
    assert wall > 2.0
    split = s["time_split"]
    assert split["actors"]["cpu_s"] / 2 < 0.05 * wall, split
    assert split["executors"]["cpu_s"] < 0.05 * wall + 0.5, split  # +0.5 s: slack on a loaded machine
    learner_wait_cpu = split["learner"]["cpu_s"] - split["learner"]["learn_s"]
    assert split["learner"]["wait_s"] > 0.5 * wall
    assert learner_wait_cpu < 0.05 * wall, split


def test_role_clock_charges_each_phase_once():
    """The helper behind time_split: laps are back to back, a mark skips time, flush publishes."""
    import time

    import numpy as np

    from htsrl.engine.clock import RoleClock
    from htsrl.engine.shm import STAT

    row = np.zeros(len(STAT))
    clock = RoleClock(row)
    time.sleep(0.02)
    clock.mark()  # the sleep above is charged to nothing
    time.sleep(0.01)
    clock.lap("wait_s")
    clock.lap("env_s")
    assert not row.any()  # nothing published before a flush
    clock.flush()
    assert 0.01 <= row[STAT["wait_s"]] < 0.02 and row[STAT["env_s"]] < 0.005
    assert row[STAT["cpu_s"]] == time.process_time() or row[STAT["cpu_s"]] > 0
    clock.flush()  # flushing again adds nothing
    assert 0.01 <= row[STAT["wait_s"]] < 0.02
    main_row = np.zeros(len(STAT))
    RoleClock(main_row, cpu=False).flush()
    assert main_row[STAT["cpu_s"]] == 0.0  # the main process's CPU is the runner's to record
