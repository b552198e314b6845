"""Hyper-parameter sweeps with Optuna: ``htsrl sweep --space space.yaml --trials N [--jobs J] ...``.

Needs the ``sweep`` extra (``pip install -e ".[sweep]"``: Optuna). The space file maps Config fields that
change the numbers (kind ``numerics``: ``lr``, ``ent_coef``, ``num_envs``, ``alpha``, ``algo``...) to a
search spec::

    lr: {low: 1.0e-4, high: 1.0e-3, log: true}   # a float range, sampled on a log scale
    ent_coef: {low: 0.0, high: 0.02}               # a float range
    alpha: {low: 64, high: 256, step: 64}          # an integer range (an integer field: integer bounds)
    num_envs: {choices: [8, 16]}                   # a choice (numbers, strings or booleans)

A bad key or spec is refused in one line naming the key and the file, as is a value the space allows that the
other flags refuse (each choice and each range's ends are checked with them and the first value of each other
key, through the checks of a run's start: ``resolve`` and ``htsrl.checks.preflight``), before anything is
written; a trial whose combination of values they refuse is told FAIL without a process. The study is opened
before the folder is written: one that does not open leaves nothing behind. The rest of the command line (every
``htsrl train`` flag, and ``--config FILE``) is the same for every trial.

The sweep folder (``--out``; default ``runs/sweep__<env>__<algo>__<space file's name>``, with no time in it, so
that running the same command again continues the sweep) holds ``sweep.json`` (what it was started with),
``space.yaml`` (the space file), ``config.yaml`` (the fixed flags, as a ``--config`` file), ``study.db`` (the
Optuna study in SQLite; with ``--storage URL`` the study is in that database instead, e.g. PostgreSQL),
``best.yaml`` (the best trial's resolved config: ``htsrl train --config best.yaml`` trains it again) and one
ordinary run per trial in ``trial_<N>/`` (N the Optuna trial number), its output in ``trial_<N>.log``.

Each trial is ``study.ask()`` with the space (TPE by default), then an ordinary ``htsrl train`` process
(``--config config.yaml`` plus the trial's values as flags), ``--jobs`` at a time, each in a session of its
own that dies with the sweep (as a seed group's seeds: ``htsrl/seeds.py``). The sweep reads each trial's
``progress.csv`` as windows complete and reports the metric's column (``charts/<metric>``, or ``<metric>``) to
Optuna at each multiple of ``--report-every`` env steps; the median pruner (``--pruner median``) then stops a
trial whose best value so far is below the median of the completed trials at the same step (SIGINT: it stops at
its next barrier with a checkpoint) and the trial is told PRUNED (its user attribute ``pruned`` is set before
the SIGINT, so a sweep killed meanwhile tells PRUNED when continued). A trial that ends is told COMPLETE with
``summary.json``'s ``--metric`` (default ``mean_return_last_100``; ``--direction minimize`` for a cost); one
that fails is told FAIL and reported at the end while the others go on.

``--trials N`` is the number of trials the study ends with: complete, pruned and failed ones count, a trial cut
by a stopped sweep before its first checkpoint does not (it is marked failed, with the user attribute ``cut``,
and a new trial takes its place). Running the same command again continues the study: trials that ended are
left as they are; a trial left running by a sweep that was stopped (Ctrl-C, SIGTERM) or killed (SIGKILL: each
trial then gets SIGTERM from the kernel and stops at its next barrier with a checkpoint) is resumed from its
checkpoint (``htsrl train --resume trial_N``, bitwise as if never cut) and its result told to the same trial;
one that ended before the sweep could record it is recorded from its ``summary.json``, or from its final
checkpoint where it was killed before writing ``summary.json`` (``finished_checkpoint``: the steps, episodes and
last-100 means; with another ``--metric`` it is marked ``cut``). So no trial is lost or counted twice, and a
rerun after the end only reports. Raising ``--trials`` runs more. One sweep process at a time works on a folder
(it is locked; use ``--jobs`` for parallel trials). Several folders may share one study (``--storage``, the
same ``--study-name``): each marks the trials it asks with its id (``sweep.json``'s ``id``, the trials' user
attribute ``sweep``) and continues only its own.

``optuna-dashboard sqlite:///SWEEP/study.db`` shows the study; ``htsrl plot SWEEP`` draws the trials' curves.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fcntl
import json
import math
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from htsrl.config import NUMERICS, Config, fields_of_kind, flag
from htsrl.errors import EXIT_INTERRUPTED, ConfigError, Interrupted
from htsrl.run_dir import (
    BEST,
    LOCK,
    STUDY_DB,
    SWEEP,
    SWEEP_CONFIG,
    SWEEP_SPACE,
    RunDir,
    RunDirLock,
    default_sweep_dir,
    is_sweep,
    trial_dir,
    trial_log,
)
from htsrl.seeds import _dies_with

POLL_S = 1.0  # how often a running trial's progress.csv is read
NOT_FOR_A_SWEEP = {
    "run_dir": "a sweep's folder is --out (each trial runs in OUT/trial_N)",
    "overwrite": "a sweep replaces no run; give another --out",
    "stop_at_steps": "a sweep's trials run to the end (Ctrl-C stops them, each with a checkpoint)",
    "stop_at_score": "a sweep's trials run to the end (Ctrl-C stops them, each with a checkpoint)",
}
SPEC_KEYS = {"choices", "low", "high", "log", "step"}
SPEC_FORM = "{choices: [...]} or {low: L, high: H} (with log: true, or step: S)"


def add_sweep_flags(p: argparse.ArgumentParser) -> None:
    """The sweep's own flags (the train flags are added beside them: they are fixed for every trial)."""
    p.add_argument("--space", required=True, metavar="FILE", help="YAML file: config key -> " + SPEC_FORM)
    p.add_argument(
        "--trials",
        type=int,
        required=True,
        metavar="N",
        help="trials the study ends with (complete, pruned or failed); the same command again continues the "
        "study up to N and does nothing more once there",
    )
    p.add_argument("--jobs", type=int, default=1, help="trials at a time")
    p.add_argument(
        "--metric",
        default="mean_return_last_100",
        help="the summary.json number to optimise; the pruner reads its progress.csv column (charts/METRIC)",
    )
    p.add_argument(
        "--direction",
        choices=("maximize", "minimize"),
        default="maximize",
        help="maximize: the larger the better (a return); minimize: a cost",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="the sweep folder (default runs/sweep__<env>__<algo>__<space file's name>)",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        default=None,
        help="an Optuna storage URL (e.g. postgresql://user@host/db) for the study (default: SQLite in OUT/study.db)",
    )
    p.add_argument("--study-name", default=None, help="the study's name in the storage (default: OUT's name)")
    p.add_argument(
        "--sampler",
        choices=("tpe", "random"),
        default="tpe",
        help="how Optuna picks a trial's values: TPE (after 10 random ones) or random",
    )
    p.add_argument(
        "--pruner",
        choices=("median", "none"),
        default="median",
        help="median: stop a trial whose curve is below the median of the completed ones at the same step",
    )
    p.add_argument(
        "--prune-after-trials", type=int, default=5, metavar="K", help="prune only once K trials have completed"
    )
    p.add_argument(
        "--prune-after-steps",
        type=int,
        default=None,
        metavar="S",
        help="prune no trial before S env steps (default: a third of --total-steps)",
    )
    p.add_argument(
        "--report-every",
        type=int,
        default=None,
        metavar="S",
        help="report the metric to Optuna at each multiple of S env steps, so that trials of other window "
        "sizes meet at the same steps (default: --total-steps / 100)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="a YAML or TOML file of fixed config keys (flags given here win over it)",
    )
    p.set_defaults(resume=None)  # config_files.given_values asks


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError('htsrl sweep needs Optuna: pip install -e ".[sweep]"') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep says what happens, trial by trial
    return optuna


