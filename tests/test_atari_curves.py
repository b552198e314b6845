"""benchmarks/atari_curves.py: a stopped run is resumed (bitwise the run it continues), its curve and small
outputs are written, and the race reads the published curve and the runs as documented."""

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("atari_curves", ROOT / "benchmarks" / "atari_curves.py")
atari_curves = importlib.util.module_from_spec(spec)
spec.loader.exec_module(atari_curves)


def test_cleanrl_steps_to_a_score_interpolate_its_published_points():
    # Pong envpool: 10.8 at 2M, 17.4 at 3M -> 17 at 2M + 6.2/6.6 of 1M
    assert atari_curves.cleanrl_steps_to("Pong", 17) == pytest.approx(2e6 + 6.2 / 6.6 * 1e6)
    assert atari_curves.cleanrl_steps_to("Pong", -11.4) == 1e6
    assert atari_curves.cleanrl_steps_to("Pong", 21) is None  # never reached in 10M


def test_a_score_counts_once_100_games_have_ended_and_budgets_read_the_last_row_before():
    curve = [(1000, 10.0, 5.0, 3), (2000, 20.0, 1.0, 100), (3000, 30.0, 6.0, 150)]
    assert atari_curves.first_reach(curve, 5.0) == (3000, 30.0)  # not the first row: 3 games
    assert atari_curves.score_at(curve, 2500) == 1.0
    assert atari_curves.score_at(curve, 4000) is None  # past the run's end


