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


MODELS = {  # (obs shape, obs dtype, action spec, build_model options)
    "mlp": ((4,), "float32", 2, {}),
    "mlp-box": ((3,), "float32", "box1", {}),
    "gru": ((4,), "float32", 2, {"recurrent": "gru"}),
    "cnn-bf16": ((4, 84, 84), "uint8", 4, {"precision": "bf16"}),
}


def _published(name):
    """A model, and buffers holding its weights in both parameter slots."""
    import numpy as np
    import torch

    from htsrl.distributions import BOX, ActionSpec
    from htsrl.engine.shm import RolloutBuffers
    from htsrl.nn import build_model, flat_size, flatten_params

    shape, dtype, action, options = MODELS[name]
    spec = ActionSpec(BOX, low=(-2.0,), high=(2.0,)) if action == "box1" else ActionSpec.discrete(action)
    torch.manual_seed(0)
    model = build_model(shape, spec, **options).eval()
    state = model.state_size if hasattr(model, "state_size") else 0
    bufs = RolloutBuffers(8, 2, shape, np.dtype(dtype), flat_size(model), 1, action_spec=spec, state_size=state)
    for version in (1, 2):  # slot 1, then slot 0
        bufs.publish(flatten_params(model), version)
    return model, spec, bufs


@pytest.mark.parametrize("name", sorted(MODELS))
def test_published_parameters_start_64_byte_aligned_in_both_slots(name):
    """Each parameter an actor binds is a view into a slot of the published vector; it starts on a 64-byte
    boundary, as a tensor of its own does. Unaligned, some GEMM kernels (MKL on AMD EPYC) round the last
    bit differently, so a forward depended on the slot: a resumed run, which publishes into the other
    slot than the uninterrupted run did, gave other values (issue 28)."""
    import torch

    from htsrl.nn import bind_params, build_model

    model, _, bufs = _published(name)
    assert bufs.params.ctypes.data % 64 == 0 and bufs.params.strides[0] % 64 == 0
    for slot in (0, 1):
        view = build_model(*[MODELS[name][0], model.action_spec], **MODELS[name][3])
        bind_params(view, bufs.params_tensor(slot))
        for (key, p), (_, q) in zip(view.named_parameters(), model.named_parameters()):
            assert p.data_ptr() % 64 == 0, (slot, key, p.data_ptr() % 64)
            assert torch.equal(p, q), (slot, key)


@pytest.mark.parametrize("name", ["mlp", "mlp-box", "gru"])
def test_an_actor_computes_what_the_learner_computes_in_either_slot(name):
    """Same weights, same observations: the actors' forward (on the published views) equals the learner
    network's forward bitwise, whichever slot the weights sit in and for every group size."""
    import numpy as np
    import torch

    from htsrl.engine.actor import Policy

    model, spec, bufs = _published(name)
    policy = Policy(MODELS[name][0], spec, bufs, MODELS[name][3])
    rng = np.random.default_rng(0)
    bufs.starts[0, 0] = True
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as an actor
    try:
        _act_in_both_slots(name, model, policy, bufs, rng)
    finally:
        torch.set_num_threads(threads)


def _act_in_both_slots(name, model, policy, bufs, rng):
    import numpy as np
    import torch

    for slot in (0, 1):
        bufs.params_slot[0] = slot
        for size in (1, 2, 3, 4, 8):
            bufs.obs[0, 0] = rng.normal(size=bufs.obs.shape[2:]).astype(np.float32)
            bufs.uniforms[0, 0] = rng.random(bufs.uniforms.shape[2:])
            policy.act(0, 0, slice(0, size))
            obs = torch.from_numpy(bufs.obs[0, 0, :size].copy())
            with torch.inference_mode():
                if name == "gru":
                    _, value, _, state = model.step(
                        obs, torch.zeros(size, model.state_size), torch.ones(size, dtype=bool)
                    )
                    assert np.array_equal(bufs.hidden[0, 1, :size], state.numpy()), (slot, size)
                else:
                    _, value = model(obs)
            assert np.array_equal(bufs.value[0, 0, :size], value.numpy()), (slot, size)
