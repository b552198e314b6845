"""htsrl: high-throughput synchronous deep RL (HTS-RL) for A2C and PPO."""

__version__ = "0.2.0"

from htsrl.config import Config  # noqa: E402


def train(config: Config, **kwargs):
    """Train with ``config``; returns the summary dict also written to ``<run_dir>/summary.json``."""
    from htsrl.engine.runner import train as _train

    return _train(config, **kwargs)


__all__ = ["Config", "train", "__version__"]
