"""--precision bf16 (issue 14): the CNN trunk in bfloat16 in the learner (autocast) and the actors (a bfloat16
copy per published version). A numerics setting: it changes the numbers, and with it fixed the layout still does not."""

import itertools
import json

import numpy as np
import pytest
import torch
from test_determinism import ATARI, _key

import htsrl.config
from htsrl.cli import main
from htsrl.config import Config, default_envs_per_group, resolve
from htsrl.distributions import ActionSpec
from htsrl.engine.actor import Policy
from htsrl.engine.shm import RolloutBuffers
from htsrl.nn import build_model, flat_size, flatten_params


@pytest.mark.parametrize("mode", ["hts", "sync"])
def test_both_precisions_keep_the_atari_matrix_and_differ(run, mode):
    """test_determinism's Atari matrix runs the default precision (bf16 on a CPU that has it); here both,
    given explicitly."""
    layouts = itertools.product([1, 2], [1, 2]) if mode == "hts" else [(2, 1)]
    refs = {}
    for precision in ("fp32", "bf16"):
        refs[precision] = ref = run(**ATARI, mode=mode, precision=precision, serial=True)
        for executors, actors in layouts:
            got = run(**ATARI, mode=mode, precision=precision, num_executors=executors, num_actors=actors)
            assert _key(got) == _key(ref), (precision, executors, actors)
    assert refs["fp32"]["params_sha256"] != refs["bf16"]["params_sha256"]


AMD_ZEN4 = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
INTEL_AMX = "vendor_id\t: GenuineIntel\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
INTEL_NO_AMX = "vendor_id\t: GenuineIntel\nflags\t\t: fpu avx512f avx512_bf16 avx512_fp16 avx512_vnni\n"


def test_bf16_is_the_default_only_on_the_cpus_where_it_measured_cheaper():
    assert htsrl.config.bf16_pays_on(INTEL_AMX)  # Breakout PPO learner 2.8 against 4.6 ms
    assert htsrl.config.bf16_pays_on(AMD_ZEN4)  # Table 1 A2C learner 0.45-0.52 against 0.59-0.66 ms
    assert not htsrl.config.bf16_pays_on(INTEL_NO_AMX)  # Pong PPO learner 4.89 against 3.98 ms
    assert not htsrl.config.bf16_pays_on(INTEL_NO_AMX.replace(" avx512_bf16", ""))  # Ice Lake: 290 against 403/s
    assert not htsrl.config.bf16_pays_on(AMD_ZEN4.replace(" avx512_bf16", ""))  # no bf16 kernels
    assert not htsrl.config.bf16_pays_on("")
    # a machine lists each core: the first one's lines are read (a later core's flags would not change it)
    assert htsrl.config.bf16_pays_on(INTEL_AMX + "\n" + INTEL_NO_AMX)


@pytest.mark.parametrize("pays", [True, False])
def test_defaults_bf16_for_atari_ppo_and_a2c_where_the_cpu_pays_fp32_elsewhere_and_old_runs_keep_fp32(
    monkeypatch, pays
):
    monkeypatch.setattr(htsrl.config, "_bf16_pays_here", lambda: pays)
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported() and pays
    assert resolve(Config(env="ALE/Breakout-v5")).precision == ("bf16" if native else "fp32")
    # on CUDA fp32 unless asked: not every GPU has bf16, and asking would initialise CUDA before the fork
    assert resolve(Config(env="ALE/Breakout-v5", device="cuda")).precision == "fp32"
    assert resolve(Config(env="ALE/Breakout-v5", actor_device="cuda", start_method="spawn")).precision == "fp32"
    assert resolve(Config(env="ALE/Breakout-v5", precision="fp32")).precision == "fp32"  # a flag wins
    assert resolve(Config(env="ALE/Breakout-v5", algo="a2c")).precision == ("bf16" if native else "fp32")
    assert resolve(Config(env="ALE/Breakout-v5", algo="a2c", mode="sync")).precision == ("bf16" if native else "fp32")
    assert resolve(Config(env="ALE/Breakout-v5", algo="impala", mode="async")).precision == "fp32"  # not measured
    assert resolve(Config(env="CartPole-v1")).precision == "fp32"
    # a run saved before --precision existed trained in fp32 and resumes so; threads were 2 then
    saved = json.loads(resolve(Config(env="ALE/Breakout-v5")).to_json())
    for key in ("precision", "learner_threads", "learner_shards"):
        del saved[key]
    old = resolve(Config.from_saved(saved))
    assert (old.precision, old.learner_threads) == ("fp32", 2)
    nulls = resolve(Config.from_saved({**saved, "precision": None, "learner_threads": None, "learner_shards": None}))
    assert (nulls.precision, nulls.learner_threads) == ("fp32", 2)


