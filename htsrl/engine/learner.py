"""The learner: owns the parameters and the optimizer, updates on a full window, publishes weights.

``publish`` is called only at barriers, when no actor is running, and tags the weights with the
number of updates that produced them (the version actors stamp on every action). The initial
weights come from the learner's own seeded stream: actors receive these, never a second random init.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from htsrl import algos
from htsrl.algos.returns import Window
from htsrl.config import Config
from htsrl.distributed import SINGLE_PROCESS
from htsrl.distributions import ActionSpec
from htsrl.engine.shm import RolloutBuffers
from htsrl.engine.streams import minibatch_generator, weights_seed
from htsrl.errors import CheckpointError, ConfigError, NonFiniteError, PeerFailed
from htsrl.nn import build_model, flatten_params, mismatch
from htsrl.normalization import Normalization


class Learner:
    def __init__(self, cfg: Config, obs_shape, action_spec: ActionSpec | int, total_updates: int, dp=SINGLE_PROCESS):
        self.cfg, self.total_updates, self.dp = cfg, total_updates, dp
        self.device = torch.device(cfg.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(weights_seed(cfg.seed))
            # initialized on CPU: same weights on any device
            self.model = build_model(obs_shape, action_spec, **cfg.network_options)
        self.model.to(self.device)
        self.optimizer = algos.make_optimizer(cfg, self.model)
        self.normalization = Normalization(cfg, self.model, cfg.num_envs // dp.world_size)  # this rank's envs
        self.generator = minibatch_generator(cfg.seed)
        self.shards = algos.LearnerShards(cfg.learner_shards)
        self.updates = 0

    def start_from(self, source: Path) -> None:
        """``--init-from``: the final weights of the run in ``source`` (``model.pt``, or its checkpoint where
        newer) and, with ``--norm-obs``, the statistics behind its normalization layer, so the first update
        goes on from them rather than from one window's. Optimizer, schedule and streams stay new."""
        from htsrl.checkpoint import load_checkpoint
        from htsrl.policy import load_weights, read_config

        try:
            read_config(source)  # a run folder, or one clear line
            state, _ = load_weights(source, "auto")
        except (ConfigError, CheckpointError) as e:
            raise ConfigError(f"--init-from {source}: {e}") from None
        try:
            self.model.load_state_dict(state)
        except RuntimeError as e:  # another env, another network (--recurrent, --norm-obs)
            raise ConfigError(
                f"--init-from {source}: its weights do not fit this run's network: {mismatch(e)}"
            ) from None
        if self.normalization.obs is not None:
            self.normalization.obs.load_state_dict(load_checkpoint(source)["learner"]["normalization"]["obs"])

    def publish(self, bufs: RolloutBuffers) -> None:
        bufs.publish(flatten_params(self.model), self.updates)

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "generator": self.generator.get_state(),
            "normalization": self.normalization.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = state["updates"]
        self.generator.set_state(state["generator"])
        self.normalization.load_state_dict(state["normalization"])

    def update(self, window: Window) -> dict[str, float]:
        lr = algos.learning_rate(self.cfg, self.updates, self.total_updates)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.device.type != "cpu":  # uint8 observations cross as uint8; the network converts them there
            window = window.to(self.device, non_blocking=True)
        bad = (~torch.isfinite(window.reward)).nonzero()
        if len(bad):
            t, i = bad[0].tolist()
            raise NonFiniteError(
                f"update {self.updates}: the reward of env {i} at step {t} of its window is "
                f"{window.reward[t, i].item()}"
            )
        try:
            learned = self.normalization.before_update(window, self.dp)  # --norm-reward: scaled rewards
            metrics = algos.update(self.cfg, self.model, self.optimizer, learned, self.generator, self.dp, self.shards)
            self.normalization.after_update(window, self.dp)  # --norm-obs: the statistics of the next weights
        except NonFiniteError as e:
            raise NonFiniteError(f"update {self.updates}: {e}") from None
        except dist.DistError as e:  # a peer died or hung: its collective fails here (gloo/nccl timeout)
            raise PeerFailed(
                f"rank {self.dp.rank}: the all-reduce of update {self.updates} with the other "
                f"ranks failed ({type(e).__name__}: {str(e).splitlines()[0]}); another rank died "
                f"or hung"
            ) from None
        self.updates += 1
        metrics["charts/learning_rate"] = lr
        return {**metrics, **self.normalization.metrics()}
