"""--precision bf16 (issue 14): the CNN trunk under bfloat16 autocast in the learner and the actors. A
numerics setting: it changes the numbers, and with it fixed the layout still does not."""

import itertools
import json

import pytest
import torch
from test_determinism import ATARI, _key

from htsrl.cli import main
from htsrl.nn import build_model


@pytest.mark.parametrize("mode", ["hts", "sync"])
def test_bf16_atari_matrix(run, mode):
    ref = run(**ATARI, mode=mode, precision="bf16", serial=True)
    layouts = itertools.product([1, 2], [1, 2]) if mode == "hts" else [(2, 1)]
    for executors, actors in layouts:
        got = run(**ATARI, mode=mode, precision="bf16", num_executors=executors, num_actors=actors)
        assert _key(got) == _key(ref), (executors, actors)
    fp32 = run(**ATARI, mode=mode, serial=True)
    assert fp32["params_sha256"] != ref["params_sha256"]


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
    args = ["bench", "--env", "ALE/Breakout-v5", "--num-envs", "4", "--alpha", "16", "--steps", str(4 * 16 * 4)]
    args += ["--reps", "1", "--epochs", "1", "--minibatches", "2", "--modes", "hts,hts-bf16", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "x fp32" in out and "compute bound [hts-bf16]" in out
    result = json.loads((tmp_path / "bench.json").read_text())
    rows = {row["mode"]: row for row in result["table"]}
    assert rows["hts-bf16"]["x_fp32"] == pytest.approx(rows["hts-bf16"]["sps_median"] / rows["hts"]["sps_median"])
    assert json.loads((tmp_path / "hts-bf16_0" / "config.json").read_text())["precision"] == "bf16"


def test_bench_bf16_modes_on_vector_observations_are_refused(tmp_path, capsys):
    assert main(["bench", "--env", "CartPole-v1", "--modes", "hts-bf16", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "-bf16 modes run the CNN in bfloat16" in err and len(err.splitlines()) == 1, err
