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
