"""Actor-critic networks: Nature CNN for uint8 images (Atari 4x84x84, and football's 16x72x96 SMM,
which is the HTS-RL paper's football network: 32-8/4, 64-4/2, 64-3/1 convolutions, 512 units), MLP
for vectors.

Both take the observation as stored in the rollout buffer (uint8 images stay uint8 until here) and
return ``(head, value)``: the head is what ``htsrl.distributions`` turns into a distribution (logits for
Discrete and MultiDiscrete actions; for Box actions the means followed by the learned log-std).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from htsrl.distributions import BOX, ActionSpec, as_spec
from htsrl.normalization import ObsNormalizer


def _init(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class NatureCNN(nn.Module):
    """``bf16``: the convolutions and the hidden layer run under bfloat16 autocast (``--precision
    bf16``; weights, gradients and optimizer state stay float32); the policy and value heads always
    take float32 features, so logits and values are float32 computations."""

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int, bf16: bool = False):
        super().__init__()
        self.bf16 = bf16
        c, h, w = obs_shape
        g = nn.init.calculate_gain("relu")
        self.body = nn.Sequential(
            _init(nn.Conv2d(c, 32, 8, stride=4), g),
            nn.ReLU(),
            _init(nn.Conv2d(32, 64, 4, stride=2), g),
            nn.ReLU(),
            _init(nn.Conv2d(64, 64, 3, stride=1), g),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n = self.body(torch.zeros(1, c, h, w)).shape[1]
        self.fc = nn.Sequential(_init(nn.Linear(n, 512), g), nn.ReLU())
        self.pi = _init(nn.Linear(512, num_actions), 0.01)
        self.v = _init(nn.Linear(512, 1), 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # channels_last input: oneDNN's convolutions (and backward) run ~1.5x faster on CPU with it
        x = (obs.float() / 255.0).contiguous(memory_format=torch.channels_last)
        with torch.autocast(obs.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            x = self.fc(self.body(x))
        x = x.float()  # a no-op in float32
        return self.pi(x), self.v(x).squeeze(-1)


class MLP(nn.Module):
    """Separate actor and critic, each 64-64 tanh (CleanRL's ppo.py and ppo_continuous_action.py Agent,
    orthogonal init sqrt(2), policy head 0.01, value head 1). ``continuous``: the policy head gives the
    Gaussian's means and a state-independent log-std vector, initialised at 0, is appended to them
    (CleanRL's ``actor_logstd``)."""

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        num_actions: int,
        hidden: int = 64,
        continuous: bool = False,
        obs_norm_clip: float | None = None,
    ):
        super().__init__()
        # --norm-obs: the running statistics are the first layer (htsrl.normalization)
        self.obs_norm = ObsNormalizer(obs_shape, obs_norm_clip) if obs_norm_clip is not None else None
        d = int(np.prod(obs_shape))
        s = np.sqrt(2)
        self.pi_body = nn.Sequential(
            _init(nn.Linear(d, hidden), s), nn.Tanh(), _init(nn.Linear(hidden, hidden), s), nn.Tanh()
        )
        self.v_body = nn.Sequential(
            _init(nn.Linear(d, hidden), s), nn.Tanh(), _init(nn.Linear(hidden, hidden), s), nn.Tanh()
        )
        self.pi = _init(nn.Linear(hidden, num_actions), 0.01)
        self.v = _init(nn.Linear(hidden, 1), 1.0)
        self.logstd = nn.Parameter(torch.zeros(num_actions)) if continuous else None

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (self.obs_norm(obs) if self.obs_norm is not None else obs.float()).flatten(1)
        head = self.pi(self.pi_body(x))
        if self.logstd is not None:
            head = torch.cat([head, self.logstd.expand_as(head)], -1)
        return head, self.v(self.v_body(x)).squeeze(-1)


def build_model(
    obs_shape: tuple[int, ...], action: ActionSpec | int, obs_norm_clip: float | None = None, precision: str = "fp32"
) -> nn.Module:
    """The network for observations of ``obs_shape`` and actions of ``action`` (an int n: Discrete(n));
    it carries the spec as ``action_spec`` for ``distributions.distribution``. ``obs_norm_clip``: the
    network normalizes its input with running statistics, clipped to that bound (``--norm-obs``, vector
    observations only). ``precision``: "bf16" runs the CNN's trunk under bfloat16 autocast (images
    only). The engine passes both from ``Config.network_options``."""
    spec = as_spec(action)
    if len(obs_shape) == 3:
        if spec.kind == BOX:
            raise ValueError("Box actions need vector observations (the MLP); image observations are not supported")
        if obs_norm_clip is not None:
            raise ValueError("--norm-obs normalizes vector observations (the MLP); images are scaled by 1/255")
        model = NatureCNN(obs_shape, spec.num_outputs, bf16=precision == "bf16")
    else:
        if precision != "fp32":
            raise ValueError("--precision bf16 applies to the CNN (image observations); the MLP runs in fp32")
        model = MLP(obs_shape, spec.num_outputs, continuous=spec.kind == BOX, obs_norm_clip=obs_norm_clip)
    model.action_spec = spec
    return model


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def params_sha256(model: nn.Module) -> str:
    """sha256 over the state dict in sorted key order (float32, C order)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def bind_params(model: nn.Module, flat: torch.Tensor) -> None:
    """Make every parameter of ``model`` a view into ``flat`` (shared memory), so that weights
    published there reach this model with no copy."""
    off = 0
    for p in model.parameters():
        n = p.numel()
        p.data = flat[off : off + n].view_as(p)
        off += n
    assert off == flat.numel()