def test_default_learner_threads_and_inference_groups():
    assert resolve(Config(env="ALE/Breakout-v5")).learner_threads == 1  # hts: the rollout holds the other core
    assert resolve(Config(env="ALE/Breakout-v5", mode="async")).learner_threads == 1
    assert resolve(Config(env="ALE/Breakout-v5", mode="sync")).learner_threads == 2  # the rollout waits
    assert resolve(Config(env="ALE/Breakout-v5", learner_threads=3)).learner_threads == 3
    # at most num_envs / 4; in bf16, groups of 4 from 8 to 15 envs (cheaper per sample than 2)
    fp32 = {n: default_envs_per_group(n) for n in (1, 2, 4, 8, 12, 16, 32)}
    assert fp32 == {1: 1, 2: 1, 4: 1, 8: 2, 12: 3, 16: 4, 32: 8}
    # in bf16, up to 4 where that leaves an even number of groups (12 envs: 4 groups of 3, which two
    # executors share, not 3 groups of 4, which they could not)
    bf16 = {n: default_envs_per_group(n, bf16=True) for n in (1, 2, 4, 6, 8, 9, 10, 12, 16, 32)}
    assert bf16 == {1: 1, 2: 1, 4: 1, 6: 1, 8: 4, 9: 1, 10: 2, 12: 3, 16: 4, 32: 8}
    assert resolve(Config(env="ALE/Breakout-v5", num_envs=12, precision="bf16")).envs_per_group == 3
    assert default_envs_per_group(24, players=3, bf16=True) == 12  # 8 games: groups of 4 games
    groups = resolve(Config(env="ALE/Breakout-v5", precision="bf16")).envs_per_group  # atari-ppo: 8 envs
    assert groups == 4 and resolve(Config(env="ALE/Breakout-v5", precision="fp32")).envs_per_group == 2


def test_bf16_trunk_is_close_to_fp32_and_heads_stay_fp32():
    torch.manual_seed(0)
    fp32 = build_model((4, 84, 84), 4)
    bf16 = build_model((4, 84, 84), 4, precision="bf16")
    bf16.load_state_dict(fp32.state_dict())
    obs = torch.randint(0, 255, (8, 4, 84, 84), dtype=torch.uint8)
    (l32, v32), (l16, v16) = fp32(obs), bf16(obs)
    assert l16.dtype == v16.dtype == torch.float32
    assert not torch.equal(l32, l16)  # the trunk did run in bfloat16
    torch.testing.assert_close(l16, l32, rtol=0, atol=0.02)
    torch.testing.assert_close(v16, v32, rtol=0, atol=0.1)
    # gradients reach every fp32 weight
    (l16.sum() + v16.sum()).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in bf16.parameters())


def test_bf16_on_vector_observations_is_one_line_exit_2(tmp_path, capsys):
    args = ["train", "--env", "CartPole-v1", "--precision", "bf16", "--run-dir", str(tmp_path / "r")]
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--precision bf16 runs the CNN in bfloat16" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_bench_compares_bf16_with_fp32_side_by_side(tmp_path, capsys):
    # 8 envs: the fp32 row infers in its own default groups (2), the bf16 row in bf16's (4)
    args = ["bench", "--env", "ALE/Breakout-v5", "--num-envs", "8", "--alpha", "8", "--steps", str(8 * 8 * 4)]
    args += ["--reps", "1", "--epochs", "1", "--minibatches", "2", "--modes", "hts,hts-bf16", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "x fp32" in out and "compute bound [hts-bf16]" in out
    result = json.loads((tmp_path / "bench.json").read_text())
    rows = {row["mode"]: row for row in result["table"]}
    assert rows["hts-bf16"]["x_fp32"] == pytest.approx(rows["hts-bf16"]["sps_median"] / rows["hts"]["sps_median"])
    assert result["precision"] == {"hts": "fp32", "hts-bf16": "bf16"}
    assert result["envs_per_group"] == {"hts": 2, "hts-bf16": 4}
    assert result["learner_shards"] == {"hts": 2, "hts-bf16": 2}  # Atari PPO in hts mode, either precision
    for mode, precision in (("hts", "fp32"), ("hts-bf16", "bf16")):
        assert json.loads((tmp_path / f"{mode}_0" / "config.json").read_text())["precision"] == precision


def test_bench_bf16_modes_on_vector_observations_are_refused(tmp_path, capsys):
    assert main(["bench", "--env", "CartPole-v1", "--modes", "hts-bf16", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "-bf16 mode runs the CNN in bfloat16" in err and len(err.splitlines()) == 1, err


def test_actors_bf16_trunk_copy_equals_autocast_bitwise_and_follows_each_published_version():
    """Actors run a bfloat16 copy of the trunk, refreshed once per published version, instead of autocast
    (which recasts the weights at every call): the same numbers, and never the weights of an older version."""
    torch.manual_seed(0)
    shape, n = (4, 84, 84), 4
    first, second = (build_model(shape, 4, precision="bf16").eval() for _ in range(2))
    bufs = RolloutBuffers(n, 2, shape, np.uint8, flat_size(first), 1, action_spec=ActionSpec.discrete(4))
    bufs.obs[0, :2] = np.random.default_rng(0).integers(0, 255, (2, n, *shape), dtype=np.uint8)
    bufs.uniforms[0] = 0.5
    policy = Policy(shape, ActionSpec.discrete(4), bufs, {"precision": "bf16"})
    # versions 1, 2, 3 go to slots 1, 0, 1; the actor acts on 1 and 3 only, so it sees slot 1 twice with
    # other weights: a copy kept per slot rather than per published version would be stale there
    for version, model in enumerate((first, second, first), start=1):
        with torch.no_grad():  # a new version of the same network: every weight moves
            for p in model.parameters():
                p.mul_(1.0 + 0.01 * version)
        bufs.publish(flatten_params(model), version)
        if version == 2:
            continue
        t = version // 2
        policy.act(0, t, slice(0, n))
        slot = int(bufs.params_slot[0])
        assert policy.model.trunk_bf16 and policy.cast_version == (slot, int(bufs.params_seq[slot]))
        with torch.inference_mode():
            _, value = model(torch.from_numpy(bufs.obs[0, t]))  # autocast
            _, before = second(torch.from_numpy(bufs.obs[0, t]))
        assert np.array_equal(bufs.value[0, t], value.numpy()), version
        assert not np.array_equal(bufs.value[0, t], before.numpy())  # other weights give other values
        assert (bufs.version[0, t] == version).all()
