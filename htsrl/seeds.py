"""Several seeds of one setting in one command: ``htsrl train ... --seeds 1 2 3 [--jobs N]``.

The group folder (``--run-dir``; default ``runs/<env>__<algo>__seeds__<time>``) holds ``group.json`` (the
seeds), ``config.yaml`` (the flags given, as a ``--config`` file) and one ordinary run per seed in
``seed_<S>/`` (resumable, evaluable, plottable: ``htsrl plot GROUP/seed_*`` draws them as one curve), with
its output in ``seed_<S>.log``. The config is checked before anything is written (as a single run's is).
Each seed is its own ``htsrl train`` process in a session of its own (a terminal's Ctrl-C reaches only the
group, which forwards it: one stop, at the next barrier), ``--jobs`` at a time, and dies with the group
(``PR_SET_PDEATHSIG``: it stops with a checkpoint); a seed that fails is reported at the end and the others
still run. The group waits on its seeds' pidfds: it sleeps until one ends.
``htsrl train --resume GROUP`` finishes what is unfinished: a finished seed is left as it is, a stopped one
resumed (bitwise), one that saved no checkpoint started again.
"""

from __future__ import annotations

import ctypes
import math
import os
import select
import signal
import statistics
import subprocess
import sys
from pathlib import Path

from htsrl.config import PER_INVOCATION
from htsrl.errors import EXIT_INTERRUPTED, ConfigError, Interrupted
from htsrl.run_dir import GROUP_CONFIG, RunDir, group_seeds, is_sweep, seed_dir, seed_log, sweep_trials, write_group


def is_group(folder: str | Path) -> bool:
    return RunDir(folder).is_group()


def expand(folders: list[str]) -> list[str]:
    """Run folders, with each seed group replaced by its seeds' runs and each sweep by its trials' (``htsrl plot
    GROUP``, ``htsrl plot SWEEP``)."""
    out = []
    for folder in folders:
        if is_group(folder) or is_sweep(folder):
            runs = sweep_trials(folder) if is_sweep(folder) else [seed_dir(folder, s) for s in group_seeds(folder)]
            out += [str(run) for run in runs if RunDir(run).progress.is_file()]
        else:
            out.append(folder)
    return out


# prctl, looked up in the parent: the child between fork and exec calls it without loading anything
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _dies_with(parent: int):
    """What a seed's child runs before exec: SIGTERM from the kernel when the group dies (it then stops
    with a checkpoint); a group that died before that call leaves no child running alone."""

    def before_exec() -> None:
        if _PRCTL is not None:
            _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return before_exec


def start_group(group: Path, given: dict, seeds: list[int], jobs: int, run_flags: list[str]) -> int:
    """A new group of ``seeds`` with the config values ``given`` (flags and --config file merged);
    ``run_flags``: flags for this invocation only (--stop-at-steps, --overwrite, ...)."""
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {' '.join(map(str, seeds))} names a seed twice")
    if is_group(group) and "--overwrite" not in run_flags:
        raise ConfigError(
            f"{group} already holds a seed group; continue it with: htsrl train --resume {group}, or replace it "
            "with --overwrite"
        )
    held = RunDir(group).run_markers()
    if held:
        raise ConfigError(
            f"{group} holds a single run ({', '.join(held)}), not a seed group; give --seeds another --run-dir"
        )
    import yaml

    group.mkdir(parents=True, exist_ok=True)
    values = {k: v for k, v in given.items() if k not in ("seed", "run_dir", *PER_INVOCATION)}
    write_group(group, seeds, yaml.safe_dump(values, sort_keys=False))
    return _run_seeds(group, seeds, jobs, run_flags)


def resume_group(group: Path, jobs: int, run_flags: list[str]) -> int:
    return _run_seeds(group, group_seeds(group), jobs, [f for f in run_flags if f != "--overwrite"], resume=True)


def _command(group: Path, seed: int, run_flags: list[str], resume: bool) -> list[str]:
    run = seed_dir(group, seed)
    base = [sys.executable, "-m", "htsrl", "train", "--no-progress"]
    if resume and RunDir(run).has_checkpoint():
        return [*base, "--resume", str(run), *run_flags]
    # a seed that saved no checkpoint (it failed or was stopped before its first) starts again in place
    again = ["--overwrite"] if resume and "--overwrite" not in run_flags else []
    config = str(group / GROUP_CONFIG)
    return [*base, "--config", config, "--seed", str(seed), "--run-dir", str(run), *again, *run_flags]


