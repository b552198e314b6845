"""Config files: ``htsrl train --config run.yaml`` (or ``.toml``) and ``htsrl train ... --print-config``.

A file's keys are :class:`~htsrl.config.Config` field names (``num_envs``, ``lr``, ...); flags given on the
command line win over it, and unset fields come from the preset as they do without a file. An unknown key,
a value of the wrong type or outside a field's choices is refused in one line naming the key and the file.
``--print-config`` writes the resolved config (preset values filled in) in the format of ``--config-format``
(YAML by default), less the run's folder and ``--overwrite``, which belong to one invocation: so
``--print-config > run.yaml`` then ``--config run.yaml`` is the same run (the same ``params_sha256``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from pathlib import Path

from htsrl.config import Config, flag
from htsrl.errors import ConfigError

FORMATS = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}
NOT_PRINTED = ("run_dir", "overwrite")  # where and whether to replace: this invocation's, not the run's


def _field_types() -> dict[str, tuple[type, ...]]:
    """Each field's allowed value types (None included where the field may be unset)."""
    out = {}
    for name, hint in typing.get_type_hints(Config).items():
        out[name] = typing.get_args(hint) or (hint,)
    return out


def _check_value(key: str, value, allowed: tuple[type, ...], choices, path: Path):
    if value is None and type(None) in allowed:
        return None
    if isinstance(value, str) and float in allowed:  # YAML 1.1 reads 3e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool):  # a bool is an int to Python, never to a config
        ok = bool in allowed
    elif isinstance(value, int) and float in allowed and int not in allowed:
        value, ok = float(value), True  # lr: 1 means 1.0
    else:
        ok = any(isinstance(value, t) for t in allowed if t is not type(None))
    if not ok:
        names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
        raise ConfigError(f"{path}: {key} must be {names}, got {value!r} ({type(value).__name__})")
    if choices and value not in choices:
        raise ConfigError(f"{path}: {key} must be one of {list(choices)}, got {value!r}")
    if isinstance(value, dict):  # env_kwargs: what config.json and --env-kwargs hold, JSON values only
        try:
            plain = json.loads(json.dumps(value)) == value
        except (TypeError, ValueError):
            plain = False
        if not plain:
            raise ConfigError(f"{path}: {key} must hold JSON values only (strings as keys; no dates or sets)")
    return value


def check_key(key, path) -> None:
    """A file's key must be a Config field: one line naming the key and the file otherwise."""
    fields = [f.name for f in dataclasses.fields(Config)]
    if key not in fields:
        close = difflib.get_close_matches(str(key).replace("-", "_"), fields, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"{path}: unknown key {key!r} (keys are htsrl train's flags with _ for -){hint}")


def read_config_file(path: str | Path) -> dict:
    """The values a config file sets, checked against Config's fields and types (ConfigError otherwise)."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"--config {path}: a config file is .yaml, .yml or .toml")
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"--config {path}: cannot read it ({e.strerror})") from None
    try:
        if fmt == "yaml":
            import yaml

            data = yaml.safe_load(text)
        else:
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
    except Exception as e:  # the parser's own message, first line: where the file is malformed
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"--config {path}: not valid {fmt.upper()}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: the file must be a mapping of config keys, got {type(data).__name__}")
    types = _field_types()
    fields = {f.name: f for f in dataclasses.fields(Config)}
    values = {}
    for key, value in data.items():
        check_key(key, path)
        values[key] = _check_value(key, value, types[key], fields[key].metadata.get("choices"), path)
    return values


def dump_config(cfg: Config, fmt: str = "yaml") -> str:
    """``cfg`` as a config file that :func:`read_config_file` reads back to the same values."""
    values = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_PRINTED and v is not None}
    header = f"# htsrl train --config FILE: the resolved config of {cfg.env} ({cfg.algo}, preset {cfg.preset})\n"
    if fmt == "yaml":
        import yaml

        return header + yaml.safe_dump(values, sort_keys=False, default_flow_style=None)
    if fmt == "toml":
        return header + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())
    raise ConfigError(f"--config-format must be yaml or toml, got {fmt!r}")


def _toml(value) -> str:
    """One TOML value: the types a Config holds (scalars, and env_kwargs' tables and arrays of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):  # a TOML basic string takes JSON's escapes, but no surrogate pairs and no raw DEL
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007F")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


def given_values(args) -> dict:
    """The config values this invocation sets: its --config file's, then the flags given over them."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config) if getattr(args, f.name) is not None}
    if getattr(args, "config", None):
        if args.resume:
            raise ConfigError("--config starts a run from a file; --resume continues a run with its own config")
        given = {**read_config_file(args.config), **given}  # a flag on the command line wins over the file
    return given


def as_flags(name: str, value) -> list[str]:
    """The command-line flags that give ``name`` the config value ``value``."""
    if isinstance(value, bool):
        return [flag(name) if value else "--no-" + name.replace("_", "-")]
    return [flag(name), json.dumps(value) if isinstance(value, dict) else str(value)]
