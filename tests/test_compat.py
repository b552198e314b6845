"""Runs saved by an older htsrl go on with this one, bitwise.

``fixtures/a4213be_cartpole_stopped`` is a run folder written by htsrl at commit a4213be (before the
run folder, checkpoint state and summary moved to their own modules), stopped half-way:
``htsrl train --env CartPole-v1 --num-envs 4 --alpha 16 --total-steps 1024 --stop-at-steps 512 --seed 3``.
The same command without ``--stop-at-steps`` at a4213be ended with the weights pinned below."""

import csv
import json
import shutil
from pathlib import Path

from htsrl.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "a4213be_cartpole_stopped"
UNINTERRUPTED_AT_A4213BE = "308b420724b9e8e6a3859ec82376cd0e0ddf721328cce57c4e5345d949bce677"


def test_a_run_stopped_by_an_older_htsrl_resumes_to_its_uninterrupted_weights(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    assert main(["train", "--resume", str(run), "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["finished"] and summary["env_steps"] == 1024 and summary["resumed_at_steps"] == 512
    assert summary["params_sha256"] == UNINTERRUPTED_AT_A4213BE
    # the same run trained today from the start ends with the same weights
    fresh = tmp_path / "fresh"
    args = ["--env", "CartPole-v1", "--num-envs", "4", "--alpha", "16", "--total-steps", "1024", "--seed", "3"]
    assert main(["train", *args, "--run-dir", str(fresh), "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params_sha256"] == UNINTERRUPTED_AT_A4213BE
    with open(run / "progress.csv") as f:
        assert [int(r["env_steps"]) for r in csv.DictReader(f)] == list(range(64, 1025, 64))
