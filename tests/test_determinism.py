"""Invariant 1: same seed + num_envs => bitwise-identical parameters, actions, log-probs, values,
rewards and episode returns, whatever the number of executors and actors, and in serial mode."""

import itertools

import pytest

CARTPOLE = dict(env="CartPole-v1", preset="classic-ppo", num_envs=8, alpha=32, total_steps=8 * 32 * 6, seed=3)
ATARI = dict(
    env="ALE/Breakout-v5", algo="ppo", num_envs=4, alpha=16, total_steps=4 * 16 * 3, seed=5, epochs=1, minibatches=2
)
FIELDS = ("params_sha256", "rollout_sha256", "episodes", "mean_return_last_100", "updates")


def _key(summary):
    return {k: summary[k] for k in FIELDS}


@pytest.mark.parametrize("mode", ["hts", "sync"])
def test_cartpole_matrix(run, mode):
    ref = run(**CARTPOLE, mode=mode, serial=True)
    assert ref["episodes"] > 0 and ref["updates"] == 6
    layouts = itertools.product([1, 2, 4], [1, 2, 3]) if mode == "hts" else [(e, 1) for e in (1, 2, 4)]
    for executors, actors in layouts:
        got = run(**CARTPOLE, mode=mode, num_executors=executors, num_actors=actors)
        assert _key(got) == _key(ref), (executors, actors)


def test_modes_and_seeds_differ(run):
    """The hash is sensitive: another seed or the lock-step schedule gives other numbers."""
    a = run(**CARTPOLE)
    b = run(**{**CARTPOLE, "seed": 4})
    c = run(**CARTPOLE, mode="sync")
    assert len({a["params_sha256"], b["params_sha256"], c["params_sha256"]}) == 3


def test_grouping_is_a_numerics_setting(run):
    """envs_per_group is the documented inference batch: changing it may change the numbers,
    but with it fixed the layout does not."""
    a = run(**CARTPOLE, envs_per_group=4, num_executors=1, num_actors=2)
    b = run(**CARTPOLE, envs_per_group=4, num_executors=2, num_actors=1)
    assert _key(a) == _key(b)


@pytest.mark.parametrize("mode", ["hts", "sync"])
def test_atari_matrix(run, mode):
    ref = run(**ATARI, mode=mode, serial=True)
    layouts = itertools.product([1, 2, 4], [1, 2, 3]) if mode == "hts" else [(e, 1) for e in (1, 2, 4)]
    for executors, actors in layouts:
        got = run(**ATARI, mode=mode, num_executors=executors, num_actors=actors)
        assert _key(got) == _key(ref), (executors, actors)


def test_a2c_matrix(run):
    cfg = dict(env="CartPole-v1", algo="a2c", num_envs=8, alpha=5, total_steps=8 * 5 * 20, seed=2)
    ref = run(**cfg, serial=True)
    for executors, actors in [(1, 1), (2, 2), (4, 3)]:
        assert _key(run(**cfg, num_executors=executors, num_actors=actors)) == _key(ref)


def test_serial_and_parallel_are_one_rollout_protocol():
    """The runner drives either through the same methods (htsrl.engine.rollout.Rollout)."""
    import inspect

    from htsrl.engine.rollout import ParallelRollout, Rollout, SerialRollout

    members = [
        n for n, v in vars(Rollout).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))
    ]
    assert set(members) == {"pids", "start", "begin", "finish", "restart", "close"}
    for cls in (SerialRollout, ParallelRollout):
        for name in members:
            assert hasattr(cls, name), (cls.__name__, name)
            if name != "pids":
                wanted = list(inspect.signature(getattr(Rollout, name)).parameters)
                got = list(inspect.signature(getattr(cls, name)).parameters)
                assert got[: len(wanted)] == wanted, (cls.__name__, name, got)