def _curves(out: Path, results: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "atari_curves.py"), "--games", "Pong", "--seeds", "3"]
    cmd += ["--total-steps", "2048", "--parallel", "1", "--out", str(out), "--results", str(results), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_a_stopped_run_is_resumed_bitwise_and_its_curve_written(tmp_path):
    if not os.environ.get("HTSRL_REQUIRE_ENVPOOL"):
        pytest.importorskip("envpool")
    small = "--epochs 1 --minibatches 2 --checkpoint-every 1"
    stopped = _curves(tmp_path / "a", tmp_path / "res", "--extra", f"{small} --stop-at-steps 1024")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    run = tmp_path / "a" / "pong__s3"
    assert json.loads((run / "summary.json").read_text())["finished"] is False
    resumed = _curves(tmp_path / "a", tmp_path / "res", "--extra", small)
    assert resumed.returncode == 0 and "--resume" in resumed.stdout, resumed.stdout + resumed.stderr
    whole = _curves(tmp_path / "b", tmp_path / "res_b", "--extra", small)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    got, want = (json.loads((d / "pong__s3" / "summary.json").read_text()) for d in (tmp_path / "a", tmp_path / "b"))
    assert got["finished"] and got["env_steps"] == 2048
    assert got["params_sha256"] == want["params_sha256"] and got["rollout_sha256"] == want["rollout_sha256"]
    with open(tmp_path / "res" / "pong__s3.curve.csv") as f:  # no Pong game ends in 2,048 steps: a header
        assert next(csv.reader(f)) == ["agent_steps", "wall_s", "score_last_100", "games"]
    assert (tmp_path / "res" / "pong.png").stat().st_size > 10_000
    for name in ("pong__s3.summary.json", "pong__s3.config.json", "pong__s3.resources.csv", "curves.json"):
        assert (tmp_path / "res" / name).is_file(), name
    assert not list((tmp_path / "res").glob("*.pt"))  # never a checkpoint among the files to commit


def test_a_run_summarized_alone_keeps_its_neighbours_in_curves_json(tmp_path):
    """Summarizing Pong seed 3 (or Breakout) must not drop the committed Pong seeds 1 and 2."""
    path = tmp_path / "curves.json"
    before = {"cleanrl_sps": 526, "settings": {"defaults": ""}, "games": {"Pong": {"defaults": {"1": "a", "2": "b"}}}}
    path.write_text(json.dumps(before))
    new = {"cleanrl_sps": None, "seeds": [3], "settings": {"defaults": ""}, "games": {"Pong": {"defaults": {3: "c"}}}}
    merged = atari_curves.merged(path, new)
    assert merged["games"]["Pong"]["defaults"] == {"1": "a", "2": "b", "3": "c"}
    assert merged["seeds"] == [1, 2, 3] and merged["cleanrl_sps"] == 526


def _fake_run(where: Path, scores: list[float]) -> Path:
    where.mkdir(parents=True)
    with open(where / "progress.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["env_steps", "wall_time_s", atari_curves.SCORE, "charts/episodes"])
        for i, score in enumerate(scores, start=1):
            out.writerow([i * 1000, i * 2.0, score, 100 + i])
    return where


@pytest.mark.parametrize("htsrl_sps", [None, 500.0])
def test_the_seed_band_surrounds_the_mean_on_each_panel(tmp_path, htsrl_sps, monkeypatch):
    """The min-max band is drawn on both panels, on the grid of the mean it surrounds, with or without
    --htsrl-sps (it was drawn only with it, on the hours panel, from the steps panel's values)."""
    import matplotlib.pyplot as plt

    low = _fake_run(tmp_path / "pong__s1", [0.0, 1.0, 2.0, 3.0])
    high = _fake_run(tmp_path / "pong__s2", [10.0, 11.0, 12.0, 13.0])
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    atari_curves.plot_game("Pong", {"defaults": {1: low, 2: high}}, None, tmp_path / "pong.png", htsrl_sps)
    by_steps, by_hours = figures[0].axes
    for ax, xmax in ((by_steps, 4000), (by_hours, 8 / 3600)):
        (band,) = ax.collections
        (vertices,) = band.get_paths()
        xs, ys = vertices.vertices[:, 0], vertices.vertices[:, 1]
        assert xs.min() == pytest.approx(xmax / 4) and xs.max() == pytest.approx(xmax)
        assert ys.min() == pytest.approx(0.0) and ys.max() == pytest.approx(13.0)
    legend = [t.get_text() for t in by_steps.get_legend().get_texts()]
    assert "htsrl defaults (atari-ppo, EnvPool), mean of 2 seeds" in legend


def test_a_run_read_back_from_its_exported_files_summarizes_as_its_folder(tmp_path):
    """--read: a run whose folder stayed on another machine is summarized from the small files committed for
    it exactly as from its folder, resources included, and finding it never reaches past a real folder."""
    run = _fake_run(tmp_path / "runs" / "pong__s1", [float(s) for s in range(-20, 21, 2)])
    with open(run / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):  # every row sampled: flat descriptors and shm, memory growing 1 MB a row
        row.update({"resources/private_mb": 1000 + i, "resources/shm_mb": 120, "resources/open_fds": 93})
    with open(run / "progress.csv", "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=list(rows[0]))
        out.writeheader()
        out.writerows(rows)
    (run / "config.json").write_text(json.dumps({"total_steps": 21_000}))
    (run / "summary.json").write_text(json.dumps({"finished": True, "env_steps": 21_000}))
    results = tmp_path / "results"
    results.mkdir()
    atari_curves.export_run(run, results)
    from_folder = atari_curves.summarize_run(run, "Pong")
    assert from_folder["resources"] is not None and from_folder["race"]["0"]["steps"] == 11_000
    found = atari_curves.find_run("pong__s1", tmp_path / "elsewhere", [tmp_path / "none", results])
    assert found == results / "pong__s1"
    assert atari_curves.summarize_run(found, "Pong") == from_folder
    assert atari_curves.find_run("pong__s1", tmp_path / "runs", [results]) == run  # the folder comes first
    assert atari_curves.find_run("pong__s2", tmp_path / "runs", [results]) == tmp_path / "runs" / "pong__s2"


def test_the_hours_panel_says_which_cpu_clocked_a_setting_from_its_summaries(tmp_path):
    """A run's wall clock is its machine's (3x apart between the CPUs of these sessions): the hours panel
    names the CPU from summary.json's machines when every seed ran on one, and never names one it lacks."""
    runs = [_fake_run(tmp_path / f"pong__s{seed}", [0.0, 1.0]) for seed in (1, 2, 3)]
    for run, cpu in zip(runs, ("Xeon A", "Xeon A", None)):
        machines = [{"cpu": cpu, "cpu_kind": "GenuineIntel family 6 model 106"}] if cpu else None
        (run / "summary.json").write_text(json.dumps({"finished": True, "machines": machines}))
    cpus = [atari_curves.run_cpu(run) for run in runs]
    assert cpus == ["Xeon A (GenuineIntel family 6 model 106)"] * 2 + [None]
    assert atari_curves.machine_said(set(cpus[:2])) == ", on Xeon A (GenuineIntel family 6 model 106)"
    assert atari_curves.machine_said(set(cpus)) == ", CPU not recorded for every seed"
    assert atari_curves.machine_said({"Xeon A", "EPYC B"}) == ", on several CPUs"
    assert atari_curves.machine_said({None}) == ""
    # a resumed run's summary names its last invocation's machine only, not the one of its earlier hours
    resumed = {"resumed_at_steps": 1000, "machines": [{"cpu": "Xeon A", "cpu_kind": "GenuineIntel"}]}
    (runs[0] / "summary.json").write_text(json.dumps(resumed))
    assert atari_curves.run_cpu(runs[0]) is None
