"""Command line: ``htsrl train ...`` (flags are the fields of :class:`htsrl.config.Config`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path

from htsrl import seeds
from htsrl.config import LAYOUT, PER_INVOCATION, PRESETS, RUN_CONTROL, Config, fields_of_kind, flag
from htsrl.config_files import as_flags, given_values
from htsrl.env_families import SYNTHETIC, family_of
from htsrl.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, ConfigError, HtsrlError
from htsrl.run_dir import RunDir, default_run_dir

# Before torch loads: idle OpenMP threads sleep instead of spinning, so a learner thread waiting in a
# parallel region does not steal the core an environment needs (measured: +4% SPS on Breakout).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class _Parser(argparse.ArgumentParser):
    """Bad input is one line and exit code 2, like every other htsrl error (argparse would print the
    whole usage first)."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"htsrl: error: {message} (see '{self.prog} --help')\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: X)' only where the default is a value; htsrl's config flags default to None
    (so a given flag is told apart from a preset's) and carry their real default in their help."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


# What an unset flag means where no preset sets it (a preset sets the others: "from the preset").
_UNSET_MEANS = {
    "stop_at_steps": "none: train all of --total-steps",
    "stop_at_score": "none: no score stops the run",
    "init_from": "none: new weights",
}


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(Config)
    defaults = Config()
    from_presets = {k for preset in PRESETS.values() for k in preset}
    for f in dataclasses.fields(Config):
        typ = hints[f.name]
        base = ([a for a in typing.get_args(typ) if a is not type(None)] or [typ])[0]
        help_ = f.metadata.get("help", "")
        default = getattr(defaults, f.name)
        if default is not None and default != {} and "default" not in help_:
            help_ += f" (default: {str(default).lower() if isinstance(default, bool) else default})"
        elif default is None and "default" not in help_:
            unset = "from the preset" if f.name in from_presets else _UNSET_MEANS.get(f.name, "none")
            help_ += f" (default: {unset})"
        kw: dict = {"dest": f.name, "default": None, "help": help_}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
        flag = "--" + f.name.replace("_", "-")
        if base is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif base is dict:
            p.add_argument(flag, type=_json_dict, **kw)
        else:
            p.add_argument(flag, type=base, **kw)


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def build_parser() -> argparse.ArgumentParser:
    from htsrl import __version__

    parser = _Parser(prog="htsrl", description="High-throughput synchronous RL (HTS-RL)")
    parser.add_argument("--version", action="version", version=f"htsrl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser("train", help="train an A2C/PPO agent", formatter_class=_HelpFormatter)
    _add_config_flags(train)
    train.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR from its checkpoint "
        "(bitwise identical to an uninterrupted run); flags given must equal the run's, except layout "
        "and run-control flags",
    )
    train.add_argument(
        "--config",
        metavar="FILE",
        help="a YAML or TOML file of config keys (the flags' names with _ for -); flags given here win over it",
    )
    train.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (preset values filled in) as a --config file and exit, starting nothing",
    )
    train.add_argument("--config-format", choices=("yaml", "toml"), default="yaml", help="--print-config's format")
    train.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="S",
        help="train one run per seed in RUN_DIR/seed_S/ (a seed group; --resume GROUP finishes what is unfinished)",
    )
    train.add_argument("--jobs", type=int, default=1, help="with --seeds: runs at a time")
    _add_json_flag(train, "also print the summary (summary.json) as one JSON line on stdout")
    be = sub.add_parser(
        "bench", help="throughput: raw ceiling vs lock-step vs HTS vs SB3, side by side", formatter_class=_HelpFormatter
    )
    _add_config_flags(be)
    be.add_argument("--steps", type=int, default=20_000, help="agent steps per run")
    be.add_argument("--reps", type=int, default=3, help="repetitions (interleaved)")
    be.add_argument(
        "--modes",
        default="raw,sync,hts",
        help="comma list of raw,sync,hts,sb3 and "
        "raw-envpool,sync-envpool,hts-envpool (Atari on EnvPool executors, with their ratio to Python)",
    )
    be.add_argument("--out", default="bench", help="folder for bench.json, bench.png and the runs")
    st = sub.add_parser("steptime", help="step-time distribution of an env: Gamma fit and KS test of window sums")
    st.add_argument("--env", required=True)
    st.add_argument("--env-kwargs", type=_json_dict, default={})
    st.add_argument("--steps", type=int, default=20_000, help="steps to time (random actions)")
    st.add_argument("--k", type=int, default=100, help="steps per summed window")
    st.add_argument("--out", default="steptime", help="folder for steptime.json/.png and step_times.npy")
    ev = sub.add_parser("eval", help="play a trained policy and report its true score")
    ev.add_argument("run_dir")
    ev.add_argument(
        "--episodes",
        type=int,
        default=30,
        help="games to play (an Atari score varies a lot from game to game: 10 games can be far from the mean)",
    )
    ev.add_argument(
        "--deterministic",
        "--greedy",
        action="store_true",
        help="take the most likely action (Box: the mean), as predict and the exported files do; default: sample "
        "as training's actors do, so the score compares with the return training reports",
    )
    ev.add_argument(
        "--video",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="record the first episode as MP4 (default path: RUN_DIR/eval.mp4)",
    )
    ev.add_argument("--seed", type=int, default=None, help="base of the evaluation seeds (default: the run's seed)")
    _add_checkpoint_flag(ev)
    _add_json_flag(ev, "also print the result (without every game's score) as one JSON line on stdout")
    ex = sub.add_parser(
        "export",
        help="write the policy as TorchScript or ONNX: raw observations in, greedy actions out "
        "(recurrent policies: the state in and out too)",
        formatter_class=_HelpFormatter,
    )
    ex.add_argument("run_dir")
    ex.add_argument("--format", required=True, choices=("torchscript", "onnx"), help="file format")
    ex.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help="file to write (default: RUN_DIR/policy_torchscript.pt or RUN_DIR/policy.onnx)",
    )
    _add_checkpoint_flag(ex)
    _add_json_flag(ex, "also print the file's path, inputs and outputs as one JSON line on stdout")
    sw = sub.add_parser(
        "sweep",
        help='search hyper-parameters with Optuna, one run per trial (pip install -e ".[sweep]"); the train flags '
        "given are every trial's",
        formatter_class=_HelpFormatter,
    )
    _add_config_flags(sw)
    from htsrl.sweep import add_sweep_flags

    add_sweep_flags(sw)
    pl = sub.add_parser("plot", help="learning curves of one or more runs as PNG")
    pl.add_argument("run_dirs", nargs="+")
    pl.add_argument("--out", default="learning_curves.png", help="PNG path")
    pl.add_argument("--title", default=None)
    pl.add_argument(
        "--metric",
        default="charts/mean_return_last_100",
        help="progress.csv column to plot (e.g. charts/mean_score_last_100 for football's score difference)",
    )
    pl.add_argument(
        "--resources",
        action="store_true",
        help="plot what each run held instead (resources/*: memory per role, shared memory, descriptors)",
    )
    parser.commands = sub.choices  # for main(): an unknown flag's error names its command's --help
    return parser


