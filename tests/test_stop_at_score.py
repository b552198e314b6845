"""--stop-at-score: a run stops, with a checkpoint, at the first barrier where the mean return of the last
100 episodes reached the target (the race to a score of benchmarks/atari_curves.py, as SB3's
StopTrainingOnRewardThreshold and rl_games' score_to_win). The stop point follows from the numbers, so it
is the same in every layout, and the run resumes from it bitwise."""

import csv
import json

import pytest

from htsrl.cli import main

RUN = ["--env", "CartPole-v1", "--num-envs", "4", "--alpha", "32", "--total-steps", "8192", "--seed", "1"]
TARGET = 40.0


def _train(capsys, *args: str) -> dict:
    assert main(["train", *RUN, "--no-progress", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("mode", ["hts", "sync"])
def test_a_run_stops_where_its_score_first_reached_the_target_in_every_layout_and_resumes_bitwise(
    tmp_path, capsys, mode
):
    stopped = _train(capsys, "--mode", mode, "--run-dir", str(tmp_path / "a"), "--stop-at-score", str(TARGET))
    assert not stopped["finished"] and 0 < stopped["env_steps"] < 8192 and stopped["stopped_by"] == "stop_at_score"
    with open(tmp_path / "a" / "progress.csv") as f:
        rows = [(float(r["charts/mean_return_last_100"]), int(r["charts/episodes"])) for r in csv.DictReader(f)]
    reached = [score >= TARGET and episodes >= 100 for score, episodes in rows]
    assert reached[-1] and not any(reached[:-1])  # the first window that reached it, learned, and no further
    assert stopped["episodes"] == rows[-1][1] and stopped["mean_return_last_100"] == rows[-1][0]

    layout = ["--num-executors", "2", "--num-actors", "2"]
    other = _train(capsys, "--mode", mode, *layout, "--run-dir", str(tmp_path / "b"), "--stop-at-score", str(TARGET))
    assert (other["env_steps"], other["params_sha256"]) == (stopped["env_steps"], stopped["params_sha256"])

    # the stop belongs to the invocation: a resume without it trains on to --total-steps
    resumed = _train(capsys, "--resume", str(tmp_path / "a"))
    whole = _train(capsys, "--mode", mode, "--run-dir", str(tmp_path / "whole"))
    assert resumed["finished"] and resumed["resumed_at_steps"] == stopped["env_steps"] and not resumed["stopped_by"]
    assert resumed["params_sha256"] == whole["params_sha256"]


def test_the_stop_names_the_score_and_a_target_never_reached_trains_to_the_end(tmp_path, capsys):
    assert main(["train", *RUN, "--no-progress", "--run-dir", str(tmp_path / "a"), "--stop-at-score", "30"]) == 0
    said = capsys.readouterr().err
    assert "the mean return of the last 100 episodes reached" in said and "(--stop-at-score 30)" in said
    assert "htsrl train --resume" in said
    never = _train(capsys, "--run-dir", str(tmp_path / "b"), "--total-steps", "2048", "--stop-at-score", "500")
    assert never["finished"] and never["env_steps"] == 2048


def test_async_learns_the_windows_in_flight_then_stops_where_it_decided(tmp_path, capsys):
    """Async mode has no barrier per window: the stop decided at a window holds while the windows already
    begun are learned (no determinism across runs to check there: actions see the newest weights)."""
    # async's actions see the newest weights, so its curve varies run to run: room to reach the target
    args = ["--mode", "async", "--total-steps", "32768", "--stop-at-score", str(TARGET)]
    stopped = _train(capsys, *args, "--run-dir", str(tmp_path / "a"))
    assert not stopped["finished"] and stopped["stopped_by"] == "stop_at_score" and stopped["env_steps"] < 32768
    with open(tmp_path / "a" / "progress.csv") as f:
        rows = [(float(r["charts/mean_return_last_100"]), int(r["charts/episodes"])) for r in csv.DictReader(f)]
    first = next(i for i, (score, episodes) in enumerate(rows) if score >= TARGET and episodes >= 100)
    assert len(rows) - 1 - first < 2  # at most the async_slots - 1 = 1 window begun, learned after it


def test_a_stop_at_steps_says_so(tmp_path, capsys):
    stopped = _train(capsys, "--run-dir", str(tmp_path / "a"), "--stop-at-steps", "1024", "--stop-at-score", "1")
    assert stopped["stopped_by"] == "stop_at_steps" and stopped["env_steps"] == 1024  # 1024 came first
