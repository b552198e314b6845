"""A user's own env as ``module:EnvId`` (gymnasium's form): the module is imported, which registers the
id, in the main process and in every role, forked or spawned; train, eval, export and ``htsrl.load`` of
such a run work, and a module that cannot give the id is refused with one line."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO
from test_determinism import _key

import htsrl
from htsrl.cli import main

ENV = "htsrl_test_envs:TestCorridor-v0"
SMALL = dict(num_envs=4, alpha=16, total_steps=4 * 16 * 4, epochs=1, minibatches=2, seed=7)
SMALL_ARGS = ["--num-envs", "4", "--alpha", "16", "--total-steps", str(4 * 16 * 4), "--epochs", "1"]
SMALL_ARGS += ["--minibatches", "2", "--seed", "7", "--no-progress"]

CORRIDOR = '''
import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    """Walk left or right from a seeded start; reward 1 at the right end."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length=5):
        self.length = length

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = int(self.np_random.integers(-2, 3))
        return self._obs(), {}

    def step(self, action):
        self.pos += 1 if action == 1 else -1
        return self._obs(), float(self.pos >= self.length), abs(self.pos) >= self.length, False, {}

    def _obs(self):
        return np.array([self.pos / self.length, 1.0], np.float32)


gym.register("TestCorridor-v0", entry_point=Corridor, max_episode_steps=50)
'''


@pytest.fixture
def env_module(tmp_path, monkeypatch):
    """The corridor module in tmp_path, importable (tmp_path on sys.path, restored afterwards)."""
    (tmp_path / "htsrl_test_envs.py").write_text(CORRIDOR)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_train_eval_export_and_load(env_module, capsys):
    run_dir = str(env_module / "run")
    assert main(["train", "--env", ENV, "--env-kwargs", '{"length": 4}', "--run-dir", run_dir, *SMALL_ARGS]) == 0
    summary = json.loads((env_module / "run" / "summary.json").read_text())
    assert summary["env_steps"] == SMALL["total_steps"] and summary["episodes"] > 0
    assert main(["eval", run_dir, "--episodes", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["episodes"] == 2
    assert main(["export", run_dir, "--format", "torchscript"]) == 0
    assert (env_module / "run" / "policy_torchscript.pt").exists()
    policy = htsrl.load(run_dir)
    assert policy.config.env == ENV and policy.observation_shape == (2,)
    obs, _ = policy.make_env(seed=0).reset(seed=0)
    assert policy.predict(obs[None]).shape == (1,)


def test_layout_and_start_method_do_not_change_the_numbers(env_module, run):
    ref = run(env=ENV, **SMALL, num_executors=1, num_actors=1)
    assert _key(run(env=ENV, **SMALL, num_executors=2, num_actors=2)) == _key(ref)
    assert _key(run(env=ENV, **SMALL, num_executors=2, num_actors=2, start_method="spawn")) == _key(ref)


def test_console_script_finds_the_module_in_the_current_folder(env_module, run):
    """Like the ``htsrl`` console script (not ``python -m``), the current folder is not on sys.path: htsrl
    appends it, and the spawned roles, which start with the parent's sys.path, find the module too."""
    code = "import sys; sys.path.remove(''); from htsrl.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["train", "--env", ENV, "--run-dir", "cli", "--start-method", "spawn", *SMALL_ARGS]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=env_module, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((env_module / "cli" / "summary.json").read_text())
    assert summary["params_sha256"] == run(env=ENV, **SMALL)["params_sha256"]


@pytest.mark.parametrize(
    "source,env,message",
    [
        (None, "htsrl_no_such_module:Corridor-v0", "cannot import module 'htsrl_no_such_module'"),
        ("raise RuntimeError('no GPU here\\nsecond line')", "htsrl_bad_a:X-v0", "RuntimeError: no GPU here"),
        ("import htsrl_missing_dep", "htsrl_bad_b:X-v0", "ModuleNotFoundError: No module named 'htsrl_missing_dep'"),
        (
            CORRIDOR.replace("TestCorridor-v0", "OtherCorridor-v0"),
            "htsrl_bad_c:OtherCoridor-v0",
            "module 'htsrl_bad_c' registered no env id 'OtherCoridor-v0'; did you mean OtherCorridor-v0",
        ),
    ],
    ids=["missing", "raises", "missing-dependency", "no-such-id"],
)
def test_refused_with_one_line(tmp_path, monkeypatch, capsys, source, env, message):
    if source is not None:
        (tmp_path / f"{env.split(':')[0]}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))  # also restores sys.path after the cwd fallback appended to it
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    code = main(["train", "--env", env, "--run-dir", str(run_dir), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err, err
    assert len(err.splitlines()) == 1 and err.startswith("htsrl: error:")
    assert not run_dir.exists()  # nothing started