def _add_json_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--json", action="store_true", help=f"{what} (the human lines go to stderr)")


def _add_checkpoint_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        choices=("auto", "final", "last"),
        default="auto",
        help="which weights: final (model.pt), last (checkpoint.pt), auto (the newer of the two)",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """The config of this invocation: the flags given over the defaults, or, with --resume DIR, over the
    run's saved config (``train`` then refuses any given flag that would change the numbers)."""
    given = given_values(args)
    if not args.resume:
        cfg = Config(**given)
        if cfg.run_dir is None:
            cfg.run_dir = str(default_run_dir(cfg))
        return cfg
    _refuse_overwrite_with_resume(given)
    return RunDir(args.resume).resume_config(given)


def _refuse_overwrite_with_resume(given: dict) -> None:
    if given.get("overwrite"):
        raise ConfigError("--overwrite starts a new run in place of the old; --resume continues the old one")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # refused by the command's parser, so that the error points to 'htsrl <command> --help'
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        code = _run(args)
    except HtsrlError as e:  # from any command: one message, the error's exit code
        what = {EXIT_BAD_INPUT: "error", EXIT_INTERRUPTED: "interrupted"}.get(e.exit_code, "run failed")
        print(f"htsrl: {what}: {e}", file=sys.stderr)
        code = e.exit_code
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, without a new checkpoint
        print(f"htsrl: interrupted; all processes stopped{_what_resumes(args)}", file=sys.stderr)
        code = EXIT_INTERRUPTED
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun rank: everything is on disk and the process group is gone. Skip the interpreter's
        # shutdown, where native threads of torch.distributed can still abort a finished job (seen as
        # SIGABRT after "run saved"): the exit code is the run's, every time.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _train_seeds(args: argparse.Namespace) -> int:
    """``--seeds``: a group of runs (htsrl/seeds.py); ``--resume GROUP`` continues one."""
    if args.jobs < 1:
        raise ConfigError("--jobs must be a positive integer")
    if args.json:
        raise ConfigError("--json prints one run's summary; a seed group writes one per seed (seed_S/summary.json)")
    given = given_values(args)
    if args.resume:
        if args.seeds:
            raise ConfigError(f"--resume {args.resume} continues the seed group's own seeds; leave out --seeds")
        _refuse_overwrite_with_resume(given)
        # as for one run: how it is laid out and controlled may change, what it computes may not
        allowed = set(fields_of_kind(LAYOUT, RUN_CONTROL))
        changed = sorted(set(given) - allowed - {"run_dir"})
        if changed:
            raise ConfigError(
                f"--resume of a seed group takes only layout and run-control flags, not {flag(changed[0])}"
            )
        run_flags = [x for name, value in given.items() if name in allowed for x in as_flags(name, value)]
        return seeds.resume_group(Path(args.resume), args.jobs, run_flags)
    if args.seed is not None:  # a seed in a --config file is the group's to replace
        raise ConfigError("--seed and --seeds: give one (--seeds trains one run per seed)")
    values = {k: v for k, v in given.items() if k not in (*PER_INVOCATION, "seed", "run_dir")}
    from htsrl.checks import preflight
    from htsrl.config import resolve

    first = Config(**values, seed=args.seeds[0])
    preflight(resolve(first))  # refused here, in one line, before the group folder or any seed exists
    group = Path(given["run_dir"]) if "run_dir" in given else default_run_dir(first, seed="seeds")
    run_flags = [x for name, value in given.items() if name in PER_INVOCATION for x in as_flags(name, value)]
    return seeds.start_group(group, values, args.seeds, args.jobs, run_flags)


