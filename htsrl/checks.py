"""The checks before any process starts, each rule once: a run (``train``), a seed group (before its folder
exists) and ``htsrl bench`` ask here, so bad input is one line and exit code 2 with nothing started.

What needs no env and no machine (types, ranges, which settings go together) is ``config.validate``'s;
what needs the env's spaces, the world size or the devices is here."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from htsrl.config import Config, check_resume, resolve, validate
from htsrl.device import check_devices
from htsrl.envs import EnvInfo, probe_env
from htsrl.errors import ConfigError
from htsrl.run_dir import RunDir
from htsrl.sinks import check_names, report_sinks


def preflight(cfg: Config, probe: Callable[..., EnvInfo] = probe_env) -> tuple[EnvInfo, Config]:
    """The checks of a resolved config that need no run folder, in the order a run meets them: the env
    (built once here, by ``probe``: a sweep passes one that keeps each env's answer), what the network and
    the world size allow, the devices. Returns the env's spaces and this rank's config (its share of the envs)."""
    info = probe(cfg.env, cfg.env_kwargs, cfg.env_backend)
    if cfg.precision == "bf16":
        check_bf16(cfg.env, info.obs_shape, "--precision bf16")
    if cfg.norm_obs and len(info.obs_shape) != 1:
        raise ConfigError(
            f"--norm-obs normalizes vector observations; {cfg.env} has observations of shape {info.obs_shape} "
            "(images, which the CNN scales by 1/255: leave --norm-obs off)"
        )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.mode == "async" and world > 1:
        raise ConfigError("--mode async runs on one machine: data parallelism needs the ranks to meet at barriers")
    if cfg.num_envs % world:
        raise ConfigError(f"--num-envs {cfg.num_envs} is not divisible by the world size {world}")
    local = dataclasses.replace(cfg, num_envs=cfg.num_envs // world)  # this rank's envs
    validate(local)
    check_devices(cfg)
    check_names(report_sinks(cfg))
    return info, local


def check_bf16(env: str, obs_shape: tuple, asked_by: str, instead: str = "leave --precision fp32") -> None:
    """bf16 is for the CNN: an env with vector observations runs its MLP in fp32."""
    if len(obs_shape) != 3:
        raise ConfigError(
            f"{asked_by} runs the CNN in bfloat16; {env} has vector observations {obs_shape}, "
            f"whose MLP runs in fp32 ({instead})"
        )


def check_resume_folder(cfg: Config) -> None:
    """``--resume``: the folder holds a run whose numbers the given config does not change."""
    if not cfg.run_dir:
        raise ConfigError("resume needs the run's folder (run_dir)")
    check_resume(resolve(RunDir(cfg.run_dir).saved_config("--resume")), cfg)


def check_new_run_folder(cfg: Config, run_dir: RunDir) -> None:
    """A new run: its weights do not come from the folder it is about to write."""
    if cfg.init_from and Path(cfg.init_from).resolve() == run_dir.path.resolve():
        raise ConfigError(f"--init-from {cfg.init_from} is the folder this run would write; give another --run-dir")
