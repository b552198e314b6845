"""The Python API (issue 16): ``htsrl.load`` / ``Policy.predict`` / ``make_env`` / ``htsrl.evaluate``
and ``htsrl export``, checked against what they stand for: the run's own network and weights, the
``htsrl eval`` command, and the exported files run by TorchScript and onnxruntime. The README's API
example runs here as it is written."""

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import htsrl
from htsrl.cli import main
from htsrl.errors import CheckpointError, ConfigError
from htsrl.nn import build_model

onnxruntime = pytest.importorskip("onnxruntime", reason="the ONNX checks need onnxruntime: pip install -e '.[test]'")

REPO = Path(__file__).resolve().parents[1]
CARTPOLE = dict(env="CartPole-v1", num_envs=4, alpha=32, total_steps=4 * 32 * 4, seed=5, progress=False)


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> Path:
    """A finished tiny CartPole run (4 updates): config.json, model.pt and a final checkpoint.pt."""
    run_dir = tmp_path_factory.mktemp("api") / "cartpole"
    summary = htsrl.train(htsrl.Config(**CARTPOLE, run_dir=str(run_dir)))
    assert summary["finished"]
    return run_dir


@pytest.fixture(scope="module")
def atari_run(tmp_path_factory) -> Path:
    """An untrained Breakout run (its config and freshly initialised weights): export only needs the
    network. The policy head is scaled up so that greedy actions differ between observations and no
    two logits are close enough for float rounding to swap them."""
    pytest.importorskip("ale_py")
    run_dir = tmp_path_factory.mktemp("api") / "breakout"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(htsrl.Config(env="ALE/Breakout-v5", run_dir=str(run_dir)).to_json())
    torch.manual_seed(0)
    model = build_model((4, 84, 84), 4)
    with torch.no_grad():
        model.pi.weight.mul_(300.0)
    torch.save(model.state_dict(), run_dir / "model.pt")
    return run_dir


def real_observations(policy, steps: int = 24, seed: int = 0) -> np.ndarray:
    """A batch of observations from the policy's own env under random actions (resetting at episode ends)."""
    env = policy.make_env(seed=seed)
    obs, _ = env.reset()
    batch = [obs]
    for _ in range(steps - 1):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
        batch.append(obs)
    env.close()
    return np.stack(batch)


def network_by_hand(run_dir: Path) -> torch.nn.Module:
    """The run's network built from its parts, independently of htsrl.policy."""
    model = build_model((4,), 2)
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))
    return model.eval()


def test_import_htsrl_stays_light():
    code = "import sys, htsrl; assert 'torch' not in sys.modules and 'numpy' not in sys.modules; htsrl.load"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_evaluate_is_the_function_even_after_its_module_is_imported():
    import htsrl.evaluation

    assert htsrl.evaluate is htsrl.evaluation.evaluate and callable(htsrl.evaluate)


def test_load_final_and_last_checkpoint(cartpole_run, tmp_path):
    final, last = htsrl.load(cartpole_run), htsrl.load(cartpole_run, checkpoint="last")
    assert final.checkpoint == "final" and last.checkpoint == "last"
    assert not final.network.training
    for a, b in zip(final.network.state_dict().values(), last.network.state_dict().values()):
        assert torch.equal(a, b)  # the checkpoint written at the end holds the final weights
    unfinished = tmp_path / "unfinished"
    shutil.copytree(cartpole_run, unfinished)
    assert htsrl.load(unfinished).checkpoint == "final"
    later = (unfinished / "model.pt").stat().st_mtime_ns + 10**9
    os.utime(unfinished / "checkpoint.pt", ns=(later, later))  # a resume that was interrupted later
    assert htsrl.load(unfinished).checkpoint == "last"
    (unfinished / "model.pt").unlink()
    assert htsrl.load(unfinished).checkpoint == "last"
    with pytest.raises(CheckpointError, match="no model.pt"):
        htsrl.load(unfinished, checkpoint="final")
    with pytest.raises(ConfigError, match="checkpoint must be one of"):
        htsrl.load(cartpole_run, checkpoint="best")


