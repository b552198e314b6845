"""Observation and reward normalization (``--norm-obs``, ``--norm-reward``), as gymnasium's
``NormalizeObservation`` and ``NormalizeReward`` (and CleanRL's MuJoCo PPO, which clips both to +-10),
rebuilt so that every invariant of the engine holds.

**Observations.** The running mean and std are part of the policy: :class:`ObsNormalizer` is the first
layer of the network, and its two vectors are parameters without gradient. So they are published to the
actors with the weights (same shared slot, same version), saved in checkpoints and ``model.pt``, and
``htsrl eval``, the Python API and the exported files use the run's frozen statistics with no extra
step. The learner alone updates them (:class:`RunningMeanStd`), once per update, from the observations
of the window it has just learned, in env order: the statistics never depend on which executor stepped
which env, nor on timing. Each window is therefore acted on *and* learned with the same statistics in
lock-step mode (PPO's first ratio is 1, up to rounding); in HTS mode the statistics lag like the weights, by one
update, and the lag corrections (``--proximal current``, V-trace) see them as what they are: part of
the policy that collected the window. The first window is acted on with mean 0 and std 1.

**Rewards.** The learner scales each window's rewards before the update by the running std of a
discounted return kept per env, as gymnasium 1.x's ``NormalizeReward``: ``R <- gamma * R * (1 -
terminated) + r`` with the flag of the step itself (so a terminal step's return is its own reward, and
a truncated episode's return runs on into the next one, both as there). The std is updated from the
whole window's returns at once (gymnasium: one step at a time), then ``r / sqrt(var + 1e-8)`` is
clipped to ``+-clip``. The returns and the statistics are learner state: checkpointed, restored bitwise
on resume, untouched by crash recovery (which replays envs, not the learner). Episode returns in the
logs stay the env's own.

Statistics are float64 (``count`` starts at 1e-4, gymnasium's); under data parallelism the window's
moments are summed over ranks, so every rank holds the same statistics.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from htsrl.distributed import SINGLE_PROCESS

EPS = 1e-8  # added to the variance, as gymnasium's wrappers


class RunningMeanStd:
    """Mean and variance of every sample seen, merged one batch at a time (Chan et al.; gymnasium's
    ``RunningMeanStd``)."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean = torch.zeros(shape, dtype=torch.float64)
        self.var = torch.ones(shape, dtype=torch.float64)
        self.count = 1e-4

    def update(self, x: torch.Tensor, dp=SINGLE_PROCESS, device: torch.device | str = "cpu") -> None:
        """Merge a batch (first dimension: samples; under data parallelism each rank gives its own and the
        moments are summed over ranks, on ``device``, the learner's: nccl reduces GPU tensors only)."""
        x = x.reshape(-1, *self.mean.shape).to(torch.float64)

        def sum_ranks(t: torch.Tensor) -> torch.Tensor:
            return t if dp.world_size == 1 else dp.sum_(t.to(device)).cpu()

        n_sum = sum_ranks(torch.cat([torch.tensor([float(x.shape[0])], dtype=torch.float64), x.sum(0).reshape(-1)]))
        n = float(n_sum[0])
        mean = n_sum[1:].reshape(self.mean.shape) / n
        var = sum_ranks((x - mean).pow(2).sum(0)) / n  # two passes: exact for large offsets
        delta, total = mean - self.mean, self.count + n
        m2 = self.var * self.count + var * n + delta.pow(2) * self.count * n / total
        self.mean, self.var, self.count = self.mean + delta * n / total, m2 / total, total

    @property
    def std(self) -> torch.Tensor:
        return (self.var + EPS).sqrt()

    def state_dict(self) -> dict:
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.var, self.count = state["mean"].clone(), state["var"].clone(), float(state["count"])


class ObsNormalizer(nn.Module):
    """``clamp((obs - mean) / std, -clip, clip)`` with the learner's statistics as float32 parameters
    without gradient (published, checkpointed and exported with the weights)."""

    def __init__(self, shape: tuple[int, ...], clip: float):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(shape), requires_grad=False)
        self.std = nn.Parameter(torch.ones(shape), requires_grad=False)
        self.clip = float(clip)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return ((obs.float() - self.mean) / self.std).clamp(-self.clip, self.clip)

    @torch.no_grad()
    def load_stats(self, rms: RunningMeanStd) -> None:
        self.mean.copy_(rms.mean.to(self.mean))
        self.std.copy_(rms.std.to(self.std))


class RewardScaler:
    """Each env's discounted return, and the running variance of those returns."""

    def __init__(self, num_envs: int, gamma: float, clip: float):
        self.gamma, self.clip = gamma, clip
        self.returns = torch.zeros(num_envs, dtype=torch.float64)
        self.rms = RunningMeanStd()

    def __call__(
        self, reward: torch.Tensor, terminated: torch.Tensor, dp=SINGLE_PROCESS, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """The scaled rewards (T, N) of one window, in order."""
        returns = torch.empty(reward.shape, dtype=torch.float64)
        running, r64 = self.returns, reward.to(torch.float64)
        for t in range(reward.shape[0]):  # gymnasium's R <- gamma * R * (1 - terminated) + r, flag of this step
            running = running.masked_fill(terminated[t], 0.0) * self.gamma + r64[t]
            returns[t] = running
        self.returns = running
        self.rms.update(returns.reshape(-1), dp, device)
        return (reward / self.rms.std.float()).clamp(-self.clip, self.clip)

    def state_dict(self) -> dict:
        return {"returns": self.returns.clone(), "rms": self.rms.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.returns = state["returns"].clone()
        self.rms.load_state_dict(state["rms"])


class Normalization:
    """The learner's side of both: scales rewards before an update, folds the learned window's
    observations into the statistics after it (see the module doc for why in that order)."""

    def __init__(self, cfg, model: nn.Module, num_envs: int):
        self.obs = RunningMeanStd(tuple(model.obs_norm.mean.shape)) if cfg.norm_obs else None
        self.reward = RewardScaler(num_envs, cfg.gamma, cfg.norm_clip) if cfg.norm_reward else None
        self.model = model

    def before_update(self, window, dp=SINGLE_PROCESS):
        if self.reward is None:
            return window
        scaled = self.reward(window.reward.cpu(), window.terminated.cpu(), dp, window.reward.device)
        return dataclasses.replace(window, reward=scaled.to(window.reward.device))

    def after_update(self, window, dp=SINGLE_PROCESS) -> None:
        if self.obs is not None:
            T = window.reward.shape[0]
            self.obs.update(window.obs[:T].cpu(), dp, window.obs.device)
            self.model.obs_norm.load_stats(self.obs)

    def metrics(self) -> dict[str, float]:
        out = {}
        if self.reward is not None:
            out["charts/reward_scale"] = float(self.reward.rms.std)
        return out

    def state_dict(self) -> dict:
        return {
            "obs": self.obs.state_dict() if self.obs else None,
            "reward": self.reward.state_dict() if self.reward else None,
        }

    def load_state_dict(self, state: dict) -> None:
        if self.obs is not None:
            self.obs.load_state_dict(state["obs"])
        if self.reward is not None:
            self.reward.load_state_dict(state["reward"])
