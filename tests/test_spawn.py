"""Role processes started by spawn (``--start-method spawn``: a fresh interpreter each, as CUDA actors
need) instead of fork. They reach the shared buffers (a memfd) and the pipes through the descriptors
they are passed, and must give the forked numbers bitwise, recover from faults the same way, block
without spinning (``test_nospin.py``) and leave no orphan and nothing in /dev/shm."""

import json
import os
import signal
import subprocess
import time

import psutil
import pytest
from conftest import assert_all_gone, assert_sigkill_recovered, finish_cli, shm_entries, start_cli, wait_for_pids
from test_determinism import CARTPOLE, _key

from htsrl.cli import main
from htsrl.errors import ConfigError

FAULTY = ["--env", "htsrl/Faulty-v0", "--num-envs", "4", "--alpha", "16", "--epochs", "1", "--minibatches", "1"]
SLOW = ["--env-kwargs", '{"fail_at": -1, "sleep_s": 0.002}', "--total-steps", str(4 * 16 * 60)]


def _spawned_children() -> list[str]:
    """The command lines of this process's children that were started by spawn."""
    return [" ".join(c.cmdline()) for c in psutil.Process().children() if "spawn_main" in " ".join(c.cmdline())]


@pytest.mark.parametrize(
    "cfg",
    [
        dict(**CARTPOLE, mode="hts", num_executors=2, num_actors=2),
        dict(**CARTPOLE, mode="sync", num_executors=2),
        dict(env="ALE/Breakout-v5", num_envs=4, alpha=16, total_steps=4 * 16 * 3, epochs=1, minibatches=2, seed=5),
        dict(env="CartPole-v1", num_envs=8, alpha=16, total_steps=8 * 16 * 4, recurrent="gru", seed=2, num_actors=2),
    ],
    ids=["cartpole-hts", "cartpole-sync", "breakout-hts", "gru-hts"],
)
def test_spawned_roles_give_the_forked_numbers(run, cfg):
    seen = []
    spawned = run(**cfg, start_method="spawn", on_window=lambda *_: seen.append(len(_spawned_children())))
    forked = run(**cfg)
    assert _key(spawned) == _key(forked)
    roles = cfg.get("num_executors", 2) + (cfg.get("num_actors", 1) if cfg.get("mode", "hts") != "sync" else 0)
    assert seen and min(seen) == roles  # the roles were spawned, not forked


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The faulty env's run without a fault, with forked roles."""
    run_dir = tmp_path_factory.mktemp("ref")
    assert main(["train", *FAULTY, *SLOW, "--run-dir", str(run_dir), "--no-progress"]) == 0
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.parametrize("victim", ["executor 1", "actor 0"])
def test_sigkill_of_a_spawned_role_is_recovered_bitwise(tmp_path, victim, reference):
    args = [*FAULTY, *SLOW, "--start-method", "spawn"]
    assert_sigkill_recovered(args, tmp_path, victim, reference, when=lambda: time.sleep(2.0))


def test_spawned_roles_die_with_a_killed_main_and_on_ctrl_c(tmp_path):
    before = shm_entries()
    proc = start_cli([*FAULTY, *SLOW, "--start-method", "spawn"], tmp_path / "kill")
    pids = wait_for_pids(tmp_path / "kill")
    time.sleep(2.0)
    os.kill(pids["main"], signal.SIGKILL)
    proc.communicate(timeout=10)
    assert_all_gone(pids.values())  # PR_SET_PDEATHSIG holds for spawned children too
    proc = start_cli([*FAULTY, *SLOW, "--start-method", "spawn"], tmp_path / "int")
    pids = wait_for_pids(tmp_path / "int")
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGINT)
    code, _, err = finish_cli(proc, timeout=60)
    assert code == 130 and "Traceback" not in err, err
    assert_all_gone(pids.values())
    assert shm_entries() == before


def test_ctrl_c_while_spawned_roles_start_is_a_clean_stop(tmp_path):
    """A spawned role imports torch for seconds before its first line ignores Ctrl-C; the parent
    ignores Ctrl-C while it spawns (so do the children, from exec on), so a Ctrl-C then is never a
    child's death. A Ctrl-C the parent did not see (it came during the spawns) is sent again, only then:
    a second one the parent did see would stop it at once."""
    import sys

    from conftest import REPO

    out = tmp_path / "stderr.txt"  # the human lines, "stopping at the next barrier" among them
    cmd = [sys.executable, "-m", "htsrl", "train", "--run-dir", str(tmp_path / "r"), "--no-progress", *FAULTY, *SLOW]
    with open(out, "w") as stderr:
        proc = subprocess.Popen(
            [*cmd, "--start-method", "spawn"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
            cwd=REPO,
        )
    deadline, children = time.monotonic() + 60, []
    while time.monotonic() < deadline:
        try:
            children = psutil.Process(proc.pid).children()
        except psutil.NoSuchProcess:
            break
        if any("spawn_main" in " ".join(c.cmdline()) for c in children):
            break
        time.sleep(0.01)
    time.sleep(0.2)  # the children are starting up
    for _ in range(3):
        os.killpg(proc.pid, signal.SIGINT)
        seen_by = time.monotonic() + 5
        while time.monotonic() < seen_by and "stopping at the next barrier" not in out.read_text():
            time.sleep(0.05)
        if "stopping at the next barrier" in out.read_text():
            break
    code, _, _ = finish_cli(proc, timeout=120)
    err = out.read_text()
    assert code == 130 and "KeyboardInterrupt" not in err and "Traceback" not in err, err
    assert_all_gone([c.pid for c in children])


def test_cuda_actors_need_spawn_and_a_device(tmp_path, capsys):
    from htsrl import Config
    from htsrl.config import resolve

    with pytest.raises(ConfigError, match="needs --start-method spawn"):
        resolve(Config(env="CartPole-v1", actor_device="cuda"))
    with pytest.raises(ConfigError, match="--actor-device must be cpu, cuda or cuda:N"):
        resolve(Config(env="CartPole-v1", actor_device="gpu", start_method="spawn"))
    args = ["train", "--env", "CartPole-v1", "--actor-device", "cuda", "--start-method", "spawn"]
    code = main([*args, "--run-dir", str(tmp_path / "r")])
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: device_check.sh runs CUDA actors")
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "no CUDA device is visible to torch" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()