def test_predict_single_and_batched_observations(cartpole_run):
    policy = htsrl.load(cartpole_run)
    batch = real_observations(policy)
    actions = policy.predict(batch)
    assert isinstance(actions, np.ndarray) and actions.shape == (len(batch),) and actions.dtype == np.int64
    single = policy.predict(batch[3])
    assert isinstance(single, np.int64) and single == actions[3]
    assert np.array_equal(policy.predict(torch.from_numpy(batch)), actions)
    with pytest.raises(ConfigError, match=r"observations are \(4,\)"):
        policy.predict(batch[:, :3])


def test_predict_on_one_observation_gives_one_action_that_env_step_takes(cartpole_run):
    """A newcomer's first lines (issue 28): one observation of a plain CartPole env in, one action out,
    which ``env.step`` accepts and ``np.asarray(action).item()`` turns into an int."""
    import gymnasium as gym

    policy = htsrl.load(cartpole_run)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        action = policy.predict(obs)
        assert isinstance(np.asarray(action).item(), int) and env.action_space.contains(action)
        obs, *_ = env.step(action)
    env.close()


def test_deterministic_predict_is_the_argmax_of_the_runs_network(cartpole_run):
    policy = htsrl.load(cartpole_run)
    batch = real_observations(policy, steps=64)
    with torch.no_grad():
        logits, _ = network_by_hand(cartpole_run)(torch.from_numpy(batch))
    expected = logits.argmax(-1).numpy()
    assert len(set(expected.tolist())) > 1  # else the comparison could not tell two policies apart
    assert np.array_equal(policy.predict(batch, deterministic=True), expected)


def test_sampled_actions_come_from_a_seedable_generator(cartpole_run):
    policy = htsrl.load(cartpole_run)
    batch = real_observations(policy, steps=64)
    first = policy.predict(batch, deterministic=False, generator=torch.Generator().manual_seed(3))
    again = policy.predict(batch, deterministic=False, generator=torch.Generator().manual_seed(3))
    assert np.array_equal(first, again) and set(first.tolist()) <= {0, 1}
    own = htsrl.load(cartpole_run, seed=9).predict(batch, deterministic=False)
    assert np.array_equal(own, htsrl.load(cartpole_run, seed=9).predict(batch, deterministic=False))
    assert not np.array_equal(first, own)  # 64 near-even coin flips: another seed, other actions


def test_make_env_is_the_runs_env_and_seeded(cartpole_run):
    policy = htsrl.load(cartpole_run)
    env = policy.make_env(seed=4)
    assert env.observation_space.shape == policy.observation_shape and env.action_space.n == policy.num_actions
    first, _ = env.reset()
    second, _ = env.reset()  # the seed is used once; later resets go on from the env's generator
    env.close()
    again = policy.make_env(seed=4)
    assert np.array_equal(first, again.reset()[0]) and np.array_equal(second, again.reset()[0])
    assert not np.array_equal(first, second)
    again.close()


