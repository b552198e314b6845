"""benchmarks/table1.py: the table command measures every game, env count, repetition and implementation,
saves the JSON after each game and continues a stopped table, prints the paper's table beside today's with
the paper's ratios, marks the games that fall short with what holds HTS back, and draws the PNG (the
measurements faked here: the real ones are benchmark runs, never asserted by tests)."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("table1", ROOT / "benchmarks" / "table1.py")
table1 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table1)

# steps/s per implementation: on Breakout HTS falls short of the paper's ratios, on Qbert it does not
RATES = {
    "Breakout": {"hts": 600, "sync": 500, "sb3": 400, "kostrikov": 450},
    "Qbert": {"hts": 900, "sync": 500, "sb3": 360, "kostrikov": 450},
}
CPU_MS = {"executors": 0.5, "actors": 0.3, "learner": 2.2}  # the learner: 73% of HTS's CPU per step


def fake_measure(calls: list):
    def measure(impl, game, num_envs, args):
        calls.append((game, num_envs, impl))
        rep = calls.count((game, num_envs, impl)) - 1
        run = {"mode": impl, "sps": RATES[game][impl] + 10 * rep, "env_steps": args.steps}  # reps: +0, +10
        if impl in ("hts", "sync"):
            run.update(precision="fp32", learner_threads=1 if impl == "hts" else 2, learner_shards=1)
            run["time_split"] = {role: {"cpu_s": ms * args.steps / 1e3} for role, ms in CPU_MS.items()}
        return run

    return measure


@pytest.fixture
def checkout(tmp_path):
    folder = tmp_path / "kostrikov"
    folder.mkdir()
    (folder / "main.py").write_text("")
    return ["--kostrikov", str(folder), "--kostrikov-python", sys.executable]


def test_the_table_is_measured_saved_continued_and_drawn(tmp_path, monkeypatch, capsys, checkout):
    calls = []
    monkeypatch.setattr(table1, "measure", fake_measure(calls))
    out = tmp_path / "t" / "table1.json"
    common = ["--num-envs", "16", "8", "--reps", "2", "--steps", "100", "--out", str(out), *checkout]
    assert table1.main(["--games", "Breakout", *common]) == 0
    # interleaved: each repetition runs every env count and implementation in turn
    assert calls == [("Breakout", n, i) for _ in range(2) for n in (16, 8) for i in table1.IMPLEMENTATIONS]
    result = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    row = result["games"]["Breakout"]["rows"]["16"]
    assert row["sps"]["hts"]["n"] == 2 and row["sps"]["hts"]["mean"] == pytest.approx(605)
    assert row["ratios"]["paper hts_rl/kostrikov"] == pytest.approx(1885 / 1225)
    assert row["ratios"]["paper hts_rl/baselines"] == pytest.approx(1885 / 829)
    assert row["ratios"]["hts/kostrikov"] == pytest.approx(605 / 455)
    assert row["hts_time_split"]["cpu_ms_per_step"] == pytest.approx({"env": 0.5, "inference": 0.3, "learning": 2.2})
    fraction = 605 / (os.cpu_count() / 3e-3)
    assert row["held_back_by"] == ("learning (73% of CPU)" if fraction >= 0.8 else f"waits ({fraction:.2f} of bound)")
    printed = capsys.readouterr().out
    assert table1.PAPER_CITATION in printed and "1,225±12" in printed  # the paper's own table
    assert f"{605 / 455:.2f} ({1885 / 1225:.2f})" in printed  # HTS/Kostrikov beside the paper's
    assert "htsrl HTS: precision fp32, learner_threads 1" in printed

    # the same command with one more game continues the table: Breakout is not run again
    calls.clear()
    assert table1.main(["--games", "Breakout", "Qbert", *common]) == 0
    assert {game for game, _, _ in calls} == {"Qbert"}
    result = json.loads(out.read_text())
    assert list(result["games"]) == ["Breakout", "Qbert"]
    assert result["games"]["Qbert"]["rows"]["16"]["held_back_by"] is None  # above both of the paper's ratios

    # other settings would mix two tables in one file
    with pytest.raises(SystemExit, match="other settings"):
        table1.main(["--games", "Breakout", *common[:-4]])  # without Kostrikov
    out.with_suffix(".png").unlink()
    capsys.readouterr()
    assert table1.main(["--plot-only", str(out)]) == 0
    assert "Qbert" in capsys.readouterr().out and out.with_suffix(".png").exists()


def test_kostrikovs_rate_counts_whole_windows_after_the_first_fifth():
    # 5 steps of 10 ms, then an update of 50 ms: 8 envs x 5 steps per 100 ms = 400 steps/s
    marks, t = [], 0.0
    for _ in range(20):
        for _ in range(5):
            t += 0.010
            marks.append(t)
        t += 0.050
    assert table1.steady_rate_from_marks(marks, 8) == pytest.approx(400)
    with pytest.raises(SystemExit, match="raise --steps"):
        table1.steady_rate_from_marks(marks[:3], 8)


def test_kostrikovs_command_is_his_main_with_the_shared_settings(checkout):
    args = table1.parse_args(["--steps", "4000", *checkout])
    cmd = table1.kostrikov_command("MsPacman", 16, args, "/tmp/log")
    assert cmd[:2] == [sys.executable, "-c"] and cmd[3] == checkout[1]
    main_args = " ".join(cmd[4:])
    assert "--env-name MsPacmanNoFrameskip-v4 --algo a2c --num-processes 16 --num-steps 5" in main_args
    assert "--num-env-steps 4000" in main_args and main_args.endswith("--no-cuda")