# -- the space file


def read_space(path: str | Path, fixed: dict) -> dict:
    """The search space of a space file: config key -> Optuna distribution (ConfigError, naming the key and the
    file, for anything else). ``fixed``: the values given for every trial, which the space may not repeat."""
    from htsrl.config_files import _check_value, _field_types, check_key

    optuna = _optuna()
    path = Path(path)
    try:
        import yaml

        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"--space {path}: cannot read it ({e.strerror})") from None
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--space {path}: not valid YAML: {first}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"--space {path}: the file must be a mapping of config keys to {SPEC_FORM}")
    fields = {f.name: f for f in dataclasses.fields(Config)}
    searchable = set(fields_of_kind(NUMERICS))
    types = _field_types()
    space = {}
    for key, spec in data.items():
        check_key(key, path)
        if key not in searchable:
            raise ConfigError(
                f"{path}: {key} does not change a run's numbers (it is {fields[key].metadata['kind']}): "
                "a sweep searches only settings that do"
            )
        if key in fixed:
            raise ConfigError(f"{path}: {key} is also given as {flag(key)}: a setting is searched or fixed, not both")
        if key == "env_kwargs":
            raise ConfigError(f"{path}: env_kwargs is a JSON object: give it as a fixed flag, not in the space")
        if not isinstance(spec, dict) or not spec or set(spec) - SPEC_KEYS:
            raise ConfigError(f"{path}: {key} must be {SPEC_FORM}, got {spec!r}")
        allowed = types[key]
        if "choices" in spec:
            choices = spec["choices"]
            if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
                raise ConfigError(f"{path}: {key}: choices is a non-empty list, alone, got {spec!r}")
            values = [_check_value(key, v, allowed, fields[key].metadata.get("choices"), path) for v in choices]
            if any(v is None for v in values):
                raise ConfigError(f"{path}: {key}: null is not a choice (leave the key out for the preset's value)")
            if len({json.dumps(v) for v in values}) != len(values):
                raise ConfigError(f"{path}: {key}: a choice is given twice in {choices}")
            space[key] = optuna.distributions.CategoricalDistribution(values)
        else:
            space[key] = _range(key, spec, allowed, path, optuna)
    return space