def test_evaluate_equals_the_cli(cartpole_run):
    result = htsrl.evaluate(cartpole_run, episodes=3, seed=7)
    out = subprocess.run(
        [sys.executable, "-m", "htsrl", "eval", str(cartpole_run), "--episodes", "3", "--seed", "7", "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    cli = json.loads(out)
    assert {k: v for k, v in cli.items() if k != "path"} == {
        k: v for k, v in result.items() if k not in ("scores", "path")
    }
    assert cli["path"] != result["path"]  # each evaluation is kept
    assert cli["seed"] == 7 and len(result["scores"]) == 3
    other = htsrl.evaluate(cartpole_run, episodes=3, seed=8, greedy=False)
    assert other["scores"] != result["scores"]  # the seed picks the games


def run_exported(path: Path, fmt: str, batch: np.ndarray) -> np.ndarray:
    if fmt == "torchscript":
        with warnings.catch_warnings():  # recent torch: "torch.jit.load is deprecated"; libtorch still loads it
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path))
        return module(torch.from_numpy(batch)).numpy()
    import onnx

    onnx.checker.check_model(str(path))
    return onnxruntime.InferenceSession(str(path)).run(None, {"obs": batch})[0]


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("run", ["cartpole_run", "atari_run"])
def test_exported_file_acts_as_predict(run, fmt, request, tmp_path, capsys):
    """``htsrl export``'s file, given raw observations of the run's env (uint8 frames for Atari, float32
    vectors), returns predict's greedy actions, whatever the batch size."""
    run_dir = request.getfixturevalue(run)
    out = tmp_path / f"policy.{fmt}"
    assert main(["export", str(run_dir), "--format", fmt, "--out", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    policy = htsrl.load(run_dir)
    batch = real_observations(policy, steps=24).astype(policy.export_dtype)
    assert printed["path"] == str(out) and printed["input"]["dtype"] == str(batch.dtype)
    expected = policy.predict(batch)
    if run == "atari_run":  # add noise frames: real early Breakout frames look alike to an untrained net
        noise = np.random.default_rng(0).integers(0, 256, (8, *policy.observation_shape), dtype=np.uint8)
        batch = np.concatenate([batch, noise])
        expected = policy.predict(batch)
    assert len(set(expected.tolist())) > 1
    for n in (len(batch), 1):
        got = run_exported(out, fmt, batch[:n])
        assert got.dtype == np.int64 and np.array_equal(got, expected[:n])


def test_export_default_path_and_last_checkpoint(cartpole_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(cartpole_run, run_dir)
    assert main(["export", str(run_dir), "--format", "torchscript", "--checkpoint", "last", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == str(run_dir / "policy_torchscript.pt") and printed["checkpoint"] == "last"
    assert (run_dir / "policy_torchscript.pt").is_file()


def bare_run(tmp_path: Path, cartpole_run: Path, keep: tuple[str, ...]) -> Path:
    run_dir = tmp_path / "bare"
    run_dir.mkdir()
    for name in keep:
        shutil.copy(cartpole_run / name, run_dir / name)
    return run_dir


@pytest.mark.parametrize(
    "keep,extra,message",
    [
        ((), [], "has no config.json: not an htsrl run directory"),
        (("config.json",), [], "has no checkpoint.pt nor model.pt: no weights to load"),
        (("config.json", "model.pt"), ["--checkpoint", "last"], "has no checkpoint.pt"),
        (("config.json", "checkpoint.pt"), ["--checkpoint", "final"], "has no model.pt"),
    ],
)
def test_export_bad_run_dir_is_one_line_exit_2(cartpole_run, tmp_path, capsys, keep, extra, message):
    run_dir = bare_run(tmp_path, cartpole_run, keep)
    assert main(["export", str(run_dir), "--format", "onnx", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("htsrl: error:") and len(err.splitlines()) == 1, err
    assert not list(run_dir.glob("policy*"))


@pytest.mark.parametrize(
    "args,message",
    [
        (["--format", "tflite"], "argument --format: invalid choice: 'tflite'"),
        ([], "the following arguments are required: --format"),
        (["--format", "onnx", "--checkpoint", "best"], "argument --checkpoint: invalid choice: 'best'"),
    ],
)
def test_export_bad_flags_are_one_line_exit_2(cartpole_run, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(["export", str(cartpole_run), *args])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("htsrl: error:") and len(err.splitlines()) == 1, err


def readme_api_example() -> str:
    text = (REPO / "README.md").read_text()
    found = re.search(r"<!-- api-example -->\s*```python\n(.*?)```\s*<!-- /api-example -->", text, re.S)
    assert found, "README.md has no <!-- api-example --> python block"
    return found.group(1)


def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the example writes into runs/api-demo
    exec(compile(readme_api_example(), "README.md:api-example", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "episode:" in out and "mean score over 5 games:" in out
    assert (tmp_path / "runs/api-demo/policy.onnx").is_file()
