"""htsrl sweep: Optuna trials as ordinary runs in a sweep folder, the study in a database (SQLite by default, any
storage URL), the median pruner reading the trials' curves, the best trial's config as a --config file, a bad
space refused before anything is written (a study that does not open leaves no folder), and a sweep killed mid-trial
continued by the same command to exactly --trials trials, the cut trial resumed from its checkpoint, a pruned or
finished one recorded as such, another folder's trial on a shared study left to that folder."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, assert_all_gone, kill_group

from htsrl import checks
from htsrl.cli import main
from htsrl.config import Config, resolve
from htsrl.config_files import dump_config, read_config_file
from htsrl.errors import ConfigError
from htsrl.run_dir import RunDir
from htsrl.sweep import _Checks, finished_checkpoint

optuna = pytest.importorskip("optuna", reason='htsrl sweep needs Optuna: pip install -e ".[sweep]"')

SMALL = ["--env", "CartPole-v1", "--num-envs", "4", "--alpha", "32"]
SPACE = "lr: {low: 1.0e-6, high: 3.0e-3, log: true}\nent_coef: {choices: [0.0, 0.01]}\n"


def _space(tmp_path, text=SPACE):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def _trials(url, name):
    return optuna.load_study(study_name=name, storage=url).get_trials()


def test_a_sweep_records_its_trials_prunes_and_writes_the_best_config(tmp_path, capsys):
    """Two trials put in the study's queue beforehand (Optuna's enqueue_trial, in a database given with --storage):
    a learning rate that learns, then one too small to learn, which the median pruner stops."""
    url, name = f"sqlite:///{tmp_path / 'elsewhere.db'}", "cartpole"
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    study.enqueue_trial({"lr": 2.5e-3, "ent_coef": 0.0})
    study.enqueue_trial({"lr": 1e-6, "ent_coef": 0.0})
    sweep = tmp_path / "sweep"
    # long enough (seconds on a quiet machine) that the pruned trial's SIGINT reaches it before its last window,
    # with the sweep reading progress.csv every POLL_S
    steps = 16384
    args = ["sweep", *SMALL, "--total-steps", str(steps), "--space", str(_space(tmp_path)), "--trials", "2"]
    args += ["--out", str(sweep), "--storage", url, "--study-name", name, "--prune-after-trials", "1"]
    args += ["--prune-after-steps", "0", "--report-every", "1024"]
    assert main(args) == 0
    err = capsys.readouterr().err
    first, second = _trials(url, name)
    assert first.state == optuna.trial.TrialState.COMPLETE, err
    summary = RunDir(sweep / "trial_0").read_summary()
    assert summary["finished"] and first.value == summary["mean_return_last_100"]
    assert sorted(first.intermediate_values) == list(range(0, steps + 1, 1024))  # each multiple of --report-every
    assert second.state == optuna.trial.TrialState.PRUNED, err
    assert "trial 1: pruned at" in err and not RunDir(sweep / "trial_1").finished()
    assert RunDir(sweep / "trial_1").has_checkpoint()  # stopped at a barrier, with a checkpoint
    assert not (sweep / "study.db").exists()  # the study is where --storage says
    assert {"sweep.json", "space.yaml", "config.yaml", "best.yaml"} <= {p.name for p in sweep.iterdir()}
    # best.yaml is the best trial's resolved config, which --config takes back
    best = read_config_file(sweep / "best.yaml")
    assert best["lr"] == 2.5e-3 and best["total_steps"] == steps and best["progress"] is True
    trial_cfg = dataclasses.replace(RunDir(sweep / "trial_0").saved_config(), progress=True)
    assert dump_config(resolve(Config(**best))) == dump_config(trial_cfg)
    assert main(["plot", str(sweep), "--out", str(tmp_path / "sweep.png")]) == 0  # the trials' curves
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    capsys.readouterr()
    assert main(args) == 0  # the same command again: the study has its 2 trials, nothing runs
    assert "2 of 2 trials: 1 complete, 1 pruned, 0 failed" in capsys.readouterr().err
    assert len(_trials(url, name)) == 2
    assert main([*args, "--gamma", "0.9"]) == 2  # another command in the same folder
    assert "holds a sweep started with --gamma unset (now 0.9)" in capsys.readouterr().err
    # What a killed sweep can leave RUNNING, as the same command then finds it (no trial process runs here)
    owner = json.loads((sweep / "sweep.json").read_text())["id"]
    assert first.user_attrs["sweep"] == second.user_attrs["sweep"] == owner
    assert second.user_attrs["pruned"] is True  # in the study before its SIGINT
    final = finished_checkpoint(RunDir(sweep / "trial_0"))  # summary.json's numbers, from the final checkpoint
    assert final == {k: summary[k] for k in final} and final["env_steps"] == steps
    assert finished_checkpoint(RunDir(sweep / "trial_1")) is None  # a checkpoint of a run not finished
    study = optuna.load_study(study_name=name, storage=url)
    left = [study.ask() for _ in range(3)]  # trials 2, 3, 4
    for trial, attrs in zip(left, [{"sweep": owner}, {"sweep": owner, "pruned": True}, {"sweep": "another"}]):
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
    shutil.copytree(sweep / "trial_0", sweep / "trial_2")  # finished, killed before its summary.json
    (sweep / "trial_2" / "summary.json").unlink()
    shutil.copytree(sweep / "trial_1", sweep / "trial_3")  # pruned, killed before the sweep told Optuna
    at = args.index("--trials") + 1
    assert main([*args[:at], "4", *args[at + 1 :]]) == 0  # trial 4 is another folder's (a shared study)
    err = capsys.readouterr().err
    states = optuna.trial.TrialState
    trials = _trials(url, name)
    assert [t.state for t in trials] == [*[states.COMPLETE, states.PRUNED] * 2, states.RUNNING], err
    assert trials[2].value == first.value and f"trial 2: done at {steps:,} steps" in err, err
    assert "trial 3: pruned before the sweep stopped: recorded pruned" in err, err
    assert "4 of 4 trials: 2 complete, 2 pruned, 0 failed, 1 running in other folders' sweeps" in err, err
    assert not (sweep / "trial_4").exists()


@pytest.mark.parametrize(
    "space,extra,message",
    [
        (
            "lrr: {low: 0.1, high: 0.2}\n",
            [],
            "unknown key 'lrr' (keys are htsrl train's flags with _ for -); did you mean lr?",
        ),
        ("num_executors: {choices: [1, 2]}\n", [], "num_executors does not change a run's numbers"),
        ("lr: 0.001\n", [], "lr must be {choices: [...]} or {low: L, high: H}"),
        ("lr: {low: 1.0e-3, high: 1.0e-4}\n", [], "lr: low (0.001) must be below high (0.0001)"),
        ("lr: {low: 0.0, high: 1.0e-3, log: true}\n", [], "lr: a log range needs low > 0"),
        ("alpha: {low: 16.5, high: 64}\n", [], "alpha is an integer: low must be an integer"),
        ("alpha: {low: 16, high: 64, step: 20}\n", [], "alpha: step must be positive and divide high - low"),
        ("norm_adv: {low: 0, high: 1}\n", [], "norm_adv is a bool: search it with choices, not a range"),
        ("optimizer: {choices: [adam, sgd]}\n", [], "optimizer must be one of ['adam', 'rmsprop'], got 'sgd'"),
        (
            "gamma: {low: 0.9, high: 1.5}\n",
            [],
            "gamma = 1.5 is refused with the other flags: --gamma must be in [0, 1]",
        ),
        ("num_envs: {choices: [4, 5]}\n", [], "num_envs = 5 is refused with the other flags: --num-envs 5 is not"),
        (  # the checks of a run's start (htsrl.checks.preflight), for each choice
            "precision: {choices: [fp32, bf16]}\n",
            [],
            "precision = 'bf16' is refused with the other flags: --precision bf16 runs the CNN in bfloat16; "
            "CartPole-v1 has vector observations",
        ),
        pytest.param(
            "device: {choices: [cpu, cuda]}\n",
            [],
            "device = 'cuda' is refused with the other flags: --device cuda: no CUDA device is visible to torch",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible"),
        ),
        (SPACE, ["--lr", "0.001"], "lr is also given as --lr: a setting is searched or fixed, not both"),
        (SPACE, ["--trials", "0"], "--trials must be a positive integer"),
        (SPACE, ["--run-dir", "x"], "--run-dir: a sweep's folder is --out"),
    ],
)
def test_a_bad_space_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys, space, extra, message):
    path = _space(tmp_path, space)
    out = tmp_path / "sweep"
    trials = [] if "--trials" in extra else ["--trials", "2"]
    assert main(["sweep", "--env", "CartPole-v1", "--space", str(path), *trials, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    if not message.startswith("--"):
        assert str(path) in err  # the key and the file
    assert not out.exists()


def test_the_checks_build_each_env_once_and_refuse_what_a_run_refuses(monkeypatch):
    built = []
    probe = checks.probe_env
    monkeypatch.setattr(checks, "probe_env", lambda env, *rest: built.append(env) or probe(env, *rest))
    check = _Checks()
    for lr in (1e-4, 1e-3, 1e-2):
        assert check(Config(env="CartPole-v1", num_envs=4, lr=lr)).lr == lr
    with pytest.raises(ConfigError, match="--precision bf16 runs the CNN in bfloat16; CartPole-v1 has vector"):
        check(Config(env="CartPole-v1", num_envs=4, precision="bf16"))
    assert built == ["CartPole-v1"]


def test_a_trial_whose_values_a_run_refuses_fails_without_a_process(tmp_path, capsys):
    """Each value passes with the first of the others; CartPole with bf16 (asked first, from the queue) does not."""
    url, name = f"sqlite:///{tmp_path / 'study.db'}", "combo"
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    study.enqueue_trial({"env": "CartPole-v1", "precision": "bf16"})
    space = _space(tmp_path, "env: {choices: [ALE/Breakout-v5, CartPole-v1]}\nprecision: {choices: [fp32, bf16]}\n")
    out = tmp_path / "sweep"
    args = ["sweep", "--num-envs", "4", "--space", str(space), "--trials", "1", "--out", str(out)]
    assert main([*args, "--storage", url, "--study-name", name]) == 1  # no trial completed
    err = capsys.readouterr().err
    assert "trial 0: refused (env=CartPole-v1, precision=bf16): --precision bf16 runs the CNN" in err, err
    (trial,) = _trials(url, name)
    assert trial.state == optuna.trial.TrialState.FAIL and "bf16" in trial.user_attrs["failure"]
    assert not (out / "trial_0").exists() and not (out / "trial_0.log").exists()


def test_a_study_that_does_not_open_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "runs" / "sweep"  # its parent is made too, and removed
    args = ["sweep", *SMALL, "--space", str(_space(tmp_path)), "--trials", "1", "--out", str(out)]
    assert main([*args, "--storage", "sqlite:////nonexistent/dir/x.db"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot open the study in sqlite:////nonexistent/dir/x.db" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()
    good = f"sqlite:///{tmp_path / 'good.db'}"
    study = optuna.create_study(study_name="sweep", storage=good, direction="maximize")
    study.tell(study.ask(), 1.0)  # a complete trial: the sweep of 1 trial has it, and runs none
    assert main([*args, "--storage", good, "--direction", "minimize"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is to maximize, not --direction minimize" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()
    assert main([*args, "--storage", good]) == 0  # the corrected command
    assert "1 of 1 trials: 1 complete, 0 pruned, 0 failed" in capsys.readouterr().err
    assert {"sweep.json", "space.yaml", "config.yaml"} <= {p.name for p in out.iterdir()}


def _wait_for(paths, proc, timeout=90.0):
    deadline = time.monotonic() + timeout
    while not all(p.is_file() for p in paths):
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended or hung before its checkpoints"
        time.sleep(0.05)


def test_a_killed_sweep_continues_to_exactly_n_trials_resuming_the_cut_one(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    args = ["sweep", *SMALL, "--total-steps", "6144", "--checkpoint-every", "2", "--space", str(_space(tmp_path))]
    args += ["--trials", "2", "--jobs", "2", "--out", str(sweep), "--pruner", "none"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "htsrl", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        runs = [RunDir(sweep / f"trial_{n}") for n in (0, 1)]
        _wait_for([p for r in runs for p in (r.checkpoint, r.pids)], proc)
        pids = [json.loads(r.pids.read_text()) for r in runs]
        proc.kill()  # SIGKILL: no handler runs; then each trial, mid-run, by its pid
        for roles in pids:
            os.kill(roles["main"], signal.SIGKILL)
        proc.wait(timeout=10)
        assert_all_gone([p for roles in pids for p in roles.values()], timeout=60)
    finally:
        kill_group(proc)
    url = f"sqlite:///{sweep / 'study.db'}"
    assert [t.state for t in _trials(url, "sweep")] == [optuna.trial.TrialState.RUNNING] * 2
    assert not runs[0].finished()
    runs[1].checkpoint.unlink()  # as if cut before its first checkpoint
    assert main(args) == 0  # the same command again
    err = capsys.readouterr().err
    assert "trial 0: resumed from its checkpoint" in err, err
    assert "trial 1: cut before its first checkpoint: marked failed (not counted)" in err, err
    trials = _trials(url, "sweep")
    states = optuna.trial.TrialState
    assert [t.state for t in trials] == [states.COMPLETE, states.FAIL, states.COMPLETE], err
    assert trials[1].user_attrs["cut"] is True
    summary = runs[0].read_summary()
    assert summary["finished"] and summary["env_steps"] == 6144 and summary["resumed_at_steps"] > 0
    assert trials[0].value == summary["mean_return_last_100"]
    assert "2 of 2 trials: 2 complete, 0 pruned, 0 failed (+1 cut, not counted)" in err, err
    assert main(args) == 0  # and once more: nothing left to run
    assert len(_trials(url, "sweep")) == 3


def test_a_sweep_refuses_every_setting_of_one_invocation():
    """config.PER_INVOCATION (the stops, --overwrite) are one invocation's: a sweep names why it refuses each."""
    from htsrl.config import PER_INVOCATION
    from htsrl.sweep import NOT_FOR_A_SWEEP

    assert set(PER_INVOCATION) <= set(NOT_FOR_A_SWEEP)
