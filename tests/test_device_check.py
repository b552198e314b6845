"""The CPU fallback of benchmarks/device_check.sh (the GPU run happens on a GPU machine)."""

import json
import os
import subprocess

from conftest import REPO


def test_device_check_cpu_fallback(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "DEVICE_CHECK_TINY": "1", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        ["bash", "benchmarks/device_check.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    matrix = json.loads((tmp_path / "matrix.json").read_text())
    assert matrix["device"] == "cpu" and matrix["matrix"]["CartPole-v1"]["all_equal"]
    spawned = matrix["matrix"]["CartPole-v1 spawned-cpu-actors"]  # spawned CPU actors, checked against forked ones
    assert spawned["all_equal"] and set(spawned["layouts"]) == {"2x1", "forked"}
    summary = json.loads((tmp_path / "device_check.json").read_text())
    assert summary["matrix_all_equal"]
    for algo in ("a2c", "ppo"):
        modes = [row["mode"] for row in summary["bench"][algo]]
        assert modes[:3] == ["raw", "sync", "hts"]
        assert (tmp_path / f"bench_{algo}" / "bench.png").exists()


def test_gpu_pong_point_cpu_fallback(tmp_path):
    """benchmarks/gpu_pong.sh (issue 35's GPU point) stops its Pong run at a barrier and reports how far it
    got; only the small files come back, never a checkpoint. On CPU it is bounded by steps (two windows),
    not by its wall time, so a slow machine reaches the same point."""
    env = {
        **os.environ,
        "OUT": str(tmp_path),
        "GPU_PONG_SECONDS": "400",
        "GPU_PONG_STOP_AT_STEPS": "4096",
        "CUDA_VISIBLE_DEVICES": "",
    }
    out = subprocess.run(
        ["bash", "benchmarks/gpu_pong.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads((tmp_path / "gpu_pong.json").read_text())
    assert result["device"] == "cpu" and result["config"]["num_envs"] == 16
    assert result["env_steps"] == 4096  # two whole windows of 16 envs x 128 steps
    assert 0 < result["steps_per_s"] < 10_000 and result["seconds"] < 400
    with open(tmp_path / "pong-cpu16__s1.curve.csv") as f:
        assert f.readline().strip() == "agent_steps,wall_s,score_last_100,games"
    assert not list(tmp_path.rglob("*.pt"))
