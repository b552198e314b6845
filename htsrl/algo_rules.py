"""The algorithms htsrl trains, by name, and the rules each brings: the one registry of algorithms.

It imports no torch, so ``htsrl.config`` (and ``import htsrl``) can read it; :mod:`htsrl.algos` imports an
algorithm's update function from the entry point named here when a learner first updates. Adding an
algorithm is one file in ``htsrl/algos/`` with its update function and one line in :data:`ALGORITHMS`
(its default presets, where it has any, are the env families', in ``htsrl/env_families.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from htsrl.errors import ConfigError


@dataclass(frozen=True)
class Algorithm:
    name: str  # --algo
    # "module:function", its update over one window. With minibatches:
    # ``f(cfg, model, optimizer, window, generator, dp, shards)``, else ``f(cfg, model, optimizer, window, dp)``
    update: str
    # epochs of minibatches over the window (PPO): it reads --epochs and --minibatches, the batch must divide
    # into minibatches (recurrent: whole env columns) and --learner-shards may split each one; otherwise one
    # gradient step on the whole window, and --learner-shards stays 1
    minibatches: bool = False
    # its Atari learning in bf16 measured against fp32 (BENCHMARKS.md): bf16 by default there, on a CPU with
    # bf16 kernels (config.default_precision)
    bf16_on_atari: bool = False
    # learner shards measured for feed-forward Atari on a CPU learner in hts and async mode, in bf16 and in
    # fp32 (BENCHMARKS.md): the default --learner-shards there (config.default_learner_shards); 1: not measured
    atari_shards: int = 1
    help: str = ""  # what --algo's help says of it, beside its name


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("ppo", "htsrl.algos.ppo:ppo_update", minibatches=True, bf16_on_atari=True, atari_shards=2),
        Algorithm("a2c", "htsrl.algos.a2c:a2c_update", bf16_on_atari=True),
        Algorithm(
            "impala",
            "htsrl.algos.impala:impala_update",
            help="IMPALA's actor-critic loss on V-trace targets, Espeholt et al. 2018",
        ),
    )
}
ALGOS = tuple(ALGORITHMS)


def algorithm(name: str) -> Algorithm:
    """The registry's entry of ``--algo name``; ConfigError (a ValueError) for a name it does not hold."""
    if name not in ALGORITHMS:
        raise ConfigError(f"--algo must be one of {list(ALGOS)}, got {name!r}")
    return ALGORITHMS[name]


def algo_help() -> str:
    """--algo's help: ``ppo, a2c or impala (IMPALA's actor-critic loss on V-trace targets, ...)``."""
    names = ", ".join(ALGOS[:-1]) + f" or {ALGOS[-1]}" if len(ALGOS) > 1 else ALGOS[0]
    notes = "; ".join(a.help for a in ALGORITHMS.values() if a.help)
    return f"{names} ({notes})" if notes else names