def _range(key: str, spec: dict, allowed: tuple, path: Path, optuna):
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{path}: {key} must be {SPEC_FORM}, got {spec!r}")
    integer = int in allowed and float not in allowed
    if bool in allowed or not (integer or float in allowed):
        kinds = " or ".join(t.__name__ for t in allowed if t is not type(None))
        raise ConfigError(f"{path}: {key} is a {kinds}: search it with choices, not a range")
    bounds = {}
    for name in ("low", "high", "step"):
        v = spec.get(name)
        if name == "step" and v is None:
            continue
        if isinstance(v, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                v = float(v)
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{path}: {key}: {name} must be a number, got {spec[name]!r}")
        if integer and not isinstance(v, int):
            raise ConfigError(f"{path}: {key} is an integer: {name} must be an integer, got {v!r}")
        bounds[name] = v if integer else float(v)
    low, high, step = bounds["low"], bounds["high"], bounds.get("step")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{path}: {key}: log is true or false, got {log!r}")
    if not low < high:
        raise ConfigError(f"{path}: {key}: low ({low}) must be below high ({high})")
    if log and (low <= 0 or step is not None):
        raise ConfigError(f"{path}: {key}: a log range needs low > 0 and no step")
    if step is not None:
        n = (high - low) / step
        if step <= 0 or abs(n - round(n)) > 1e-9 * max(1.0, n):
            raise ConfigError(f"{path}: {key}: step must be positive and divide high - low ({high - low}), got {step}")
    if integer:
        return optuna.distributions.IntDistribution(low, high, log=log, step=step or 1)
    return optuna.distributions.FloatDistribution(low, high, log=log, step=step)


class _Checks:
    """A config's checks before a process starts: ``resolve``, then ``htsrl.checks.preflight`` (the env, bf16 on
    vector observations, the devices, the report sinks), as ``htsrl train`` runs them. The env is built once per
    (env, env_kwargs, backend) for the sweep's life, however many values and trials are checked with it."""

    def __init__(self):
        self.envs: dict = {}  # (env, env_kwargs, backend) -> EnvInfo, or the ConfigError its probe raised

    def __call__(self, cfg: Config) -> Config:
        """The resolved config (ConfigError: the line a run would refuse it with)."""
        from htsrl import checks
        from htsrl.config import resolve

        resolved = resolve(cfg)
        probe = checks.probe_env

        def probe_once(env, env_kwargs=None, backend="python"):
            key = (env, json.dumps(env_kwargs, sort_keys=True, default=str), backend)
            if key not in self.envs:
                try:
                    self.envs[key] = probe(env, env_kwargs, backend)
                except ConfigError as e:
                    self.envs[key] = e
            if isinstance(self.envs[key], ConfigError):
                raise ConfigError(str(self.envs[key]))
            return self.envs[key]

        checks.preflight(resolved, probe=probe_once)
        return resolved


def _check_space(space: dict, fixed: dict, path: Path, check: _Checks) -> Config:
    """Each choice and each range's ends with the fixed flags and the first value of each other key, through
    every check a run makes (``_Checks``): a value a trial would be refused with is refused here, in one line
    naming the key and the file. Returns the resolved config of the first values."""
    firsts = {key: _values(dist)[0] for key, dist in space.items()}
    try:
        first = check(Config(**fixed, **firsts))
    except ConfigError as e:
        if len(space) == 1:
            (key, value), *_ = firsts.items()
            raise ConfigError(f"{path}: {key} = {value!r} is refused with the other flags: {e}") from None
        raise ConfigError(
            f"{path}: the first values ({_params(firsts)}) are refused with the other flags: {e}"
        ) from None
    for key, dist in space.items():
        for value in _values(dist)[1:]:
            try:
                check(Config(**{**fixed, **firsts, key: value}))
            except ConfigError as e:
                raise ConfigError(f"{path}: {key} = {value!r} is refused with the other flags: {e}") from None
    return first


def _values(dist) -> list:
    """A distribution's choices, or its range's two ends."""
    return list(dist.choices) if hasattr(dist, "choices") else [dist.low, dist.high]


# -- the sweep folder


def _record(args: argparse.Namespace, fixed: dict, space_path: Path, out: Path) -> dict:
    """What a sweep was started with: a rerun in its folder must give the same."""
    import yaml

    storage = None
    if args.storage:
        try:
            from sqlalchemy.engine import make_url

            storage = make_url(args.storage).render_as_string(hide_password=True)  # no password in a file
        except Exception:
            raise ConfigError(
                f"--storage {args.storage}: not a database URL (e.g. postgresql://user@host/db)"
            ) from None
    return {
        "study_name": args.study_name or out.name,
        "storage": storage,
        "metric": args.metric,
        "direction": args.direction,
        "space": yaml.safe_load(space_path.read_text()),
        "fixed": fixed,
    }


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _check_folder(out: Path, record: dict) -> dict | None:
    """The record of the sweep ``out`` holds, started with the same (None: a new sweep); refuses anything else.
    A folder that holds only the lock and ``study.db`` is new: a start cut before it wrote its record (the study is
    opened first, and no trial runs before the record is written)."""
    if is_sweep(out):
        old = json.loads((out / SWEEP).read_text())
        for key, what in (
            ("space", "--space"),
            ("metric", "--metric"),
            ("direction", "--direction"),
            ("storage", "--storage"),
            ("study_name", "--study-name"),
        ):
            if not _same(old.get(key), record[key]):
                raise ConfigError(
                    f"{out} holds a sweep started with another {what} ({old.get(key)!r}); run its own command to "
                    "continue it, or give another --out"
                )
        for key in sorted(set(old["fixed"]) | set(record["fixed"])):
            if not _same(old["fixed"].get(key), record["fixed"].get(key)):
                was = old["fixed"].get(key, "unset")
                raise ConfigError(
                    f"{out} holds a sweep started with {flag(key)} {was} (now {record['fixed'].get(key, 'unset')}); "
                    "run its own command to continue it, or give another --out"
                )
        return old
    if out.exists() and (not out.is_dir() or any(p.name not in (LOCK, STUDY_DB) for p in out.iterdir())):
        raise ConfigError(f"{out} exists and holds no sweep; give --out a new or empty folder")
    return None


def _remove_new(out: Path, made: list[Path], had: set[str]) -> None:
    """A new sweep that could not start (its study did not open): remove what it wrote, the lock and a new
    ``study.db``, and the folders it made (deepest first), so that the corrected command finds none of it."""
    for name in (LOCK, STUDY_DB):
        if name not in had:
            (out / name).unlink(missing_ok=True)
    for folder in made:
        try:
            folder.rmdir()
        except OSError:  # not empty: something else is there now
            return


class _SweepLock:
    """One sweep process per folder (the kernel drops the lock when the process dies, even on SIGKILL)."""

    def __init__(self, out: Path):
        while True:  # again where the folder or its lock file was removed meanwhile (``_remove_new``)
            out.mkdir(parents=True, exist_ok=True)
            try:
                self.fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(self.fd)
                raise ConfigError(f"{out} is in use by another htsrl sweep (pid {holder})") from None
            try:
                if os.stat(out / LOCK).st_ino == os.fstat(self.fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(self.fd)  # the file locked is no longer the folder's lock
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        os.close(self.fd)


# -- a trial's learning curve, read as it grows


class _Curve:
    """The (env steps, metric) rows a trial's progress.csv gained since the last read. The file is read from
    where the last read ended; one rewritten under it (new columns, a resume dropping rows) is read anew."""

    def __init__(self, path: Path, metric: str):
        self.path, self.metric = path, metric
        self.header = b""
        self.offset = 0
        self.tail = b""  # the bytes before ``offset``: changed ones say the file was rewritten
        self.steps_at = self.value_at = -1

    def new_rows(self) -> list[tuple[int, float]]:
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with f:
            header = f.readline()
            if not header.endswith(b"\n"):
                return []
            f.seek(max(0, self.offset - len(self.tail)))
            if header != self.header or f.read(len(self.tail)) != self.tail:
                columns = next(csv.reader([header.decode()]))
                self.header, self.offset, self.tail = header, len(header), b""
                self.steps_at = columns.index("env_steps") if "env_steps" in columns else -1
                found = [c for c in (f"charts/{self.metric}", self.metric) if c in columns]
                self.value_at = columns.index(found[0]) if found else -1
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n")
        if end < 0:
            return []
        data = data[: end + 1]
        self.offset += len(data)
        self.tail = (self.tail + data)[-64:]
        if self.steps_at < 0 or self.value_at < 0:
            return []
        rows = []
        for row in csv.reader(data.decode().splitlines()):
            if len(row) > max(self.steps_at, self.value_at) and row[self.value_at]:
                try:
                    rows.append((int(float(row[self.steps_at])), float(row[self.value_at])))
                except ValueError:
                    pass
        return rows


@dataclasses.dataclass
class _Running:
    number: int
    trial: object  # optuna.Trial
    proc: subprocess.Popen
    curve: _Curve
    reported: dict  # step -> value, told to Optuna
    pruned: bool = False
    signalled: bool = False


# -- the sweep


def run_sweep(args: argparse.Namespace) -> int:
    """``htsrl sweep``: everything is checked, and the study opened, before the folder is written; returns the
    exit code."""
    from htsrl.config_files import given_values

    optuna = _optuna()
    for name, least in {
        "trials": 1,
        "jobs": 1,
        "prune_after_trials": 0,
        "prune_after_steps": 0,
        "report_every": 1,
    }.items():
        value = getattr(args, name)
        if value is not None and value < least:
            raise ConfigError(f"{flag(name)} must be a {'positive' if least else 'non-negative'} integer, got {value}")
    given = given_values(args)
    for name, why in NOT_FOR_A_SWEEP.items():
        if name in given:
            raise ConfigError(f"{flag(name)}: {why}")
    space_path = Path(args.space)
    space = read_space(space_path, given)
    check = _Checks()
    first = _check_space(space, given, space_path, check)
    out = Path(args.out) if args.out else default_sweep_dir(first, space_path)
    record = _record(args, given, space_path, out)
    if not (out.is_dir() and RunDir(out).in_use()):  # a first look, so that a refused folder gets no lock file
        _check_folder(out, record)
    made = [p for p in (out, *out.parents) if not p.exists()]  # deepest first
    had = {name for name in (LOCK, STUDY_DB) if (out / name).exists()}
    lock = _SweepLock(out)
    try:
        try:
            old = _check_folder(out, record)  # decided under the lock: another sweep may have started it meanwhile
            record["id"] = old.get("id") if old else uuid.uuid4().hex  # marks its trials in a shared study
            sweep = _Sweep(args, out, record, space, given, first.total_steps, optuna, check)
        except BaseException:
            if not is_sweep(out):
                _remove_new(out, made, had)
            raise
        if old is None:
            import yaml

            (out / SWEEP_SPACE).write_text(space_path.read_text())
            (out / SWEEP_CONFIG).write_text(yaml.safe_dump(given, sort_keys=False))
            (out / SWEEP).write_text(json.dumps(record, indent=2))
        return sweep.run()
    finally:
        lock.release()


class _Sweep:
    def __init__(
        self, args, out: Path, record: dict, space: dict, fixed: dict, total_steps: int, optuna, check: _Checks
    ):
        self.args, self.out, self.record, self.space, self.fixed, self.optuna = args, out, record, space, fixed, optuna
        self.check = check
        self.metric = args.metric
        self.every = args.report_every or max(1, total_steps // 100)
        warmup = total_steps // 3 if args.prune_after_steps is None else args.prune_after_steps
        self.storage = args.storage or f"sqlite:///{(out / STUDY_DB).resolve()}"
        sampler = optuna.samplers.TPESampler() if args.sampler == "tpe" else optuna.samplers.RandomSampler()
        pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=args.prune_after_trials, n_warmup_steps=warmup)
            if args.pruner == "median"
            else optuna.pruners.NopPruner()
        )
        try:
            self.study = optuna.create_study(
                study_name=record["study_name"],
                storage=self.storage,
                sampler=sampler,
                pruner=pruner,
                direction=args.direction,
                load_if_exists=True,
            )
        except Exception as e:  # an unreachable database, a missing driver: the first line says which
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"cannot open the study in {record['storage'] or self.storage}: {first}") from None
        if self.study.direction.name.lower() != args.direction:
            raise ConfigError(
                f"the study {record['study_name']} in {record['storage']} is to {self.study.direction.name.lower()}, "
                f"not --direction {args.direction}"
            )
        self.running: dict[int, _Running] = {}  # pidfd -> trial
        self.stopping = False
        self.halt: str | None = None  # why no new trial starts (a --metric that summary.json lacks)
        self.failed: list[int] = []

    def say(self, line: str) -> None:
        print(f"htsrl: {line}", file=sys.stderr, flush=True)

    # -- counting
    def _counted(self) -> int:
        states = self.optuna.trial.TrialState
        ended = self.study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED, states.FAIL))
        return sum(1 for t in ended if not t.user_attrs.get("cut"))

    def _mine(self, frozen) -> bool:
        """Whether this folder's sweep asked the trial: several folders may share a study (--storage)."""
        return frozen.user_attrs.get("sweep") == self.record.get("id")

    # -- what a stopped or killed sweep left
    def _left_running(self) -> list:
        """This folder's trials a sweep left RUNNING: each resumed (returned), recorded (pruned, or from its
        summary or its final checkpoint), or marked failed. Another folder's are that folder's sweep's."""
        states = self.optuna.trial.TrialState
        resume = []
        for frozen in self.study.get_trials(deepcopy=False, states=(states.RUNNING,)):
            if not self._mine(frozen):
                continue
            n, run = frozen.number, RunDir(trial_dir(self.out, frozen.number))
            trial = self.optuna.trial.Trial(self.study, frozen._trial_id)
            if run.path.is_dir():
                self._wait_released(run)
            if frozen.user_attrs.get("pruned"):  # pruned, then stopped before it was recorded
                self.study.tell(trial, state=states.PRUNED)
                self.say(f"trial {n}: pruned before the sweep stopped: recorded pruned")
            elif run.finished():  # it ended before the sweep could record it
                self._tell_result(trial, n, run)
            elif (final := finished_checkpoint(run)) is not None:  # it ended, cut before writing summary.json
                if self.metric in final:
                    self._tell_result(trial, n, run, final)
                else:
                    self._cut(trial, f"finished, cut before writing summary.json; its checkpoint has no {self.metric}")
            elif run.has_checkpoint():
                resume.append((trial, dict(frozen.intermediate_values)))
            else:
                self._cut(trial, "cut before its first checkpoint by a stopped sweep")
        return resume

    def _cut(self, trial, why: str) -> None:
        """Marked failed with the user attribute ``cut``: not counted, a new trial takes its place."""
        trial.set_user_attr("cut", True)
        trial.set_user_attr("failure", why)
        self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        self.say(
            f"trial {trial.number}: {why.removesuffix(' by a stopped sweep')}: marked failed (not counted); "
            "a new trial runs"
        )

    def _wait_released(self, run: RunDir, timeout_s: float = 300.0) -> None:
        """A killed sweep's trial is still stopping (it got SIGTERM and saves a checkpoint): wait for its end."""
        deadline, said = time.monotonic() + timeout_s, False
        while True:
            try:
                RunDirLock(run.path).release()
                return
            except ConfigError as e:
                if time.monotonic() > deadline:
                    raise ConfigError(f"{e} (is another sweep running this study?)") from None
                if not said:
                    self.say(f"{run.path.name}: waiting for its process from the stopped sweep to end")
                    said = True
                time.sleep(0.5)

    # -- starting
    def _start(self, trial, reported: dict, resume: bool) -> None:
        n = trial.number
        run = trial_dir(self.out, n)
        base = [sys.executable, "-m", "htsrl", "train", "--no-progress"]
        if resume:
            cmd = [*base, "--resume", str(run)]
        else:
            from htsrl.config_files import as_flags

            values = [x for k, v in trial.params.items() for x in as_flags(k, v)]
            cmd = [*base, "--config", str(self.out / SWEEP_CONFIG), "--run-dir", str(run), *values]
        trial.set_user_attr("run_dir", str(run.resolve()))
        with open(trial_log(self.out, n), "a") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=log, start_new_session=True, preexec_fn=_dies_with(os.getpid())
            )
        entry = _Running(n, trial, proc, _Curve(RunDir(run).progress, self.metric), reported)
        self.running[os.pidfd_open(proc.pid)] = entry
        if self.stopping:  # a stop that came while it was being started
            self._signal(entry)
        what = "resumed from its checkpoint" if resume else f"started ({_params(trial.params)})"
        self.say(f"trial {n}: {what} in {run}, output in {trial_log(self.out, n).name}")

    def _ask(self):
        """A new trial, or None where its values are refused by the checks a run makes (it is then told FAIL,
        and no process starts)."""
        trial = self.study.ask(self.space)
        trial.set_user_attr("sweep", self.record["id"])
        try:
            self.check(Config(**{**self.fixed, **trial.params}))
        except ConfigError as e:
            trial.set_user_attr("failure", str(e))
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
            self.failed.append(trial.number)
            self.say(f"trial {trial.number}: refused ({_params(trial.params)}): {e}")
            return None
        return trial

    def _signal(self, entry: _Running) -> None:  # once: a second SIGINT would stop it without a checkpoint
        if not entry.signalled:
            entry.signalled = True
            entry.proc.send_signal(signal.SIGINT)

    # -- watching
    def _watch(self, entry: _Running, may_prune: bool = True) -> None:
        new = False
        for steps, value in entry.curve.new_rows():
            step = steps // self.every * self.every
            if step not in entry.reported and math.isfinite(value):
                entry.trial.report(value, step)
                entry.reported[step] = value
                new = True
        if new and may_prune and not (self.stopping or entry.pruned) and entry.trial.should_prune():
            entry.pruned = True
            entry.trial.set_user_attr("pruned", True)  # in the study first: a sweep killed now still tells PRUNED
            self._signal(entry)
            step = max(entry.reported)
            value = entry.reported[step]
            self.say(
                f"trial {entry.number}: pruned at {step:,} steps ({self.metric} {value:.4g}, against the median of "
                "the completed trials there): it stops at its next barrier"
            )

    def _ended(self, entry: _Running, code: int) -> None:
        self._watch(entry, may_prune=False)
        n, run = entry.number, RunDir(trial_dir(self.out, entry.number))
        states = self.optuna.trial.TrialState
        if entry.pruned:
            self.study.tell(entry.trial, state=states.PRUNED)
        elif code == 0 and run.finished():
            self._tell_result(entry.trial, n, run)
        elif code == EXIT_INTERRUPTED and self.stopping:
            kept = "its checkpoint is kept and" if run.has_checkpoint() else "no checkpoint yet, so"
            self.say(f"trial {n}: stopped; {kept} the same command again {_rerun(run.has_checkpoint())}")
        else:
            why = f"killed by signal {-code}" if code < 0 else f"exit {code}"
            entry.trial.set_user_attr("failure", why)
            self.study.tell(entry.trial, state=states.FAIL)
            self.failed.append(n)
            self.say(f"trial {n}: failed ({why}): see {trial_log(self.out, n)}")

    def _tell_result(self, trial, n: int, run: RunDir, final: dict | None = None) -> None:
        """Its ``summary.json``'s metric, or (``final``) the numbers of its final checkpoint."""
        summary = final or run.read_summary() or {}
        value = summary.get(self.metric)
        states = self.optuna.trial.TrialState
        trial.set_user_attr("env_steps", summary.get("env_steps"))
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            self.study.tell(trial, float(value))
            how = " (from its final checkpoint: it was cut before writing summary.json)" if final else ""
            self.say(f"trial {n}: done at {summary['env_steps']:,} steps, {self.metric} {value:.4g}{how}")
            self._write_best()
            return
        if self.metric not in summary:
            numbers = sorted(k for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
            self.halt = f"--metric {self.metric}: summary.json has no such number (it has {', '.join(numbers)})"
        trial.set_user_attr("failure", f"summary.json's {self.metric} is {value!r}")
        self.study.tell(trial, state=states.FAIL)
        self.failed.append(n)
        self.say(f"trial {n}: ended with no {self.metric} ({value!r}): marked failed")

    # -- the loop
    def run(self) -> int:
        resume = self._left_running()

        def stop(signum, frame):  # every running trial stops at its next barrier with a checkpoint
            self.stopping = True
            for entry in list(self.running.values()):
                self._signal(entry)

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while True:
                while not (self.stopping or self.halt) and len(self.running) < self.args.jobs:
                    if resume:
                        self._start(*resume.pop(0), resume=True)
                    elif self._counted() + len(self.running) < self.args.trials:
                        trial = self._ask()
                        if trial is not None:
                            self._start(trial, {}, resume=False)
                    else:
                        break
                if not self.running:
                    break
                ready, _, _ = select.select(list(self.running), [], [], POLL_S)
                for fd, entry in list(self.running.items()):
                    if fd in ready:
                        del self.running[fd]
                        os.close(fd)
                        self._ended(entry, entry.proc.wait())
                    else:
                        self._watch(entry)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for fd in self.running:
                os.close(fd)
        best = self._report()
        if self.stopping:
            raise Interrupted(
                f"the sweep's running trials stopped with a checkpoint; the same command again continues the study "
                f"in {self.out}"
            )
        if self.halt:
            raise ConfigError(self.halt)
        return 0 if best is not None else 1

    # -- the end
    def _best(self):
        try:
            return self.study.best_trial
        except ValueError:  # no complete trial
            return None

    def _best_run(self, best) -> RunDir | None:
        """The best trial's run folder: this folder's, or another's on a shared study (its ``run_dir``)."""
        if self._mine(best):
            return RunDir(trial_dir(self.out, best.number))
        return RunDir(best.user_attrs["run_dir"]) if best.user_attrs.get("run_dir") else None

    def _write_best(self) -> bool:
        """``best.yaml``, where the best trial's run folder can be read here (False, and no stale file, if not)."""
        best = self._best()
        run = self._best_run(best) if best is not None else None
        if run is None or not run.config.is_file():
            if best is not None:
                (self.out / BEST).unlink(missing_ok=True)  # it names a trial that is no longer the best
            return False
        from htsrl.config_files import dump_config

        cfg = dataclasses.replace(run.saved_config(), progress=self.fixed.get("progress", Config().progress))
        head = f"# the best trial of the sweep {self.out}: trial {best.number}, {self.metric} {best.value:.6g}\n"
        (self.out / BEST).write_text(head + dump_config(cfg))
        return True

    def _report(self):
        states = self.optuna.trial.TrialState
        trials = self.study.get_trials(deepcopy=False)
        count = {s: sum(1 for t in trials if t.state == s) for s in states}
        cut = sum(1 for t in trials if t.state == states.FAIL and t.user_attrs.get("cut"))
        parts = [f"{count[states.COMPLETE]} complete", f"{count[states.PRUNED]} pruned"]
        parts.append(f"{count[states.FAIL] - cut} failed" + (f" (+{cut} cut, not counted)" if cut else ""))
        running = [t for t in trials if t.state == states.RUNNING]
        mine = sum(1 for t in running if self._mine(t))
        if mine:
            parts.append(f"{mine} to resume")
        if len(running) > mine:
            parts.append(f"{len(running) - mine} running in other folders' sweeps")
        self.say(f"sweep {self.out}: {self._counted()} of {self.args.trials} trials: {', '.join(parts)}")
        if self.failed:
            listed = ", ".join(map(str, self.failed))
            self.say(f"{len(self.failed)} trials failed in this run ({listed}): see their trial_N.log")
        best = self._best()
        if best is None:
            self.say("no trial has completed yet")
            return None
        if self._write_best():
            where = f"its config: htsrl train --config {self.out / BEST}"
        elif self._mine(best):
            where = f"its run folder {self._best_run(best)} is gone"
        else:
            where = "it was not run in this folder, and its run folder is not here (another sweep on this study?)"
        self.say(f"best: trial {best.number}, {self.metric} {best.value:.6g} ({_params(best.params)}); {where}")
        dashboard = self.storage if self.args.storage is None else "<the --storage URL>"
        self.say(f"see the study with: optuna-dashboard {dashboard}; the curves with: htsrl plot {self.out}")
        return best


def finished_checkpoint(run: RunDir) -> dict | None:
    """The numbers of ``summary.json`` that a finished run's final checkpoint holds (None: no checkpoint, or one
    of a run not finished), for a trial killed after its final checkpoint but before its ``summary.json``:
    ``htsrl train --resume`` refuses a finished run, so this is its result. The last-100 means are the monitor's
    (the same sums, in the same order, as ``summary.json``'s); the timings and hashes are not in a checkpoint."""
    from htsrl.checkpoint import load_checkpoint
    from htsrl.errors import CheckpointError

    if not run.has_checkpoint():
        return None
    try:
        ckpt = load_checkpoint(run.path)
    except CheckpointError:  # its resume says why
        return None
    if not ckpt.get("finished"):
        return None
    monitor, cfg = ckpt["monitor"], ckpt["config"]
    return {
        "finished": True,
        "env_steps": ckpt["next_window"] * cfg["num_envs"] * cfg["alpha"],
        "updates": ckpt["learner"]["updates"],
        "episodes": monitor["episodes"],
        "mean_return_last_100": _mean(monitor["returns"]),
        "mean_score_last_100": _mean(monitor["scores"]),
    }


def _mean(xs: list) -> float | None:
    return sum(xs) / len(xs) if xs else None  # summary.json: None where no episode ended


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _rerun(has_checkpoint: bool) -> str:
    return "resumes it" if has_checkpoint else "marks it failed and runs a new trial"
