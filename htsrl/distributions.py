"""The action distributions, in one module: how an env's action space becomes a network head, how an
action is drawn from the env's own uniforms, its log-probability and entropy, the greedy action, and
what the env receives.

Every user goes through here: actors and the lock-step loop (``engine/actor.py``), raw mode
(``engine/executor.py``), the learner's algorithms (``algos/returns.py``, ``ppo.py``, ``a2c.py``,
``impala.py``), evaluation and the Python API and its exported files (``policy.py``).

| space | head (network output) | uniforms per env-step | buffer action | distribution |
|---|---|---|---|---|
| ``Discrete(n)`` | n logits | 1 (shape ``()``) | int64 scalar | categorical, inverse CDF |
| ``MultiDiscrete(nvec)`` | ``sum(nvec)`` logits | ``len(nvec)`` | int64 vector | independent categoricals |
| ``Box(low, high, (d,))`` | d means, then d log-stds | d | float32 vector | diagonal Gaussian |

A Gaussian action is ``mean + std * z`` with ``z = ndtri(u)`` (the inverse normal CDF, in float64) of
each of the env's uniforms, so, like a discrete action, it is a function of the env's stream and the
weights only. The log-std is a learned vector independent of the state, initialised at 0 (CleanRL's
``ppo_continuous_action.py``); the network appends it to the means (``nn.MLP``), so every head is one
tensor. The buffer keeps the unclipped sample and its log-probability (the learner's log-probability
is of the same unclipped sample); the env receives it clipped to the action bounds
(:meth:`ActionSpec.to_env`, in the executor and on replay), as CleanRL's ``ClipAction`` wrapper does.
An infinite bound clips nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

DISCRETE, MULTI_DISCRETE, BOX = "discrete", "multi_discrete", "box"
# ndtri(0) = -inf and ndtri(1) = inf: a uniform is kept in [EPS, 1 - EPS] first (a draw of exactly 0
# comes once in 2^53 draws; the clamp changes no other draw).
_EPS = 2.0**-53
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


@dataclass(frozen=True)
class ActionSpec:
    """An env's action space as htsrl handles it (plain tuples: picklable, hashable)."""

    kind: str
    nvec: tuple[int, ...] = ()  # discrete: (n,); multi-discrete: the sub-action sizes
    low: tuple[float, ...] = ()  # box: the bounds, per dimension (may be +-inf)
    high: tuple[float, ...] = ()

    @staticmethod
    def discrete(n: int) -> ActionSpec:
        return ActionSpec(DISCRETE, (int(n),))

    @property
    def dims(self) -> int:
        """Action dimensions (Box), sub-actions (MultiDiscrete), 1 (Discrete)."""
        return len(self.low) if self.kind == BOX else len(self.nvec)

    @property
    def num_outputs(self) -> int:
        """Size of the network's policy output before the log-std (Box: the means)."""
        return self.dims if self.kind == BOX else sum(self.nvec)

    @property
    def uniform_shape(self) -> tuple[int, ...]:
        """Uniforms per env-step: one scalar for Discrete (the buffer layout of old), else one per dimension."""
        return () if self.kind == DISCRETE else (self.dims,)

    @property
    def action_shape(self) -> tuple[int, ...]:
        return () if self.kind == DISCRETE else (self.dims,)

    @property
    def action_dtype(self) -> np.dtype:
        return np.dtype(np.float32) if self.kind == BOX else np.dtype(np.int64)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Buffer actions (a batch) -> what the envs receive: Box samples clipped to the bounds."""
        if self.kind != BOX:
            return actions
        return np.clip(actions, np.asarray(self.low, np.float32), np.asarray(self.high, np.float32))

    def clip(self, actions: torch.Tensor) -> torch.Tensor:
        """:meth:`to_env` in torch (min/max ops, so TorchScript and ONNX export it); identity if not Box."""
        if self.kind != BOX:
            return actions
        low = torch.tensor(self.low, dtype=actions.dtype)
        high = torch.tensor(self.high, dtype=actions.dtype)
        return torch.maximum(torch.minimum(actions, high), low)

    def random_actions(self, u: np.ndarray) -> np.ndarray:
        """Raw mode: uniformly random actions from uniforms ``u`` (a batch of ``uniform_shape``), no network.
        Box: uniform in the bounds; a dimension with an infinite bound takes a standard normal draw."""
        if self.kind == DISCRETE:
            n = self.nvec[0]
            return np.minimum((u * n).astype(np.int64), n - 1)
        if self.kind == MULTI_DISCRETE:
            n = np.asarray(self.nvec, np.int64)
            return np.minimum((u * n).astype(np.int64), n - 1)
        low, high = np.asarray(self.low, np.float64), np.asarray(self.high, np.float64)
        finite = np.isfinite(low) & np.isfinite(high)
        z = torch.special.ndtri(torch.from_numpy(np.clip(u, _EPS, 1 - _EPS))).numpy()
        a = np.where(finite, np.where(finite, low, 0) + u * np.where(finite, high - low, 0), z)
        return a.astype(np.float32)


def action_spec(space: gym.Space) -> ActionSpec | None:
    """The spec of a Gymnasium action space, or None where htsrl cannot act in it."""
    if isinstance(space, gym.spaces.Discrete) and int(space.start) == 0:
        return ActionSpec.discrete(int(space.n))
    if isinstance(space, gym.spaces.MultiDiscrete) and space.nvec.ndim == 1 and not np.any(space.start):
        return ActionSpec(MULTI_DISCRETE, tuple(int(n) for n in space.nvec))
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and np.issubdtype(space.dtype, np.floating):
        return ActionSpec(BOX, low=tuple(map(float, space.low)), high=tuple(map(float, space.high)))
    return None


def _inverse_cdf(logp_all: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Categorical draw at uniform ``u`` (one per row of ``logp_all``) by the inverse CDF, in float64."""
    cdf = logp_all.double().exp().cumsum(-1)
    return (cdf < u.unsqueeze(-1)).sum(-1).clamp_(max=logp_all.shape[-1] - 1)


