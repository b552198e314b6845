"""Command line: ``htsrl train ...`` (flags are the fields of :class:`htsrl.config.Config`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path

from htsrl.config import Config, ConfigError

# Before torch loads: idle OpenMP threads sleep instead of spinning, so a learner thread waiting in a
# parallel region does not steal the core an environment needs (measured: +4% SPS on Breakout).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "")
        typ = hints[f.name]
        base = [a for a in typing.get_args(typ) if a is not type(None)] or [typ]
        base = base[0]
        kw: dict = {"dest": f.name, "default": None, "help": help_}
        if "choices" in f.metadata:
            kw["choices"] = f.metadata["choices"]
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
    parser = argparse.ArgumentParser(prog="htsrl", description="High-throughput synchronous RL (HTS-RL)")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train an A2C/PPO agent",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_config_flags(train)
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint "
                       "(bitwise identical to an uninterrupted run); only layout flags and --total-steps may change")
    be = sub.add_parser("bench", help="throughput: raw ceiling vs lock-step vs HTS vs SB3, side by side",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_config_flags(be)
    be.add_argument("--steps", type=int, default=20_000, help="agent steps per run")
    be.add_argument("--reps", type=int, default=3, help="repetitions (interleaved)")
    be.add_argument("--modes", default="raw,sync,hts", help="comma list of raw,sync,hts,sb3 and "
                    "raw-envpool,sync-envpool,hts-envpool (Atari on EnvPool executors, with their ratio to Python)")
    be.add_argument("--out", default="bench", help="folder for bench.json, bench.png and the runs")
    st = sub.add_parser("steptime", help="step-time distribution of an env: Gamma fit and KS test of window sums")
    st.add_argument("--env", required=True)
    st.add_argument("--env-kwargs", type=_json_dict, default={})
    st.add_argument("--steps", type=int, default=20_000, help="steps to time (random actions)")
    st.add_argument("--k", type=int, default=100, help="steps per summed window")
    st.add_argument("--out", default="steptime", help="folder for steptime.json/.png and step_times.npy")
    ev = sub.add_parser("eval", help="play a trained policy and report its true score")
    ev.add_argument("run_dir")
    ev.add_argument("--episodes", type=int, default=10, help="episodes to play")
    ev.add_argument("--greedy", action="store_true", help="take the most likely action instead of sampling")
    ev.add_argument("--video", nargs="?", const="", default=None, metavar="PATH",
                    help="record the first episode as MP4 (default path: RUN_DIR/eval.mp4)")
    pl = sub.add_parser("plot", help="learning curves of one or more runs as PNG")
    pl.add_argument("run_dirs", nargs="+")
    pl.add_argument("--out", default="learning_curves.png", help="PNG path")
    pl.add_argument("--title", default=None)
    return parser


# What may differ on resume: nothing here changes the numbers.
RESUMABLE = {"total_steps", "stop_at_steps", "max_restarts", "num_executors", "num_actors", "serial", "watchdog_s", "progress", "checkpoint_every"}


def config_from_args(args: argparse.Namespace) -> Config:
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
    if not args.resume:
        cfg = Config(**given)
        if cfg.run_dir is None:
            from htsrl.engine.runner import default_run_dir
            cfg.run_dir = str(default_run_dir(cfg))
        return cfg
    saved = Path(args.resume) / "config.json"
    if not saved.is_file():
        raise ConfigError(f"--resume {args.resume}: no config.json there (is it a run directory?)")
    changed = sorted(k for k in given if k not in RESUMABLE)
    if changed:
        raise ConfigError(f"--resume cannot change {', '.join('--' + k.replace('_', '-') for k in changed)} "
                          f"(it would change the numbers); only {sorted(RESUMABLE)} may differ")
    base = json.loads(saved.read_text())
    if "total_steps" in given and given["total_steps"] != base["total_steps"] and base.get("lr_decay", True):
        raise ConfigError(f"--resume cannot change --total-steps ({base['total_steps']} -> {given['total_steps']}): "
                          "the learning-rate decay spans the whole run")
    base["stop_at_steps"] = None  # a stop point belongs to one invocation, not to the run
    base.update(given)
    base["run_dir"] = args.resume
    return Config.from_dict(base)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except ConfigError as e:  # bad input, from any command: one line, exit 2
        print(f"htsrl: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _run(args: argparse.Namespace) -> int:
    if args.command == "train":
        from htsrl.algos.guards import NonFiniteError
        from htsrl.checkpoint import CheckpointError
        from htsrl.engine.rollout import RolloutError
        from htsrl.engine.runner import Interrupted, train
        try:
            cfg = config_from_args(args)
            summary = train(cfg, resume=bool(args.resume))
        except CheckpointError as e:
            print(f"htsrl: error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT if args.resume else EXIT_FAILED
        except RolloutError as e:
            print(f"htsrl: run failed: {e}", file=sys.stderr)
            return EXIT_FAILED
        except NonFiniteError as e:
            kept = Path(cfg.run_dir) / "checkpoint.pt"
            tail = f"the last good checkpoint ({kept}) is kept" if kept.exists() else "no checkpoint was saved yet"
            print(f"htsrl: run failed: {e} (NaN/inf); stopped before it reached the weights; {tail}", file=sys.stderr)
            return EXIT_FAILED
        except Interrupted:
            print(f"htsrl: interrupted; checkpoint saved, continue with: htsrl train --resume {cfg.run_dir}",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
        except KeyboardInterrupt:
            print("htsrl: interrupted; all processes stopped", file=sys.stderr)
            return EXIT_INTERRUPTED
        keys = ("env_steps", "updates", "wall_time_s", "sps", "episodes", "mean_return_last_100", "params_sha256")
        print(json.dumps({k: summary[k] for k in keys}))
        if summary["finished"]:
            print(f"run saved in {summary['run_dir']}", file=sys.stderr)
        else:
            print(f"stopped at {summary['env_steps']} steps as asked; continue with: "
                  f"htsrl train --resume {summary['run_dir']}", file=sys.stderr)
    elif args.command == "bench":
        from htsrl.bench import bench
        if args.steps <= 0 or args.reps <= 0:
            print("htsrl: error: --steps and --reps must be positive", file=sys.stderr)
            return EXIT_BAD_INPUT
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
        if given.get("env", "").startswith("synthetic/") and "num_executors" not in given:
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
        from htsrl.evaluate import evaluate
        video = None if args.video is None else (args.video or str(Path(args.run_dir) / "eval.mp4"))
        result = evaluate(args.run_dir, episodes=args.episodes, greedy=args.greedy, video=video)
        print(json.dumps({k: v for k, v in result.items() if k != "scores"}))
    elif args.command == "plot":
        from htsrl.analysis.plots import plot_runs
        out = plot_runs(args.run_dirs, args.out, args.title)
        print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