def _run_seeds(group: Path, seeds: list[int], jobs: int, run_flags: list[str], resume: bool = False) -> int:
    queue = [s for s in seeds if not (resume and RunDir(seed_dir(group, s)).finished())]
    for s in seeds:
        if s not in queue:
            print(f"htsrl: seed {s}: finished before, left as it is", file=sys.stderr)
    running: dict[int, subprocess.Popen] = {}
    ended: dict[int, int] = {}  # pidfd -> seed: the group sleeps in select() until one of them ends
    codes: dict[int, int] = {}
    stopping = False
    signalled: set[int] = set()

    def forward() -> None:  # once per seed: a second SIGINT would stop it without a checkpoint
        for seed, proc in running.items():
            if seed not in signalled:
                signalled.add(seed)
                proc.send_signal(signal.SIGINT)

    def stop(signum, frame):  # every running seed stops at its next barrier with a checkpoint
        nonlocal stopping
        stopping = True
        forward()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while queue or running:
            while queue and len(running) < jobs and not stopping:
                seed = queue.pop(0)
                with open(seed_log(group, seed), "a") as log:
                    running[seed] = subprocess.Popen(
                        _command(group, seed, run_flags, resume),
                        stdout=log,
                        stderr=log,
                        start_new_session=True,
                        preexec_fn=_dies_with(os.getpid()),
                    )
                ended[os.pidfd_open(running[seed].pid)] = seed
                if stopping:  # a stop that came while it was being started
                    forward()
                where = f"{seed_dir(group, seed)}, output in {seed_log(group, seed).name}"
                print(f"htsrl: seed {seed}: started ({where})", file=sys.stderr)
            if running:
                ready, _, _ = select.select(list(ended), [], [])
                for fd in ready:
                    seed = ended.pop(fd)
                    os.close(fd)
                    proc = running.pop(seed)
                    codes[seed] = proc.wait()
                    print(f"htsrl: seed {seed}: {_describe(group, seed, codes[seed])}", file=sys.stderr)
            if stopping and not running:
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for fd in ended:
            os.close(fd)
    _report(group, seeds)
    if stopping:
        raise Interrupted(f"the group's running seeds stopped; continue with: htsrl train --resume {group}")
    failed = sorted(s for s, code in codes.items() if code != 0)
    if failed:
        print(
            f"htsrl: {len(failed)} of {len(seeds)} seeds failed ({', '.join(map(str, failed))}): see their seed_S.log; "
            f"htsrl train --resume {group} runs them again",
            file=sys.stderr,
        )
        return 1
    return 0


def _describe(group: Path, seed: int, code: int) -> str:
    if code == 0:
        summary = RunDir(seed_dir(group, seed)).read_summary() or {}
        ret = summary.get("mean_return_last_100")
        state = "done" if summary.get("finished") else "stopped"
        return f"{state} at {summary['env_steps']:,} steps, mean return of the last 100 {_fmt(ret)}"
    if code == EXIT_INTERRUPTED:
        if RunDir(seed_dir(group, seed)).has_checkpoint():
            return "stopped (Ctrl-C or SIGTERM); its last checkpoint is kept"
        return "stopped (Ctrl-C or SIGTERM) before its first checkpoint: --resume starts it again"
    if code < 0:
        return f"killed by signal {-code}"
    return f"failed (exit {code})"


def _fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _report(group: Path, seeds: list[int]) -> None:
    finals = []
    for s in seeds:
        r = RunDir(seed_dir(group, s)).read_summary()
        if r is not None:
            if r.get("finished") and r.get("mean_return_last_100") is not None:
                finals.append(r["mean_return_last_100"])
    if finals:
        spread = (
            f" (min {min(finals):.2f}, max {max(finals):.2f}, sd {statistics.stdev(finals):.2f})"
            if len(finals) > 1
            else ""
        )
        print(
            f"htsrl: group {group}: {len(finals)} of {len(seeds)} seeds finished, mean return of the last 100 "
            f"{statistics.fmean(finals):.2f}{spread}; plot them with: htsrl plot {group}",
            file=sys.stderr,
        )
