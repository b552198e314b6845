"""One dataclass for every setting, presets that match published settings, and validation.

Hyper-parameters default to ``None`` and are filled from a preset by :func:`resolve`, so a flag the
user gives always wins over the preset, and the saved ``config.json`` holds the resolved values.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any

from htsrl.algo_rules import ALGOS, algo_help, algorithm
from htsrl.env_families import default_preset, env_players, is_atari, require_envpool_task
from htsrl.errors import ConfigError
from htsrl.presets import PRESETS

# What kind of setting each field is. One declaration, from which the resume check (only LAYOUT and
# RUN_CONTROL may change on resume) and ``htsrl plot``'s grouping (runs that differ only in IDENTITY,
# LAYOUT and RUN_CONTROL are seeds of one curve) both derive.
NUMERICS = "numerics"  # changes the numbers of a run (also mode, num_envs, device, threads)
LAYOUT = "layout"  # how many processes run it and how: never changes the numbers
IDENTITY = "identity"  # which run this is: its seed and its folder
RUN_CONTROL = "run_control"  # when it stops, saves, restarts and what it prints: never changes the numbers
KINDS = (NUMERICS, LAYOUT, IDENTITY, RUN_CONTROL)
RECURRENT_CORES = ("none", "gru", "lstm")  # --recurrent: none (feed-forward) or the cell (htsrl.nn)


def _f(default: Any, help: str, kind: str = NUMERICS, **kw: Any) -> Any:
    assert kind in KINDS, kind
    meta = {"help": help, "kind": kind, **kw}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


ENV_BACKENDS = ("python", "envpool")
START_METHODS = ("fork", "spawn")


@dataclass
class Config:
    # --- what to train
    env: str = _f("ALE/Breakout-v5", "Gymnasium id (ALE/..., CartPole-v1, htsrl/... debug envs)")
    env_kwargs: dict = _f({}, "JSON dict passed to gymnasium.make")
    algo: str = _f("ppo", algo_help(), choices=ALGOS)  # the algorithms: htsrl/algo_rules.py
    preset: str | None = _f(
        None,
        "hyper-parameter preset, each a cited published setting (htsrl/presets.py); "
        "default by algo and env: atari-ppo/atari-a2c/atari-impala on Atari, football-ppo "
        "(a2c: atari-a2c; impala: football-impala) on football, mujoco-ppo on MuJoCo ids and pendulum-ppo "
        "on Pendulum-v1 (ppo), classic-ppo/classic-a2c otherwise "
        "(impala: classic-a2c)",
    )
    total_steps: int = _f(10_000_000, "agent steps over all envs (rounded up to whole windows)")
    seed: int = _f(1, "master seed: env seeds, action streams, initial weights, minibatches", kind=IDENTITY)
    run_dir: str | None = _f(None, "output folder (default runs/<env>__<algo>__<seed>__<time>)", kind=IDENTITY)
    # --- settings that change the numbers besides the algorithm's (documented in README)
    mode: str = _f(
        "hts",
        "hts: overlapped rollout/learning, lag 1; sync: lock-step A2C/PPO baseline; async: no "
        "barrier, actors act with the newest weights, the learner takes each window when it is "
        "complete (IMPALA/SEED RL style; not layout-deterministic); raw: random actions, no "
        "inference or learning (the throughput ceiling, for htsrl bench)",
        choices=("hts", "sync", "async", "raw"),
    )
    async_slots: int = _f(
        2,
        "async mode: rollout buffers in the ring; executors may run up to async_slots - 1 windows "
        "ahead of the learner and wait only when every slot is full",
    )
    num_envs: int | None = _f(
        None,
        "environments, i.e. buffer columns (default from the preset); with several controlled football "
        "players each player is a column: N players x G games (the preset's default: its env count in games)",
    )
    envs_per_group: int | None = _f(
        None,
        "inference batch: envs always inferred together (default: largest divisor of num_envs <= num_envs/4; "
        "with --precision bf16 and 8 or more envs, up to 4 where that leaves an even number of groups: 8 envs -> "
        "2 groups of 4)",
    )
    device: str = _f("cpu", "learner device: cpu, cuda or cuda:N (deterministic CUDA settings are applied)")
    actor_device: str = _f(
        "cpu",
        "actor inference device: cpu, or cuda / cuda:N (needs --start-method spawn: a CUDA context does not "
        "survive fork; deterministic kernels, so the layout matrix holds on one device type)",
    )
    env_backend: str = _f(
        "python",
        "what steps the envs: python (Gymnasium wrappers) or envpool (EnvPool's C++ "
        "Atari, one batched call per group; see docs/ARCHITECTURE.md for its semantics)",
        choices=ENV_BACKENDS,
    )
    learner_threads: int | None = _f(
        None,
        "torch threads of the learner (reduction order may change with it); default 1 in hts and async mode, "
        "where executors and actors use the other cores while it learns, 2 in sync mode, where they wait for "
        "it; on machines with more cores, raise it",
    )
    learner_shards: int | None = _f(
        None,
        "PPO: compute each minibatch's gradient in K parts of its rows, each part's forward and backward on "
        "its own thread with one torch thread, summed in part order: the numbers depend on K only, not on the "
        "cores, and the K threads fill the cores the rollout leaves idle (K > 1 needs --learner-threads 1 and "
        "a CPU learner); default 2 for feed-forward Atari PPO in hts and async mode on CPU (measured in "
        "BENCHMARKS.md), 1 otherwise",
    )
    precision: str | None = _f(
        None,
        "fp32, or bf16: the CNN's convolutions and hidden layer in bfloat16 in the learner (autocast) and the "
        "actors (image observations; weights and optimizer stay fp32; heads fp32); eval and export run fp32. "
        "default: bf16 for Atari PPO and A2C on a CPU where it measured cheaper than fp32 (Intel with AMX, AMD "
        "with AVX512-BF16; BENCHMARKS.md), fp32 otherwise (and on CUDA)",
        choices=("fp32", "bf16"),
    )
    recurrent: str = _f(
        "none",
        "a recurrent core between the network's encoder and its heads: gru or lstm (state per env in the "
        "shared buffers, reset at episode ends; PPO minibatches are whole env columns); none: feed-forward",
        choices=RECURRENT_CORES,
    )
    init_from: str | None = _f(
        None,
        "start this new run from the final weights of the run in DIR (and, with --norm-obs, its observation "
        "statistics): e.g. to train a finished run longer under a new learning-rate schedule. The optimizer, "
        "the schedule, the env steps and every random stream start anew; the network must be the same",
    )
    # --- runtime layout (never changes the numbers)
    num_executors: int = _f(2, "processes that step environments", kind=LAYOUT)
    num_actors: int = _f(1, "inference processes (hts mode; sync mode infers in the learner)", kind=LAYOUT)
    serial: bool = _f(False, "run every role in one process (for pdb); same numbers as parallel", kind=LAYOUT)
    start_method: str = _f(
        "fork",
        "how role processes start: fork, or spawn (a fresh interpreter per role that maps the shared "
        "buffers and pipes from the descriptors it is passed; slower to start, needed for CUDA actors)",
        kind=LAYOUT,
        choices=START_METHODS,
    )
    # --- run control (never changes the numbers)
    stop_at_steps: int | None = _f(
        None,
        "stop with a checkpoint once this many steps are learned; the run "
        "stays resumable with --resume (e.g. to fit a job's time limit)",
        kind=RUN_CONTROL,
    )
    stop_at_score: float | None = _f(
        None,
        "stop with a checkpoint at the first barrier where the mean return of the last 100 episodes (Atari: "
        "the full-game score) is at least this, once 100 have ended; resumable as --stop-at-steps",
        kind=RUN_CONTROL,
    )
    checkpoint_every: int = _f(
        50, "save a checkpoint every N updates (0: only at the end and on Ctrl-C)", kind=RUN_CONTROL
    )
    max_restarts: int = _f(
        3, "times a run may restart its rollout after a role died or an env raised", kind=RUN_CONTROL
    )
    watchdog_s: float = _f(120.0, "stop with a message if a window takes longer than this", kind=RUN_CONTROL)
    progress: bool = _f(True, "print a live progress line", kind=RUN_CONTROL)
    report_to: str = _f(
        "",
        "more report sinks beside progress.csv, TensorBoard and the progress line, comma-separated (htsrl.sinks."
        "SINKS: jsonl writes progress.jsonl)",
        kind=RUN_CONTROL,
    )
    # W&B (htsrl/sinks/wandb.py; pip install 'htsrl[track]')
    track: bool = _f(
        False,
        "log the run to Weights & Biases (the wandb report sink): its config and every update's scalars; a resumed "
        "run continues its W&B run; WANDB_MODE=offline logs offline (then: wandb sync). A W&B failure warns once "
        "and the run goes on; needs pip install 'htsrl[track]' (default: false)",
        kind=RUN_CONTROL,
    )
    wandb_project: str = _f("htsrl", "the W&B project of --track", kind=RUN_CONTROL)
    wandb_entity: str | None = _f(
        None, "the W&B entity (team or user) of --track (default: your W&B default)", kind=RUN_CONTROL
    )
    wandb_group: str | None = _f(
        None, "the W&B group of --track (default: a seed group's folder name; none otherwise)", kind=RUN_CONTROL
    )
    wandb_tags: str = _f("", "the W&B tags of --track, comma-separated (default: none)", kind=RUN_CONTROL)
    overwrite: bool = _f(
        False,
        "replace the run that --run-dir already holds (only the files training writes are removed); without "
        "it a folder that holds a run is refused",
        kind=RUN_CONTROL,
    )
    # --- algorithm (unset: from the preset)
    alpha: int | None = _f(None, "rollout length = steps per env between barriers")
    lr: float | None = _f(None, "learning rate")
    lr_decay: bool | None = _f(None, "linear learning-rate decay to 0")
    optimizer: str | None = _f(None, "adam or rmsprop", choices=("adam", "rmsprop"))
    optim_eps: float | None = _f(None, "optimizer epsilon")
    rmsprop_alpha: float | None = _f(None, "RMSprop smoothing constant")
    gamma: float | None = _f(None, "discount")
    gae_lambda: float | None = _f(None, "GAE lambda (1.0 = n-step returns)")
    ent_coef: float | None = _f(None, "entropy bonus coefficient")
    vf_coef: float | None = _f(None, "value loss coefficient")
    max_grad_norm: float | None = _f(None, "gradient-norm clip")
    clip_coef: float | None = _f(None, "PPO ratio clip")
    clip_value_loss: bool | None = _f(None, "PPO clipped value loss")
    epochs: int | None = _f(None, "PPO epochs per update")
    minibatches: int | None = _f(None, "PPO minibatches per epoch")
    norm_adv: bool | None = _f(None, "normalize advantages over the batch (PPO)")
    norm_obs: bool | None = _f(
        None,
        "normalize vector observations by running mean/std (gymnasium NormalizeObservation), "
        "statistics updated by the learner and published with the weights",
    )
    norm_reward: bool | None = _f(
        None, "scale rewards by the running std of each env's discounted return (gymnasium NormalizeReward)"
    )
    norm_clip: float | None = _f(None, "clip of normalized observations and scaled rewards")
    # --- the lag of one update (HTS mode; lock-step has none, and both settings are then the same)
    proximal: str = _f(
        "current",
        "what an update is centred on in hts mode, where the window was collected by the "
        "parameters one update old: 'behaviour' (plain PPO/A2C on the lagged samples) or "
        "'current' (the learner's parameters at the start of the update; PPO clips around them "
        "and both weight each sample by pi_current/pi_behaviour, clamped: decoupled PPO)",
        choices=("behaviour", "current"),
    )
    max_is_weight: float = _f(2.0, "clamp of the importance weight pi_current/pi_behaviour (--proximal current)")
    # --- V-trace (--algo impala; it reads neither --proximal nor --max-is-weight: V-trace is its own correction)
    vtrace_rho_bar: float = _f(
        1.0,
        "V-trace rho_bar (--algo impala): truncation of pi/mu in the TD errors and the policy gradient; "
        "it sets the value function V-trace converges to: that of a policy between the behaviour policy and the "
        "learner's (IMPALA's Theorem 1), the learner's own only for an untruncated rho_bar or with no lag",
    )
    vtrace_c_bar: float = _f(
        1.0,
        "V-trace c_bar (--algo impala): truncation of the trace coefficients c = lambda * min(c_bar, pi/mu); "
        "it sets how fast, not where, V-trace converges",
    )

    @property
    def lagged(self) -> bool:
        """Whether actors act with older weights than the learner's (hts: one update; async: any), so an
        update corrects for the lag (PPO's proximal policy, A2C's weight, V-trace's rho)."""
        return self.mode in ("hts", "async")

    @property
    def players(self) -> int:
        """Buffer columns one env fills: the players a football env controls (``--env-kwargs``
        ``left_players`` + ``right_players``, each a column), else 1. Values of the wrong type count as
        1 here; building the env refuses them (``envs.football.check_players``)."""
        return env_players(self.env, self.env_kwargs)

    @property
    def network_options(self) -> dict:
        """What ``nn.build_model`` takes besides the spaces: the same network in the learner and actors."""
        return {
            "obs_norm_clip": self.norm_clip if self.norm_obs else None,
            "precision": self.precision,
            "recurrent": self.recurrent,
        }

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown config keys: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_saved(cls, d: dict) -> Config:
        """A run's ``config.json`` (see :func:`saved_values`)."""
        return cls.from_dict(saved_values(d))


# what runs saved before these settings existed (or were written on save) ran with
FORMER_DEFAULTS = {"precision": "fp32", "learner_threads": 2, "learner_shards": 1}


def saved_values(d: dict) -> dict:
    """The values of a run's ``config.json``: a setting added (or given a new default) after the run was
    written takes the value every run had then, so an old run resumes, loads and plots with its own."""
    given = {k: v for k, v in d.items() if not (k in FORMER_DEFAULTS and v is None)}
    return {**FORMER_DEFAULTS, **given}


def fields_of_kind(*kinds: str) -> list[str]:
    return [f.name for f in dataclasses.fields(Config) if f.metadata["kind"] in kinds]


# The settings of one invocation, not of the run: a resumed run or a seed group's next invocation starts
# without them (a stop point, replacing a run folder).
PER_INVOCATION = ("stop_at_steps", "stop_at_score", "overwrite")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_resume(saved: Config, given: Config) -> None:
    """A resumed run continues with the numbers it started with: every NUMERICS and IDENTITY setting of
    ``given`` (this invocation, resolved) must equal ``saved`` (the run's, resolved). LAYOUT and
    RUN_CONTROL settings may differ; so may ``total_steps`` when the learning rate does not decay over it.
    Raises ConfigError naming each differing flag with its saved and given value."""
    differ = []
    for name in fields_of_kind(NUMERICS, IDENTITY):
        if name == "run_dir" or (name == "total_steps" and not saved.lr_decay):
            continue
        was, now = getattr(saved, name), getattr(given, name)
        if was != now:
            differ.append(f"{flag(name)} (saved {was!r}, given {now!r})")
    if differ:
        extra = "" if saved.lr_decay is False else "; --total-steps may not, as the learning-rate decay spans the run"
        raise ConfigError(
            f"--resume cannot change {', '.join(differ)}: they change the numbers; only layout and "
            f"run-control flags may differ ({', '.join(map(flag, fields_of_kind(LAYOUT, RUN_CONTROL)))})"
            f"{extra}"
        )


MODES = ("hts", "sync", "async", "raw")


def default_envs_per_group(num_envs: int, players: int = 1, bf16: bool = False) -> int:
    """Largest divisor of num_envs that is at most num_envs / 4: four or more groups, so two executors
    each pipeline two groups while an actor infers the other. ``bf16`` (``--precision bf16``), from 8
    envs: groups of up to 4 where that leaves an even number of groups (8 envs: 2 groups of 4, not 4 of
    2), as a bfloat16 forward over 4 observations costs a third less per sample than over 2
    (BENCHMARKS.md) and two groups still keep two executors busy. With several players per env, the
    same count of whole games (a game's columns are stepped together)."""
    if players > 1 and num_envs % players == 0:
        return players * default_envs_per_group(num_envs // players, bf16=bf16)
    limit = max(1, num_envs // 4)
    if bf16 and num_envs >= 8:  # up to 4 envs a group, an even number of groups: 8 envs -> 2 groups of 4
        even = [d for d in range(1, 5) if num_envs % d == 0 and (num_envs // d) % 2 == 0]
        if even and max(even) > limit:
            return max(even)
    return max(d for d in range(1, limit + 1) if num_envs % d == 0)


def default_learner_threads(mode: str) -> int:
    """hts/async/raw: 1, since executors and actors run while the learner learns, and on few cores a second
    learner thread only contends with them (Breakout PPO on 2 cores: BENCHMARKS.md); sync: 2, as the
    rollout waits while the learner learns."""
    return 2 if mode == "sync" else 1


def default_learner_shards(cfg: Config) -> int:
    """2 for feed-forward Atari PPO on a CPU learner in hts and async mode, where the learner learns while
    executors and actors collect: one pass on one thread left the second core idle part of each window (the
    learner was the critical path), and two shards fill it at 1.0-1.2x one thread's CPU per sample (two
    OpenMP threads: 1.75x), with the numbers independent of the cores. bf16: 1.28x the steps/s (Breakout);
    fp32: 1.26x (Pong, on an Intel CPU where fp32 is the default precision). Breakout, 204,800 steps,
    seeds 1-6: 5.81 (3.58-8.30) with 2 shards against 6.37 (4.77-8.05) in one pass, Welch p = 0.54 (the
    rule was set before the runs; BENCHMARKS.md). 1 elsewhere: sync mode's learner has the cores to itself
    and gains nothing from shards over 2 threads, and the other settings (recurrent, vector observations)
    are not measured."""
    shards = algorithm(cfg.algo).atari_shards  # 1 where not measured (htsrl/algo_rules.py)
    measured = shards > 1 and is_atari(cfg.env) and cfg.recurrent == "none"
    if not (measured and cfg.mode in ("hts", "async") and cfg.device == "cpu"):
        return 1
    if cfg.learner_threads not in (None, 1):
        return 1  # the user asked for one pass on several threads
    sizes = (cfg.num_envs, cfg.alpha, cfg.minibatches)
    if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):  # else validate refuses
        return max(1, min(shards, cfg.num_envs * cfg.alpha // cfg.minibatches))  # a part has at least one row
    return shards


def bf16_pays_on(cpuinfo: str) -> bool:
    """Whether this kind of CPU (``/proc/cpuinfo``'s text) is one where a bf16 learner measured cheaper than
    fp32 (BENCHMARKS.md "bf16 against fp32"): Intel with AMX (Breakout PPO, learner 2.8 against 4.6 ms CPU
    per step) and AMD with AVX512-BF16 (Table 1's A2C at 16 envs: 0.45-0.52 against 0.59-0.66 ms per
    step). Not Intel with AVX512-BF16 and no AMX (a VM of a 5th-generation Xeon that hides AMX; Pong PPO, 2
    shards: learner 4.89 against 3.98 ms CPU per step; 0.87-0.97x the steps/s), nor Intel with AVX-512 and no
    native bf16 (Ice Lake: Pong PPO at 2 epochs, 290 against 403 steps/s). Other CPUs (other vendors, AMD
    without AVX512-BF16): not measured, so fp32, the reference numerics."""
    fields = first_cpu_fields(cpuinfo)
    flags = set(fields.get("flags", "").split())
    if "amx_bf16" in flags:
        return True
    return fields.get("vendor_id") == "AuthenticAMD" and "avx512_bf16" in flags


def first_cpu_fields(cpuinfo: str) -> dict[str, str]:
    """The ``key: value`` lines of the first processor in ``/proc/cpuinfo``'s text (each processor's block
    ends at a blank line; the CPUs of one machine are of one kind)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


@functools.cache  # the machine does not change under a process; resolve() runs often (sweeps, resumes)
def cpuinfo_here() -> str:
    """This machine's ``/proc/cpuinfo`` ("" where there is none: not Linux, so no CPU kind is known)."""
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


@functools.cache
def _bf16_pays_here() -> bool:
    return bf16_pays_on(cpuinfo_here())  # "" (not Linux): not measured, so False


def default_precision(algo: str, env: str, device: str, actor_device: str = "cpu") -> str:
    """bf16 for Atari PPO and A2C (the settings whose learning comparisons in BENCHMARKS.md support it) where
    learner and actors run on a CPU whose oneDNN has bf16 kernels and where bf16 measured cheaper than fp32
    (:func:`bf16_pays_on`); fp32 otherwise. A2C over 6 seeds at 204,800 steps: 4.54 (3.61-6.64) in bf16
    against 4.84 (4.11-5.39) in fp32, Welch p = 0.6, within fp32's range (the rule set before the last 3
    seeds ran). On CUDA, fp32 by default: not every GPU has bf16 (pre-Ampere), and asking would initialise
    CUDA in the process that forks the executors; pass --precision bf16 there. Everything else (IMPALA,
    vector observations) keeps fp32 until measured."""
    if not algorithm(algo).bf16_on_atari or not is_atari(env) or device != "cpu" or actor_device != "cpu":
        return "fp32"
    import torch

    try:
        native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):  # a torch without oneDNN
        return "fp32"
    return "bf16" if native and _bf16_pays_here() else "fp32"


def resolve(cfg: Config) -> Config:
    """Fill preset values into unset fields and validate; raises ConfigError with one clear line."""
    algorithm(cfg.algo)  # one the registry holds
    if cfg.mode not in MODES:
        raise ConfigError(f"--mode must be one of {list(MODES)}, got {cfg.mode!r}")
    preset_name = cfg.preset or default_preset(cfg.algo, cfg.env)
    if preset_name not in PRESETS:
        raise ConfigError(f"unknown --preset {preset_name!r}; choose one of {sorted(PRESETS)}")
    values = dataclasses.asdict(cfg)
    values["preset"] = preset_name
    for k, v in PRESETS[preset_name].items():
        if values[k] is None:
            values[k] = v
    out = Config(**values)
    if cfg.num_envs is None and isinstance(out.num_envs, int):
        out.num_envs *= out.players  # a preset counts games (HTS-RL: --num-processes games of N agents)
    if out.precision is None:
        out.precision = default_precision(out.algo, out.env, out.device, out.actor_device)
    if out.envs_per_group is None and out.num_envs is not None and out.num_envs > 0:
        out.envs_per_group = default_envs_per_group(out.num_envs, out.players, out.precision == "bf16")
    if out.learner_shards is None:
        out.learner_shards = default_learner_shards(out)
    if out.learner_threads is None:
        out.learner_threads = 1 if out.learner_shards > 1 else default_learner_threads(out.mode)
    validate(out)
    # here, not in validate: that also checks one rank's share of the envs, and columns span the ranks
    if out.recurrent != "none" and algorithm(out.algo).minibatches and out.num_envs % out.minibatches:
        raise ConfigError(
            f"--recurrent {out.recurrent}: PPO minibatches are whole env columns (each env's window is re-run "
            f"from its state at the window start), so --num-envs {out.num_envs} must be divisible by "
            f"--minibatches {out.minibatches}"
        )
    return out


def validate(c: Config) -> None:
    positive = [
        "total_steps",
        "num_envs",
        "num_executors",
        "num_actors",
        "envs_per_group",
        "alpha",
        "learner_threads",
        "learner_shards",
        "epochs",
        "minibatches",
    ]
    for name in positive:
        v = getattr(c, name)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")
    if isinstance(c.async_slots, bool) or not isinstance(c.async_slots, int) or c.async_slots < 2:
        raise ConfigError(
            f"--async-slots must be at least 2 (one window learned, one collected), got {c.async_slots!r}"
        )
    if c.mode == "async" and c.serial:
        raise ConfigError(
            "--mode async runs the roles in processes that never wait for each other; --serial has no such "
            "schedule (use --mode hts or sync with --serial)"
        )
    minibatches = algorithm(c.algo).minibatches
    if c.learner_shards > 1:
        if not minibatches:
            raise ConfigError(
                f"--learner-shards {c.learner_shards} splits PPO's minibatches; --algo {c.algo} takes one step "
                "per window (leave --learner-shards 1)"
            )
        if c.learner_threads != 1:
            raise ConfigError(
                f"--learner-shards {c.learner_shards} runs each part on its own thread with one torch thread, so "
                f"the numbers do not depend on the cores; --learner-threads {c.learner_threads} would change "
                "them (leave it at 1)"
            )
        if c.device != "cpu":
            raise ConfigError(
                f"--learner-shards {c.learner_shards} spreads the learner over CPU cores; on --device {c.device} "
                "leave it at 1"
            )
    if c.proximal not in ("behaviour", "current"):
        raise ConfigError(f"--proximal must be 'behaviour' or 'current', got {c.proximal!r}")
    if not c.max_is_weight >= 1.0:
        raise ConfigError(f"--max-is-weight must be >= 1 (a weight of 1 is on-policy), got {c.max_is_weight!r}")
    for name in ["vtrace_rho_bar", "vtrace_c_bar"]:
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive number, got {v!r}")
    score = c.stop_at_score
    finite = isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)
    if score is not None and not finite:
        raise ConfigError(f"--stop-at-score must be a finite number, got {score!r}")
    for name in ["lr", "watchdog_s", "optim_eps", "norm_clip"]:
        if not getattr(c, name) > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(c, name)!r}")
    for name in ["gamma", "gae_lambda"]:
        if not 0.0 <= getattr(c, name) <= 1.0:
            raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(c, name)!r}")
    for name in ["device", "actor_device"]:
        v = getattr(c, name)
        if not (v == "cpu" or v == "cuda" or v.startswith("cuda:")):
            raise ConfigError(f"--{name.replace('_', '-')} must be cpu, cuda or cuda:N, got {v!r}")
    if c.start_method not in START_METHODS:
        raise ConfigError(f"--start-method must be one of {', '.join(START_METHODS)}, got {c.start_method!r}")
    if c.actor_device != "cpu" and c.lagged and not c.serial and c.start_method != "spawn":
        raise ConfigError(
            f"--actor-device {c.actor_device} needs --start-method spawn: forked actors cannot hold a CUDA "
            "context (it does not survive fork)"
        )
    if c.max_restarts < 0:
        raise ConfigError(f"--max-restarts must be >= 0, got {c.max_restarts}")
    if c.checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0, got {c.checkpoint_every}")
    if c.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {c.seed}")
    if c.num_envs % c.num_executors:
        raise ConfigError(f"--num-envs {c.num_envs} is not divisible by --num-executors {c.num_executors}")
    if c.num_envs % c.envs_per_group:
        raise ConfigError(f"--num-envs {c.num_envs} is not divisible by --envs-per-group {c.envs_per_group}")
    if c.players > 1 and (c.num_envs % c.players or c.envs_per_group % c.players):
        games = max(1, c.num_envs // c.players)
        raise ConfigError(
            f"{c.env} with {c.players} controlled players fills {c.players} buffer columns per game: --num-envs "
            f"({c.num_envs}) and --envs-per-group ({c.envs_per_group}) must be multiples of {c.players} "
            f"(e.g. --num-envs {games * c.players} for {games} games)"
        )
    groups = c.num_envs // c.envs_per_group
    if groups % c.num_executors:
        raise ConfigError(
            f"{groups} inference groups of {c.envs_per_group} envs cannot be split evenly over "
            f"{c.num_executors} executors; choose --envs-per-group dividing {c.num_envs // c.num_executors}"
        )
    if c.recurrent not in RECURRENT_CORES:
        raise ConfigError(f"--recurrent must be one of {', '.join(RECURRENT_CORES)}, got {c.recurrent!r}")
    batch = c.num_envs * c.alpha
    if minibatches and batch % c.minibatches:
        raise ConfigError(f"batch num_envs*alpha = {batch} is not divisible by --minibatches {c.minibatches}")
    if minibatches and c.learner_shards > 1:
        parts_of = "envs" if c.recurrent != "none" else "rows"  # recurrent minibatches are whole env columns
        per_minibatch = (c.num_envs if c.recurrent != "none" else batch) // c.minibatches
        if c.learner_shards > per_minibatch:
            raise ConfigError(
                f"--learner-shards {c.learner_shards} is more than the {per_minibatch} {parts_of} of a minibatch"
            )
    if not isinstance(c.env_kwargs, dict):
        raise ConfigError("--env-kwargs must be a JSON object")
    if c.env_backend not in ENV_BACKENDS:
        raise ConfigError(f"--env-backend must be 'python' or 'envpool', got {c.env_backend!r}")
    if c.env_backend == "envpool":
        require_envpool_task(c.env)
