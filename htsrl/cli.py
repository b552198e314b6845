"""Command line: ``htsrl train ...`` (flags are the fields of :class:`htsrl.config.Config`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from htsrl.config import Config, ConfigError

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
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
    return Config(**given)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from htsrl.engine.rollout import RolloutError
        from htsrl.engine.runner import train
        try:
            summary = train(config_from_args(args))
        except ConfigError as e:
            print(f"htsrl: error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except RolloutError as e:
            print(f"htsrl: run failed: {e}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("htsrl: interrupted; all processes stopped", file=sys.stderr)
            return EXIT_INTERRUPTED
        keys = ("env_steps", "updates", "wall_time_s", "sps", "episodes", "mean_return_last_100", "params_sha256")
        print(json.dumps({k: summary[k] for k in keys}))
        print(f"run saved in {summary['run_dir']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
