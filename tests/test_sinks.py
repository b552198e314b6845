"""Report sinks (htsrl/sinks): every sink gets the same report per update, a resumed run's sinks hold each
update once, and an unknown sink is refused before anything starts."""

import csv
import json

import pytest

from htsrl.cli import main

CARTPOLE = ["--env", "CartPole-v1", "--num-envs", "4", "--alpha", "16", "--total-steps", "1024", "--no-progress"]


def _jsonl(run):
    return [json.loads(line) for line in (run / "progress.jsonl").read_text().splitlines()]


def _csv(run):
    with open(run / "progress.csv") as f:
        return list(csv.DictReader(f))


def test_jsonl_sink_writes_what_progress_csv_writes(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *CARTPOLE, "--run-dir", str(run), "--report-to", "jsonl"]) == 0
    lines, rows = _jsonl(run), _csv(run)
    assert [ln["env_steps"] for ln in lines] == [int(r["env_steps"]) for r in rows] == list(range(64, 1025, 64))
    for ln, row in zip(lines, rows):
        for key in ("charts/mean_return_last_100", "losses/value", "charts/episodes"):
            assert (ln[key] is None and row[key] == "") or float(row[key]) == pytest.approx(ln[key], rel=1e-12)
    assert sum(len(ln["episodes"]["returns"]) for ln in lines) == lines[-1]["charts/episodes"]


def test_a_resumed_run_reports_each_update_once(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["train", *CARTPOLE, "--run-dir", str(whole), "--report-to", "jsonl"]) == 0
    args = [*CARTPOLE, "--run-dir", str(cut), "--report-to", "jsonl", "--checkpoint-every", "4"]
    assert main(["train", *args, "--stop-at-steps", "512"]) == 0
    # an invocation killed after its checkpoint wrote lines past it: the resume drops them and writes them again
    extra = {**_jsonl(cut)[-1], "env_steps": 576}
    with open(cut / "progress.jsonl", "a") as f:
        f.write(json.dumps(extra) + "\n" + json.dumps(extra)[:20])  # and a line cut mid-write
    assert main(["train", "--resume", str(cut), "--no-progress"]) == 0
    resumed = _jsonl(cut)
    assert [ln["env_steps"] for ln in resumed] == list(range(64, 1025, 64))
    for a, b in zip(resumed, _jsonl(whole)):
        assert a["losses/value"] == b["losses/value"] and a["episodes"] == b["episodes"]


def test_an_unknown_sink_is_refused_before_start(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *CARTPOLE, "--run-dir", str(run), "--report-to", "jsonl,nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("htsrl: error: --report-to nope: no such report sink (known: csv,"), err
    assert len(err.splitlines()) == 1
    assert not run.exists()


def test_a_run_resumed_from_a_checkpoint_at_zero_steps_drops_what_came_after_it(tmp_path):
    """A stop in the first window saves a checkpoint at 0 steps: its resume is still a resume for every sink."""
    from htsrl.monitor import Episodes, Monitor

    m = Monitor(tmp_path, 1000, enabled=False, tensorboard=False, report_to=["jsonl"])
    m.row(10, 1, Episodes([1.0], [3]), {"losses/value": 1.0})  # written by an invocation killed later
    m.close()
    m = Monitor(tmp_path, 1000, start_steps=0, enabled=False, tensorboard=False, report_to=["jsonl"], resumed=True)
    m.row(10, 1, Episodes([1.0], [3]), {"losses/value": 1.0})
    m.close()
    assert [r["env_steps"] for r in _csv(tmp_path)] == ["10"]
    assert [ln["env_steps"] for ln in _jsonl(tmp_path)] == [10]
