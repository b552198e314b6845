"""htsrl: high-throughput synchronous deep RL (HTS-RL) for A2C and PPO.

The Python API: ``train(Config(...))`` runs a training and returns its summary; ``load(run_dir)`` gives
the run's :class:`~htsrl.policy.Policy` (``predict``, ``make_env``, ``export``); ``evaluate(run_dir)``
is ``htsrl eval``. ``import htsrl`` stays light (no torch, gymnasium or numpy): ``load``, ``evaluate``
and ``Policy`` are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.4.0"

from htsrl.config import Config  # noqa: E402

if TYPE_CHECKING:
    from htsrl.evaluation import evaluate
    from htsrl.policy import Policy, load

# name -> module that defines it, imported on first access (PEP 562)
_LAZY = {"load": "htsrl.policy", "Policy": "htsrl.policy", "evaluate": "htsrl.evaluation"}


def train(config: Config, **kwargs):
    """Train with ``config``; returns the summary dict also written to ``<run_dir>/summary.json``."""
    from htsrl.engine.runner import train as _train

    return _train(config, **kwargs)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'htsrl' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["Config", "Policy", "evaluate", "load", "train", "__version__"]