def _what_resumes(args: argparse.Namespace) -> str:
    """After a second Ctrl-C: whether the run can go on, and from where."""
    run_dir = getattr(args, "train_dir", None)
    if run_dir is None:
        return ""
    if RunDir(run_dir).has_checkpoint():
        return f"; its last checkpoint is kept, continue with: htsrl train --resume {run_dir}"
    return "; no checkpoint was saved yet, so nothing can be resumed (start the run again)"


def _run(args: argparse.Namespace) -> int:
    if args.command == "train":
        from htsrl.engine.runner import train
        from htsrl.engine.summary import count

        if args.print_config:
            from htsrl.config import resolve
            from htsrl.config_files import dump_config

            print(dump_config(resolve(config_from_args(args)), args.config_format), end="")
            return 0
        if args.seeds or (args.resume and seeds.is_group(args.resume)):
            return _train_seeds(args)
        cfg = config_from_args(args)
        args.train_dir = cfg.run_dir  # for the message after a second Ctrl-C
        summary = train(cfg, resume=bool(args.resume))
        if args.json:
            print(json.dumps(summary))
        ret = summary["mean_return_last_100"]
        print(
            f"htsrl: {'done' if summary['finished'] else 'stopped'}: {summary['env_steps']:,} steps in "
            f"{summary['wall_time_s']:,.0f} s ({summary['sps']:,.0f} steps/s), "
            f"{count(summary['episodes'], 'episode')}, "
            f"mean return of the last 100 {'-' if ret is None else f'{ret:.2f}'}",
            file=sys.stderr,
        )
        if summary["finished"]:
            print(f"run saved in {summary['run_dir']}", file=sys.stderr)
        else:
            why = "as asked"
            if summary["stopped_by"] == "stop_at_score":
                target = cfg.stop_at_score
                why = f"the mean return of the last 100 episodes reached {ret:.2f} (--stop-at-score {target:g})"
            print(
                f"stopped at {summary['env_steps']} steps: {why}; continue with: "
                f"htsrl train --resume {summary['run_dir']}",
                file=sys.stderr,
            )
    elif args.command == "bench":
        from htsrl.bench import bench

        if args.steps <= 0 or args.reps <= 0:
            raise ConfigError("--steps and --reps must be positive")
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
        if family_of(given.get("env", "")) is SYNTHETIC and "num_executors" not in given:
            # one env per executor: sleeping envs then step in parallel, as the Claim 1 model assumes
            given.setdefault("num_envs", 16)
            given["num_executors"] = given["num_envs"]
            given.setdefault("envs_per_group", 1)
        bench(Config(**given), args.steps, args.reps, [m for m in args.modes.split(",") if m], Path(args.out))
    elif args.command == "steptime":
        from htsrl.analysis.steptime import steptime_report

        try:
            result = steptime_report(args.env, args.steps, Path(args.out), args.k, args.env_kwargs)
        except ValueError as e:  # too few step times for a fit
            raise ConfigError(str(e)) from None
        print(json.dumps(result))
    elif args.command == "eval":
        from htsrl.engine.summary import count
        from htsrl.evaluation import evaluate

        video = None if args.video is None else (args.video or str(Path(args.run_dir) / "eval.mp4"))
        result = evaluate(
            args.run_dir,
            episodes=args.episodes,
            deterministic=args.deterministic,
            video=video,
            seed=args.seed,
            checkpoint=args.checkpoint,
        )
        if args.json:
            print(json.dumps({k: v for k, v in result.items() if k != "scores"}))
        scores = result["scores"]
        print(
            f"htsrl: eval: {count(len(scores), 'game')} of {result['env']} with {result['actions']} actions, "
            f"score {result['mean_score']:.2f} +- {result['std_score']:.2f} (min {min(scores):.2f}, max "
            f"{max(scores):.2f}), {result['mean_steps']:.0f} agent steps a game; written to {result['path']}",
            file=sys.stderr,
        )
        if video is not None:  # a tracked run (--track): the video and the score go to its W&B run too
            from htsrl.sinks.wandb import log_evaluation

            log_evaluation(args.run_dir, result, video)
    elif args.command == "export":
        _export(args)
    elif args.command == "sweep":
        from htsrl.sweep import run_sweep

        return run_sweep(args)
    elif args.command == "plot":
        from htsrl.analysis.plots import plot_resources, plot_runs

        run_dirs = seeds.expand(args.run_dirs)  # a seed group: its seeds' runs; a sweep: its trials'
        if args.resources:
            out = plot_resources(run_dirs, args.out, args.title)
        else:
            out = plot_runs(run_dirs, args.out, args.title, args.metric)
        print(f"wrote {out}", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> None:
    import numpy as np

    from htsrl.policy import DEFAULT_EXPORT_NAMES, load

    policy = load(args.run_dir, args.checkpoint)
    out = Path(args.out) if args.out else Path(args.run_dir) / DEFAULT_EXPORT_NAMES[args.format]
    path = policy.export(out, args.format)
    spec = policy.action_spec
    described = {
        "path": str(path),
        "format": args.format,
        "checkpoint": policy.checkpoint,
        "input": {"shape": ["N", *policy.observation_shape], "dtype": str(policy.export_dtype)},
        "output": {"shape": ["N", *spec.action_shape], "dtype": str(np.dtype(spec.action_dtype))},
    }
    if policy.state_size:  # recurrent: (obs, state) -> (action, state)
        described["state"] = {"shape": ["N", policy.state_size], "dtype": "float32"}
    if args.json:
        print(json.dumps(described))

    def io(x: dict) -> str:  # ["N", 4], "float32" -> "(N, 4) float32"
        return f"{tuple(x['shape'])} {x['dtype']}".replace("'", "")

    state = f" + state {io(described['state'])}" if policy.state_size else ""
    print(
        f"htsrl: export: wrote {path} ({args.format}, {policy.checkpoint} weights): observations "
        f"{io(described['input'])}{state} -> actions {io(described['output'])}{state}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    sys.exit(main())
