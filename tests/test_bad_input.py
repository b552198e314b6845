"""Bad input: refused before anything starts, one clear line, exit code 2."""

import pytest

from htsrl.cli import main


@pytest.mark.parametrize(
    "args,message",
    [
        (["--env", "CartPol-v1"], "unknown env id 'CartPol-v1'; did you mean CartPole-v1"),
        (["--env", "CartPole-v1", "--num-envs", "6", "--num-executors", "4"], "not divisible by --num-executors 4"),
        (["--env", "CartPole-v1", "--num-envs", "0"], "--num-envs must be a positive integer"),
        (["--env", "CartPole-v1", "--alpha", "-5"], "--alpha must be a positive integer"),
        (["--env", "CartPole-v1", "--num-actors", "0"], "--num-actors must be a positive integer"),
        (["--env", "CartPole-v1", "--total-steps", "0"], "--total-steps must be a positive integer"),
        (["--env", "CartPole-v1", "--lr", "0"], "--lr must be positive"),
        (["--env", "CartPole-v1", "--gamma", "1.5"], "--gamma must be in [0, 1]"),
        (["--env", "htsrl/DictActions-v0"], "not Dict, Tuple or other spaces"),
        (
            ["--env", "CartPole-v1", "--num-envs", "8", "--envs-per-group", "4", "--num-executors", "4"],
            "2 inference groups of 4 envs cannot be split evenly over 4 executors",
        ),
        (["--env", "CartPole-v1", "--preset", "mujoco"], "unknown --preset 'mujoco'"),
        (["--env", "CartPole-v1", "--env-kwargs", '{"bogus": 1}'], "cannot build CartPole-v1"),
        (["--env", "ALE/Breakout-v5", "--env-kwargs", '{"mode": 99}'], "cannot build ALE/Breakout-v5"),
        # --learner-shards (tests/test_learner_shards.py)
        (
            ["--env", "CartPole-v1", "--algo", "a2c", "--learner-shards", "2"],
            "--learner-shards 2 splits PPO's minibatches; --algo a2c",
        ),
        (
            ["--env", "CartPole-v1", "--learner-shards", "2", "--learner-threads", "2"],
            "--learner-threads 2 would change them",
        ),
        (["--env", "CartPole-v1", "--learner-shards", "0"], "--learner-shards must be a positive integer"),
        (["--env", "CartPole-v1", "--stop-at-score", "nan"], "--stop-at-score must be a finite number, got nan"),
        (["--env", "CartPole-v1", "--stop-at-score", "inf"], "--stop-at-score must be a finite number, got inf"),
        (
            [
                "--env",
                "CartPole-v1",
                "--learner-shards",
                "65",
                "--num-envs",
                "4",
                "--alpha",
                "64",
                "--minibatches",
                "4",
            ],
            "more than the 64 rows",
        ),
        (
            ["--env", "CartPole-v1", "--learner-shards", "3", "--recurrent", "gru", "--num-envs", "8"],
            "more than the 2 envs of a minibatch",
        ),
    ],
)
def test_refused_with_one_line(tmp_path, capsys, args, message):
    run_dir = tmp_path / "run"
    code = main(["train", "--run-dir", str(run_dir), "--no-progress", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1 and err.startswith("htsrl: error:")
    assert not run_dir.exists()  # nothing started


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--num-envs", "many"], "argument --num-envs: invalid int value: 'many'"),
        (["train", "--env-kwargs", "[1]"], "argument --env-kwargs: must be a JSON object"),
        (["train", "--algo", "dqn"], "argument --algo: invalid choice: 'dqn'"),
        (["trian"], "invalid choice: 'trian'"),
        # an unknown flag: the help to read is the command's, which lists its flags
        (["train", "--bogus", "1"], "unrecognized arguments: --bogus 1 (see 'htsrl train --help')"),
        (["eval", "run", "--bogus"], "unrecognized arguments: --bogus (see 'htsrl eval --help')"),
        (["export", "run", "--format", "onnx", "--bogus"], "(see 'htsrl export --help')"),
        (["plot", "run", "--bogus"], "(see 'htsrl plot --help')"),
    ],
)
def test_argparse_errors_are_one_line_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("htsrl: error:") and len(err.splitlines()) == 1, err


def test_help_shows_real_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: None)" not in text
    assert "processes that step environments (default: 2)" in text
    assert "learning rate (default: from the preset)" in text
    # no preset sets these: their help says what unset means
    assert "job's time limit) (default: none: train all of --total-steps)" in text
    assert "the network must be the same (default: none: new weights)" in text
    assert "--resume DIR" in text
