"""benchmarks/learning_comparison.py reads runs' progress.csv: the steps to a threshold count only once
the last-100 mean is over 100 episodes (early means are over the few short episodes that end first)."""

import csv
import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "learning_comparison", Path(__file__).resolve().parents[1] / "benchmarks" / "learning_comparison.py"
)
learning_comparison = importlib.util.module_from_spec(spec)
spec.loader.exec_module(learning_comparison)


def _write(path: Path, rows: list[dict]) -> None:
    path.mkdir(parents=True)
    with open(path / "progress.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_threshold_counts_once_100_episodes_have_ended(tmp_path):
    rows = [
        {"env_steps": 1024, "wall_time_s": 1.0, "charts/mean_score_last_100": 1.0, "charts/episodes": 3},
        {"env_steps": 2048, "wall_time_s": 2.0, "charts/mean_score_last_100": 0.3, "charts/episodes": 120},
        {"env_steps": 3072, "wall_time_s": 3.0, "charts/mean_score_last_100": 0.9, "charts/episodes": 260},
    ]
    _write(tmp_path / "new", rows)
    got = learning_comparison.read(tmp_path / "new", "charts/mean_score_last_100", 0.8)
    assert got["first_step_at_threshold"] == 3072 and got["final"] == 0.9
    # a run written before the episodes column: every row counts, as before
    _write(tmp_path / "old", [{k: v for k, v in r.items() if k != "charts/episodes"} for r in rows])
    got = learning_comparison.read(tmp_path / "old", "charts/mean_score_last_100", 0.8)
    assert got["first_step_at_threshold"] == 1024
