"""What a run leaves behind: TensorBoard scalars, the same rows in progress.csv, config and summary;
evaluation (with video) and plots."""

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from htsrl.cli import main
from htsrl.evaluation import evaluate

NAMES = [
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/episodes",
    "charts/sps",
    "losses/policy",
    "losses/value",
    "losses/entropy",
    "losses/approx_kl",
    "time/rollout_s",
    "time/learn_s",
    "time/barrier_wait_s",
]


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cartpole")
    assert (
        main(
            [
                "train",
                "--env",
                "CartPole-v1",
                "--total-steps",
                "8192",
                "--alpha",
                "64",
                "--num-envs",
                "8",
                "--run-dir",
                str(run_dir),
                "--no-progress",
            ]
        )
        == 0
    )
    return run_dir


def test_tensorboard_and_csv_hold_the_same_rows(cartpole_run):
    acc = EventAccumulator(str(cartpole_run / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert set(NAMES) <= tags
    with open(cartpole_run / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16 and set(NAMES) <= set(rows[0])
    for name in ("losses/value", "charts/sps"):
        events = acc.Scalars(name)
        assert [e.step for e in events] == [int(r["env_steps"]) for r in rows]
        assert [e.value for e in events] == pytest.approx([float(r[name]) for r in rows], rel=1e-6)


def test_tensorboard_has_a_point_per_episode_at_its_env_step(cartpole_run):
    """charts/episodic_return as CleanRL logs it: one point per finished episode, at the env step it
    ended; progress.csv keeps one row per update with the mean of the episodes of its window."""
    acc = EventAccumulator(str(cartpole_run / "tb"), size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    returns, lengths = acc.Scalars("charts/episodic_return"), acc.Scalars("charts/episodic_length")
    with open(cartpole_run / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((cartpole_run / "summary.json").read_text())
    assert len(returns) == len(lengths) == summary["episodes"] > len(rows)
    assert [e.step for e in returns] == [e.step for e in lengths] == sorted(e.step for e in returns)
    assert len({e.step for e in returns}) > len(rows)  # not one step per window
    assert all(e.step % 8 == 0 and 0 < e.step <= 8192 for e in returns)  # after a step of the 8 envs
    assert all(r.value == pytest.approx(l.value) for r, l in zip(returns, lengths))  # CartPole: +1 a step
    for before, row in zip([{"env_steps": "0"}, *rows], rows):  # the window's mean in progress.csv
        window = [e.value for e in returns if int(before["env_steps"]) < e.step <= int(row["env_steps"])]
        if window:
            assert float(row["charts/episodic_return"]) == pytest.approx(np.mean(window))
        else:
            assert row["charts/episodic_return"] == ""


def test_episodes_without_their_steps_are_logged_at_the_window_end(tmp_path):
    """Episodes restored from an older checkpoint carry no steps: their points go at the window's end."""
    from htsrl.monitor import Episodes, Monitor

    m = Monitor(tmp_path, 1000, enabled=False)
    m.row(10, 1, Episodes([1.0, 2.0], [3, 4], [0.0, 1.0], steps=[4, 8]), {})
    m.row(20, 2, Episodes([5.0], [6]), {})
    m.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("charts/episodic_return")] == [(4, 1.0), (8, 2.0), (20, 5.0)]
    assert [(e.step, e.value) for e in acc.Scalars("charts/episodic_score")] == [(4, 0.0), (8, 1.0)]
    assert [e.step for e in acc.Scalars("charts/mean_return_last_100")] == [10, 20]


def test_a_healthy_run_leaves_no_stack_files(cartpole_run):
    """Stack dumps are written only when the watchdog fires (tests/test_faults.py)."""
    assert not (cartpole_run / "stacks").exists()


def test_config_and_summary(cartpole_run):
    cfg = json.loads((cartpole_run / "config.json").read_text())
    assert cfg["env"] == "CartPole-v1" and cfg["preset"] == "classic-ppo" and cfg["lr"] == 2.5e-4
    s = json.loads((cartpole_run / "summary.json").read_text())
    for key in ("env_steps", "updates", "wall_time_s", "sps", "params_sha256", "episodes", "mean_return_last_100"):
        assert key in s
    assert s["env_steps"] == 8192 and s["updates"] == 16 and len(s["params_sha256"]) == 64
    # the machine of the wall clock: this one's CPU (as /proc/cpuinfo names it), cores and torch; no GPU asked
    (here,) = s["machines"]
    assert here["cpus"] == os.cpu_count() and here["torch"] == torch.__version__ and here["gpu"] is None
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    if "model name" in cpuinfo:
        assert here["cpu"] and here["cpu"] in cpuinfo and here["cpu_kind"].split()[0] in cpuinfo


def test_eval_reports_true_score_on_unseen_seeds(cartpole_run, capsys):
    a = evaluate(cartpole_run, episodes=3)
    b = evaluate(cartpole_run, episodes=3)
    assert a["scores"] == b["scores"] and len(a["scores"]) == 3  # seeded, repeatable
    assert a["mean_score"] > 9
    assert main(["eval", str(cartpole_run), "--episodes", "0"]) == 2


def test_eval_video_on_atari(tmp_path):
    run_dir = tmp_path / "atari"
    assert (
        main(
            [
                "train",
                "--env",
                "ALE/Breakout-v5",
                "--num-envs",
                "4",
                "--alpha",
                "16",
                "--total-steps",
                "128",
                "--epochs",
                "1",
                "--run-dir",
                str(run_dir),
                "--no-progress",
            ]
        )
        == 0
    )
    result = evaluate(run_dir, episodes=1, video=run_dir / "ep.mp4")
    assert result["mean_score"] >= 0
    cap = cv2.VideoCapture(str(run_dir / "ep.mp4"))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) > 50
    ok, frame = cap.read()
    assert ok and frame.shape == (210, 160, 3)


def test_plot(cartpole_run, tmp_path):
    out = tmp_path / "curves.png"
    assert main(["plot", str(cartpole_run), str(cartpole_run), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(tmp_path / "missing")]) == 2


def test_resources_are_sampled_into_csv_and_tensorboard_and_plotted(cartpole_run, tmp_path):
    """resources/*: every role's resident memory, the run's shared memory and descriptors, plausible values."""
    with open(cartpole_run / "progress.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["resources/open_fds"]]
    roles = json.loads((cartpole_run / "pids.json").read_text())
    assert rows and {"main", "executor 0", "actor 0"} <= set(roles)
    first = rows[0]
    for role in roles:  # a Python process with torch holds tens of MB at least, and less than a few GB
        assert 20 < float(first[f"resources/rss_mb/{role.replace(' ', '_')}"]) < 4000
    assert 50 < float(first["resources/private_mb"]) < 8000
    assert 0 < float(first["resources/shm_mb"]) < 100  # the rollout buffers' memfd, counted once
    assert 3 * len(roles) <= float(first["resources/open_fds"]) < 2000
    acc = EventAccumulator(str(cartpole_run / "tb"))
    acc.Reload()
    assert {"resources/private_mb", "resources/shm_mb", "resources/open_fds"} <= set(acc.Tags()["scalars"])
    out = tmp_path / "resources.png"
    assert main(["plot", "--resources", str(cartpole_run), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    no_columns = tmp_path / "old"
    no_columns.mkdir()
    (no_columns / "progress.csv").write_text("env_steps,wall_time_s\n1024,1.0\n")
    assert main(["plot", "--resources", str(no_columns), "--out", str(out)]) == 2


def test_plot_groups_seeds_and_names_what_differs(cartpole_run, tmp_path):
    """Seeds (and layouts) of one setting make one curve; runs that differ in a setting are apart,
    labelled by it."""
    import shutil

    from htsrl.analysis.plots import group_runs, read_run

    runs = [read_run(cartpole_run)]
    for name, change in [
        ("seed2", {"seed": 2, "num_executors": 1, "checkpoint_every": 7}),
        ("lr", {"lr": 1e-4}),
        ("old", {"env_backend": None}),
    ]:  # saved before --env-backend existed
        shutil.copytree(cartpole_run, tmp_path / name)
        cfg = {**json.loads((tmp_path / name / "config.json").read_text()), **change}
        (tmp_path / name / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if v is not None}))
        runs.append(read_run(tmp_path / name))
    groups = group_runs(runs)
    assert sorted((label, len(members)) for label, members in groups.items()) == [
        ("ppo hts lr=0.0001", 1),
        ("ppo hts lr=0.00025", 3),
    ]


def test_plot_puts_a_run_of_several_players_on_game_frames(cartpole_run, tmp_path):
    """A football run of 3 players logs 3 steps per game frame; its curve is drawn against frames."""
    import shutil

    from htsrl.analysis.plots import read_run

    shutil.copytree(cartpole_run, tmp_path / "three")
    cfg = json.loads((tmp_path / "three" / "config.json").read_text())
    cfg.update(env="football/academy_3_vs_1_with_keeper", env_kwargs={"left_players": 3})
    (tmp_path / "three" / "config.json").write_text(json.dumps(cfg))
    one, three = read_run(cartpole_run), read_run(tmp_path / "three")
    assert len(one["steps"]) > 0 and np.array_equal(three["steps"] * 3, one["steps"])


def test_progress_csv_keeps_columns_aligned_when_one_appears_later(tmp_path):
    """A football run's first windows may end no episode (no score column yet), and a resumed run may log
    other columns: every value must stay under its own header."""
    from htsrl.monitor import Episodes, Monitor

    m = Monitor(tmp_path, 1000, enabled=False, tensorboard=False)
    m.row(10, 1, Episodes(), {"losses/value": 1.0})
    m.row(20, 2, Episodes([3.0], [5], [1.0]), {"losses/value": 2.0, "lag/kl_behaviour_current": 0.5})
    m.close()
    m = Monitor(tmp_path, 1000, start_steps=20, enabled=False, tensorboard=False)
    m.row(30, 3, Episodes([4.0], [6], [-1.0]), {"losses/value": 3.0})
    m.close()
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["losses/value"] for r in rows] == ["1.0", "2.0", "3.0"]
    assert [r["lag/kl_behaviour_current"] for r in rows] == ["", "0.5", ""]
    assert [r["charts/episodic_score"] for r in rows] == ["", "1.0", "-1.0"]
    assert rows[1]["charts/mean_score_last_100"] == "1.0"


def test_train_and_eval_print_one_human_line_and_the_version(tmp_path, capsys):
    """What a newcomer reads: the settings at start, one line after train and after eval, --version. No
    JSON among them (--json prints it on stdout); eval says how it chose actions and where it kept its
    result, and never replaces an earlier one."""
    import htsrl

    run_dir = tmp_path / "r"
    args = ["--env", "CartPole-v1", "--num-envs", "4", "--alpha", "16", "--total-steps", "128"]
    assert main(["train", *args, "--run-dir", str(run_dir)]) == 0
    out, err = capsys.readouterr()
    assert out == "", out
    assert (
        "htsrl: starting: ppo (preset classic-ppo) on CartPole-v1, hts mode, 4 envs x alpha 16, fp32, 2 executors, "
        f"1 actor, 128 steps; run dir {run_dir}" in err
    ), err
    assert "htsrl: done: 128 steps in " in err and " episodes, mean return of the last 100 " in err, err
    rounded = ["train", *args[:-1], "100", "--run-dir", str(tmp_path / "rounded")]
    assert main(rounded) == 0  # a budget that is no whole number of windows: the start line says so
    assert "128 steps (--total-steps 100 rounded up to whole windows of 64); run dir" in capsys.readouterr().err
    assert main(["eval", str(run_dir), "--episodes", "2"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "htsrl: eval: 2 games of CartPole-v1 with sampled actions, score " in err, err
    assert main(["eval", str(run_dir), "--episodes", "1", "--deterministic", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "htsrl: eval: 1 game of CartPole-v1 with greedy actions, score " in err, err
    result = json.loads(out)
    assert result["actions"] == "greedy" and result["deterministic"] and result["episodes"] == 1
    assert err.strip().endswith(f"written to {result['path']}") and result["path"].startswith(str(run_dir / "eval"))
    kept = list((run_dir / "eval").iterdir())  # the 2-game result is still there
    assert sorted(json.loads(f.read_text())["episodes"] for f in kept) == [1, 2], kept
    assert main(["train", *args[:-1], "64", "--run-dir", str(tmp_path / "j"), "--json"]) == 0
    out, err = capsys.readouterr()  # --json: the summary on stdout, the human lines still on stderr
    assert json.loads(out) == json.loads((tmp_path / "j" / "summary.json").read_text()) and "htsrl: done" in err
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"htsrl {htsrl.__version__}"


def test_export_prints_a_human_line_and_json_with_json(cartpole_run, tmp_path, capsys):
    """export says what it wrote in words on stderr; the same as JSON on stdout only with --json."""
    out_file = tmp_path / "policy.pt"
    assert main(["export", str(cartpole_run), "--format", "torchscript", "--out", str(out_file)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"htsrl: export: wrote {out_file} (torchscript, final weights)"), err
    assert "observations (N, 4) float32 -> actions (N,) int64" in err, err
    assert main(["export", str(cartpole_run), "--format", "torchscript", "--out", str(out_file), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["path"] == str(out_file) and "htsrl: export: wrote" in err


def test_plot_across_seeds_writes_the_numbers_it_drew(cartpole_run, tmp_path):
    """Seeds of one setting: the mean, its 95% bootstrap band and the IQM, in a CSV beside the image that
    equals a direct computation from the runs."""
    import shutil

    from scipy import stats

    from htsrl.analysis.plots import CI_RESAMPLES, METRIC

    dirs, curves = [], {}
    for seed, scale in [(1, 1.0), (2, 3.0), (3, 2.0), (4, 10.0)]:
        d = tmp_path / f"s{seed}"
        shutil.copytree(cartpole_run, d)
        cfg = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**cfg, "seed": seed}))
        with open(d / "progress.csv") as f:
            rows = list(csv.DictReader(f))
        for r in rows:  # a known curve per seed
            r[METRIC] = str(scale * int(r["env_steps"]) / 1000)
        with open(d / "progress.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        curves[seed] = [(int(r["env_steps"]), float(r[METRIC])) for r in rows]
        dirs.append(str(d))
    out = tmp_path / "seeds.png"
    assert main(["plot", *dirs, "--out", str(out)]) == 0
    with open(tmp_path / "seeds.csv") as f:
        drawn = [r for r in csv.DictReader(f) if r["x_axis"] == "steps"]
    assert len(drawn) == 200 and {r["seeds"] for r in drawn} == {"4"}
    for r in drawn[::37]:
        x = float(r["x"])
        ys = np.array([np.interp(x, *zip(*c)) for c in curves.values()])
        assert float(r["mean"]) == pytest.approx(ys.mean())
        assert float(r["iqm"]) == pytest.approx(np.sort(ys)[1:3].mean())  # the middle half of 4 seeds
        assert float(r["min"]) == pytest.approx(ys.min()) and float(r["max"]) == pytest.approx(ys.max())
        ci = stats.bootstrap((ys,), np.mean, n_resamples=CI_RESAMPLES, method="percentile").confidence_interval
        # another random draw of the resamples: the same interval to within the bootstrap's own noise
        width = ys.max() - ys.min()
        assert abs(float(r["ci_low"]) - ci.low) < 0.1 * width + 1e-9
        assert abs(float(r["ci_high"]) - ci.high) < 0.1 * width + 1e-9
        assert float(r["ci_low"]) <= float(r["mean"]) <= float(r["ci_high"])
