"""Runs saved by an older htsrl go on with this one, bitwise.

``fixtures/a4213be_cartpole_stopped`` is a run folder written by htsrl at commit a4213be (before the
run folder, checkpoint state and summary moved to their own modules), stopped half-way:
``htsrl train --env CartPole-v1 --num-envs 4 --alpha 16 --total-steps 1024 --stop-at-steps 512 --seed 3``.
The same command without ``--stop-at-steps`` at a4213be ended with the weights pinned below.

Those weights are the arithmetic of the kind of CPU they were made on: another kind's kernels (MKL's and
ATen's paths chosen by its instruction set) round differently, so there the same run ends elsewhere, and a
run resumed from the fixture (its first half made on the first kind) ends elsewhere again. Such a kind has
its own pins below, found by vendor, AVX-512 and AMX: the instruction sets that choose the kernels. That
rule is inferred from two Intel Xeons of different generations (model 207 and model 106, both with
AVX-512 and without AMX), which ended on the same weights; other AVX-512 Intels without AMX (Skylake,
Cascade Lake) are assumed to round as they do. So a change of htsrl's numbers still fails on every kind;
any other kind is held to the original pins, as before such a kind was seen."""

import csv
import json
import shutil
from pathlib import Path

from htsrl.cli import main
from htsrl.config import cpuinfo_here, first_cpu_fields

FIXTURE = Path(__file__).parent / "fixtures" / "a4213be_cartpole_stopped"
UNINTERRUPTED_AT_A4213BE = "308b420724b9e8e6a3859ec82376cd0e0ddf721328cce57c4e5345d949bce677"
# CPU kind -> (the fixture resumed there, the run trained there from the start)
OTHER_CPU_KINDS = {
    # 2-core VMs of Intel Xeons with AVX-512 that hide AMX: 5th generation (model 207) and Ice Lake (106)
    ("GenuineIntel", "avx512f", "no amx"): (
        "a2315b0ad5f208b4c29e7d5ac92eb06a8d7930efd4dd8e9ef3644d35c05a634b",
        "52b6db26ecdbd77e15566716ef960b0bd03a5f4b25404e999120211f5050e148",
    ),
}


def cpu_kind() -> tuple[str, ...]:
    """Vendor, and whether AVX-512 and AMX show, from the first processor of /proc/cpuinfo."""
    fields = first_cpu_fields(cpuinfo_here())
    if not fields:  # no /proc/cpuinfo: no kind, the original pins
        return ()
    flags = fields.get("flags", "").split()
    avx512 = "avx512f" if "avx512f" in flags else "no avx512f"
    amx = "amx" if "amx_bf16" in flags else "no amx"
    return (fields.get("vendor_id", ""), avx512, amx)


def test_a_run_stopped_by_an_older_htsrl_resumes_to_its_uninterrupted_weights(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    assert main(["train", "--resume", str(run), "--no-progress", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["finished"] and summary["env_steps"] == 1024 and summary["resumed_at_steps"] == 512
    resumed, uninterrupted = OTHER_CPU_KINDS.get(cpu_kind(), (UNINTERRUPTED_AT_A4213BE,) * 2)
    assert summary["params_sha256"] == resumed
    # the same run trained today from the start ends with the same weights
    fresh = tmp_path / "fresh"
    args = ["--env", "CartPole-v1", "--num-envs", "4", "--alpha", "16", "--total-steps", "1024", "--seed", "3"]
    assert main(["train", *args, "--run-dir", str(fresh), "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params_sha256"] == uninterrupted
    with open(run / "progress.csv") as f:
        assert [int(r["env_steps"]) for r in csv.DictReader(f)] == list(range(64, 1025, 64))
