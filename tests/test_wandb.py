"""W&B tracking (``--track``, htsrl/sinks/wandb.py), offline: what a run logged is read back from wandb's own
files (``RUN_DIR/wandb/offline-run-*/run-<id>.wandb``): one W&B run across a resume, the config, TensorBoard's
names, each update once; W&B failing never costs a run; without wandb ``--track`` is refused before start."""

import json
import os
import shutil
import struct
import sys

import pytest
from conftest import learning_rows
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from htsrl.cli import main
from htsrl.run_dir import RunDir

CARTPOLE = ["--env", "CartPole-v1", "--num-envs", "4", "--alpha", "16", "--total-steps", "1024", "--no-progress"]
STEPS = list(range(64, 1025, 64))  # one update every 64 env steps
REFUSAL = "htsrl: error: --track logs to Weights & Biases, whose package is not installed: pip install 'htsrl[track]'"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """wandb offline, with nothing read from or written to this machine's own W&B settings (a fresh HOME)."""
    wandb = pytest.importorskip("wandb", reason="wandb is not installed (pip install 'htsrl[track]')")
    for name in [n for n in os.environ if n.startswith("WANDB_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB__DISABLE_STATS", "true")  # no system metrics: nothing sampled or probed
    monkeypatch.setenv("WANDB__DISABLE_META", "true")
    wandb.teardown()  # wandb keeps its settings per process: read the ones above anew
    yield wandb
    wandb.teardown()


def wandb_records(run_dir) -> list:
    """Every record of the run's offline W&B files, one invocation after the other by start time (a
    folder's name has its second only, and ``-1``, ``-2`` after the id for a second taken)."""
    import wandb

    wandb.teardown()  # wandb's service writes the files: wait until it has (an older wandb returns before)
    invocations = [_read_wandb_log(path) for path in run_dir.glob("wandb/offline-run-*/run-*.wandb")]
    invocations.sort(key=lambda records: of_type(records, "run")[0].start_time.ToNanoseconds())
    return [record for records in invocations for record in records]


def _read_wandb_log(path) -> list:
    """The records of one ``.wandb`` file. (wandb no longer ships a Python reader of them; they are
    LevelDB-style logs: a 7-byte header, then 32 KiB blocks of chunks, each ``crc32c:u32 length:u16
    type:u8`` + data, type 1 a whole record, 2/3/4 its first, middle and last part; each record a
    ``wandb_internal_pb2.Record``.)"""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    records, pos, parts = [], 7, []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # no room for a chunk header: the block's padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zeros to the block's end
            pos += 32768 - pos % 32768
            continue
        parts.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            records.append(record)
            parts = []
    assert not parts, f"{path} ends in a partial record"
    return records


def of_type(records, kind: str) -> list:
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def history(records) -> list[dict]:
    """Each logged row: metric name -> value (a histogram: its parts under its name), with ``_step``."""
    rows = []
    for h in of_type(records, "history"):
        row = {}
        for item in h.item:
            key = list(item.nested_key) or [item.key]
            if len(key) == 1:
                row[key[0]] = json.loads(item.value_json)
            else:
                row.setdefault(key[0], {})[key[1]] = json.loads(item.value_json)
        rows.append(row)
    return rows


def tensorboard_names(run_dir) -> set[str]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return set(acc.Tags()["scalars"]) | set(acc.Tags()["histograms"])


def test_a_tracked_run_logs_its_config_and_tensorboards_names_once_per_update_across_resumes(tmp_path, offline):
    run = tmp_path / "run"
    args = [*CARTPOLE, "--track", "--checkpoint-every", "4", "--wandb-tags", "a, b", "--wandb-group", "g"]
    assert main(["train", *args, "--run-dir", str(run), "--stop-at-steps", "512"]) == 0
    kept = tmp_path / "checkpoint_512.pt"
    shutil.copy(run / "checkpoint.pt", kept)
    assert main(["train", "--resume", str(run), "--no-progress", "--stop-at-steps", "768"]) == 0
    # as if that invocation had been killed after logging up to 768 steps, its last checkpoint at 512: the
    # resume computes 576..768 again (bitwise) and W&B, which cannot delete rows, must not get them twice
    shutil.copy(kept, run / "checkpoint.pt")
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0

    records = wandb_records(run)
    state = json.loads((run / "wandb_run.json").read_text())
    runs = of_type(records, "run")
    assert len(runs) == 3 and {r.run_id for r in runs} == {state["id"]}  # one W&B run, three invocations
    assert runs[0].project == "htsrl" and runs[0].run_group == "g" and list(runs[0].tags) == ["a", "b"]
    assert runs[0].display_name == "run"
    assert state["env_steps"] == 1024

    rows = history(records)
    assert [r["_step"] for r in rows] == STEPS  # W&B's step is env steps, each update once

    configs = of_type(records, "config")
    logged = {u.key: json.loads(u.value_json) for u in configs[0].update}  # the first invocation's
    saved = json.loads((run / "config.json").read_text())
    assert {k: logged[k] for k in saved} == saved  # the resolved config (preset values filled in)
    assert logged["track"] is True and logged["preset"] == "classic-ppo"

    names = {k for r in rows for k in r if not k.startswith("_")}
    assert names == tensorboard_names(run)
    assert {"charts/episodic_return", "losses/value", "time/learn_s", "policy_lag", "policy_lag/mean"} <= names
    assert rows[-1]["policy_lag"]["_type"] == "histogram"
    # the numbers are progress.csv's, row for row (those that do not depend on timing)
    csv_rows = learning_rows(run)
    assert [int(r["env_steps"]) for r in csv_rows] == STEPS
    for row, csv_row in zip(rows, csv_rows):
        for key, value in csv_row.items():
            if key in ("env_steps", "updates"):
                continue
            assert (key not in row) if value == "" else row[key] == float(value), (key, row["_step"])


def test_wandb_failing_at_init_warns_once_and_the_run_goes_on(tmp_path, offline, monkeypatch, capsys):
    run = tmp_path / "run"
    monkeypatch.setenv("WANDB_MODE", "online")  # no API key and no login (an empty HOME): init fails at once
    assert main(["train", *CARTPOLE, "--run-dir", str(run), "--track"]) == 0
    err = capsys.readouterr().err
    mentions = [ln for ln in err.splitlines() if "W&B" in ln or ln.startswith("wandb")]  # wandb's own: "wandb: ..."
    assert len(mentions) == 1 and mentions[0].startswith("htsrl: warning: W&B tracking off: "), err
    assert RunDir(run).finished() and [int(r["env_steps"]) for r in learning_rows(run)] == STEPS
    assert not (run / "wandb_run.json").exists()


def test_wandb_failing_mid_run_warns_once_and_goes_quiet(tmp_path, offline, monkeypatch, capsys):
    run = tmp_path / "run"
    real_log, calls = offline.sdk.wandb_run.Run.log, []

    def log(self, *args, **kwargs):
        calls.append(kwargs.get("step"))
        if len(calls) > 2:
            raise OSError("no space left on device\nsecond line")
        return real_log(self, *args, **kwargs)

    monkeypatch.setattr(offline.sdk.wandb_run.Run, "log", log)
    assert main(["train", *CARTPOLE, "--run-dir", str(run), "--track"]) == 0
    err = capsys.readouterr().err
    warning = "htsrl: warning: W&B tracking off: no space left on device"  # its first line
    assert [ln for ln in err.splitlines() if "W&B" in ln] == [warning]
    assert calls == [64, 128, 192]  # quiet after the failure
    assert [r["_step"] for r in history(wandb_records(run))] == [64, 128]
    assert json.loads((run / "wandb_run.json").read_text())["env_steps"] == 128
    assert RunDir(run).finished()


@pytest.mark.parametrize(
    "flags",
    [["--track"], ["--report-to", "wandb"], ["--track", "--seeds", "1", "2"]],
    ids=["track", "report-to", "seeds"],
)
def test_track_without_wandb_is_refused_before_start(tmp_path, monkeypatch, capsys, flags):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError, as when not installed
    run = tmp_path / "run"
    assert main(["train", *CARTPOLE, "--run-dir", str(run), *flags]) == 2
    assert capsys.readouterr().err.strip() == REFUSAL
    assert not run.exists()


def test_eval_video_goes_to_the_tracked_run(tmp_path, offline, capsys):
    pytest.importorskip("pygame", reason="CartPole renders with pygame")
    pytest.importorskip("cv2", reason="the video is written with OpenCV")
    run = tmp_path / "run"
    assert main(["train", *CARTPOLE, "--total-steps", "256", "--run-dir", str(run), "--track"]) == 0
    assert main(["eval", str(run), "--episodes", "2", "--video", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])  # (pygame may greet on stdout first)
    records = wandb_records(run)
    assert len({r.run_id for r in of_type(records, "run")}) == 1  # the run's own W&B run, resumed
    last = history(records)[-1]
    assert last["_step"] == 257  # after the run's last row: W&B steps only increase
    assert last["eval/mean_score"] == result["mean_score"] and last["eval/episodes"] == 2
    video = last["eval/video"]
    assert video["_type"] == "video-file" and video["size"] == (run / "eval.mp4").stat().st_size
    assert json.loads((run / "wandb_run.json").read_text())["env_steps"] == 257


def test_overwrite_removes_what_tracking_kept(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    for path in (run.config, run.wandb_run, run.wandb_files / "offline-run-x" / "run-x.wandb"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    run.claim_new_run(overwrite=True)  # a new run in the folder is a new W&B run
    assert sorted(p.name for p in run.path.iterdir()) == []
