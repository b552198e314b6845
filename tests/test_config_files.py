"""htsrl train --config FILE (YAML, TOML) and --print-config: the printed config is the same run, flags win
over the file, and a bad file is refused in one line naming the key and the file, before anything starts."""

import json

import pytest

from htsrl.cli import main

SMALL = ["--env", "CartPole-v1", "--num-envs", "4", "--alpha", "32", "--total-steps", "512", "--no-progress"]


def _sha(run_dir) -> str:
    return json.loads((run_dir / "summary.json").read_text())["params_sha256"]


@pytest.mark.parametrize("fmt", ["yaml", "toml"])
def test_printed_config_trains_the_same_run(tmp_path, capsys, fmt):
    flags = [*SMALL, "--lr", "0.001", "--seed", "7", "--env-kwargs", '{"max_episode_steps": 50}']
    assert main(["train", *flags, "--print-config", "--config-format", fmt]) == 0
    printed = capsys.readouterr().out
    assert not list(tmp_path.iterdir())  # printing starts nothing
    config = tmp_path / f"run.{fmt}"
    config.write_text(printed)
    assert main(["train", "--config", str(config), "--run-dir", str(tmp_path / "from_file")]) == 0
    assert main(["train", *flags, "--run-dir", str(tmp_path / "from_flags")]) == 0
    assert _sha(tmp_path / "from_file") == _sha(tmp_path / "from_flags")
    saved = json.loads((tmp_path / "from_file" / "config.json").read_text())
    assert saved["lr"] == 0.001 and saved["seed"] == 7 and saved["env_kwargs"] == {"max_episode_steps": 50}


def test_a_flag_wins_over_the_file(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('env = "CartPole-v1"\nnum_envs = 4\nalpha = 32\ntotal_steps = 512\nlr = 0.01\nseed = 3\n')
    assert (
        main(["train", "--config", str(config), "--lr", "0.002", "--run-dir", str(tmp_path / "r"), "--no-progress"])
        == 0
    )
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["lr"] == 0.002 and saved["seed"] == 3 and saved["alpha"] == 32


@pytest.mark.parametrize(
    "name,text,message",
    [
        (
            "run.yaml",
            "env: CartPole-v1\nnum_env: 4\n",
            "unknown key 'num_env' (keys are htsrl train's flags with _ for -); did you mean num_envs?",
        ),
        ("run.yaml", "lr: fast\n", "lr must be float or null, got 'fast' (str)"),
        ("run.toml", "num_envs = 4.5\n", "num_envs must be int or null, got 4.5 (float)"),
        ("run.toml", "serial = 1\n", "serial must be bool, got 1 (int)"),
        ("run.yaml", "mode: lockstep\n", "mode must be one of ['hts', 'sync', 'async', 'raw'], got 'lockstep'"),
        ("run.yaml", "env: [CartPole\n", "not valid YAML"),
        ("run.toml", "env = \n", "not valid TOML"),
        ("run.yaml", "- env\n", "must be a mapping of config keys, got list"),
        ("run.json", "{}", "a config file is .yaml, .yml or .toml"),
    ],
)
def test_a_bad_file_is_refused_in_one_line(tmp_path, capsys, name, text, message):
    config = tmp_path / name
    config.write_text(text)
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(config), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("htsrl: error:"), err
    assert str(config) in err  # the file is named
    assert not run_dir.exists()


def test_missing_file_and_resume_are_refused(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "cannot read it" in capsys.readouterr().err
    config = tmp_path / "run.yaml"
    config.write_text("lr: 0.001\n")
    assert main(["train", "--config", str(config), "--resume", str(tmp_path)]) == 2
    assert "--resume continues a run with its own config" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["yaml", "toml"])
def test_nested_env_kwargs_and_any_text_round_trip(tmp_path, fmt):
    from htsrl.config import Config
    from htsrl.config_files import dump_config, read_config_file

    kwargs = {"a": {"b": [1, 2.5, 'x\U0001f600y\x7f"q'], "c": True}, "d": -0.0003}
    config = tmp_path / f"run.{fmt}"
    config.write_text(dump_config(Config(env="CartPole-v1", env_kwargs=kwargs, preset="classic-ppo"), fmt))
    assert read_config_file(config)["env_kwargs"] == kwargs


def test_yaml_reads_an_exponent_without_a_dot_and_refuses_what_json_cannot_hold(tmp_path, capsys):
    from htsrl.config_files import read_config_file

    config = tmp_path / "run.yaml"
    config.write_text("lr: 3e-4\n")  # YAML 1.1 reads it as a string
    assert read_config_file(config) == {"lr": 3e-4}
    config.write_text("env_kwargs: {when: 2024-01-01}\n")  # a date: config.json could not hold it
    assert main(["train", "--config", str(config), "--run-dir", str(tmp_path / "r")]) == 2
    assert "env_kwargs must hold JSON values only" in capsys.readouterr().err