class Categorical:
    """Discrete(n): ``head`` is the logits (..., n); actions are int64 (...)."""

    def __init__(self, head: torch.Tensor):
        self.logits = head

    @cached_property
    def logp_all(self) -> torch.Tensor:
        """log-softmax of the logits, computed once (on first use: ``mode`` needs none, so an exported
        greedy policy has no softmax in it)."""
        return F.log_softmax(self.logits, -1)

    def sample(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions and their log-probabilities from uniforms ``u`` (float64, one per row)."""
        actions = _inverse_cdf(self.logp_all, u)
        return actions, self.log_prob(actions)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.logp_all.exp() * self.logp_all).sum(-1)

    def entropy_sum(self) -> torch.Tensor:
        """The entropy summed over every row (one reduction, as the losses have always taken it)."""
        return -(self.logp_all.exp() * self.logp_all).sum()

    def mode(self) -> torch.Tensor:
        return self.logits.argmax(-1)  # of the logits themselves: log_softmax's rounding could make a tie


class MultiCategorical:
    """MultiDiscrete(nvec): independent categoricals; ``head`` is (..., sum(nvec)) logits, actions int64
    (..., len(nvec)); the log-probability and entropy are the sums over the sub-actions."""

    def __init__(self, head: torch.Tensor, nvec: tuple[int, ...]):
        self.parts = [Categorical(h) for h in head.split(list(nvec), -1)]

    def sample(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actions = torch.stack([_inverse_cdf(p.logp_all, u[..., k]) for k, p in enumerate(self.parts)], -1)
        return actions, self.log_prob(actions)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.stack([p.log_prob(actions[..., k]) for k, p in enumerate(self.parts)], -1).sum(-1)

    def entropy(self) -> torch.Tensor:
        return torch.stack([p.entropy() for p in self.parts], -1).sum(-1)

    def entropy_sum(self) -> torch.Tensor:
        return self.entropy().sum()

    def mode(self) -> torch.Tensor:
        return torch.stack([p.mode() for p in self.parts], -1)


class DiagGaussian:
    """Box: ``head`` is (..., 2d), the means then the log-stds; actions are float32 (..., d), unclipped;
    the log-probability and entropy are sums over the dimensions (torch.distributions.Normal's terms)."""

    def __init__(self, head: torch.Tensor):
        self.mean, self.logstd = head.chunk(2, -1)

    def sample(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.special.ndtri(u.clamp(_EPS, 1 - _EPS)).to(self.mean.dtype)
        actions = self.mean + self.logstd.exp() * z
        return actions, self.log_prob(actions)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        var = (2 * self.logstd).exp()
        return (-((actions - self.mean) ** 2) / (2 * var) - self.logstd - _LOG_SQRT_2PI).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (0.5 + _LOG_SQRT_2PI + self.logstd).sum(-1)

    def entropy_sum(self) -> torch.Tensor:
        return self.entropy().sum()

    def mode(self) -> torch.Tensor:
        return self.mean


Distribution = Categorical | MultiCategorical | DiagGaussian


def distribution(spec: ActionSpec, head: torch.Tensor) -> Distribution:
    """The distribution of a network head (its first output) for actions of ``spec``."""
    if spec.kind == DISCRETE:
        return Categorical(head)
    if spec.kind == MULTI_DISCRETE:
        return MultiCategorical(head, spec.nvec)
    return DiagGaussian(head)


def greedy(spec: ActionSpec, head: torch.Tensor) -> torch.Tensor:
    """The deterministic action as the env receives it: the most likely action (Discrete, each
    sub-action of MultiDiscrete); Box: the Gaussian's mean clipped to the bounds."""
    return spec.clip(distribution(spec, head).mode())


def spec_of(model) -> ActionSpec:
    """The action spec a network carries (``nn.build_model`` sets it); a module without one (a wrapper
    around a network, as some tests use) is taken as a Discrete policy, as every network was before."""
    spec = getattr(model, "action_spec", None)
    return spec if isinstance(spec, ActionSpec) else ActionSpec(DISCRETE)


def as_spec(action: ActionSpec | int) -> ActionSpec:
    """An ``int`` n means Discrete(n) (how networks were built before other spaces)."""
    return action if isinstance(action, ActionSpec) else ActionSpec.discrete(action)
