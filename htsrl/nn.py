"""Actor-critic networks: Nature CNN for uint8 images (Atari 4x84x84, and football's 16x72x96 SMM,
which is the HTS-RL paper's football network: 32-8/4, 64-4/2, 64-3/1 convolutions, 512 units), MLP
for vectors.

Both take the observation as stored in the rollout buffer (uint8 images stay uint8 until here) and
return ``(head, value)``: the head is what ``htsrl.distributions`` turns into a distribution (logits for
Discrete and MultiDiscrete actions; for Box actions the means followed by the learned log-std).

A network is ``encode -> [core] -> heads``. With ``--recurrent gru|lstm`` the core is a GRU or LSTM cell
between the two, and the network has a state of ``state_size`` floats per env (LSTM: h then c). A
recurrent network is called through ``step`` (one step of N envs: the actors) or ``sequence`` (T steps
of N envs from their state at the first: the learner); ``starts[t]`` marks an observation that begins
an episode, and the state is zeroed before it. ``forward`` is for feed-forward networks only.
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import torch
from torch import nn

from htsrl.config import RECURRENT_CORES
from htsrl.distributions import BOX, ActionSpec, as_spec
from htsrl.normalization import ObsNormalizer


def _init(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class RecurrentCore(nn.Module):
    """A GRU or LSTM cell over flat state vectors: ``state_size`` = hidden (GRU) or 2 * hidden (LSTM:
    h then c). Orthogonal weights, zero biases (as Kostrikov's pytorch-a2c-ppo-acktr NNBase)."""

    def __init__(self, kind: str, in_features: int, hidden: int):
        super().__init__()
        self.kind, self.hidden = kind, hidden
        self.cell = nn.GRUCell(in_features, hidden) if kind == "gru" else nn.LSTMCell(in_features, hidden)
        self.state_size = hidden if kind == "gru" else 2 * hidden
        for name, p in self.cell.named_parameters():
            nn.init.orthogonal_(p) if "weight" in name else nn.init.zeros_(p)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        if self.kind == "gru":
            return self.cell(x, state)
        h, c = self.cell(x, (state[:, : self.hidden], state[:, self.hidden :]))
        return torch.cat([h, c], -1)

    def output(self, state: torch.Tensor) -> torch.Tensor:
        """What the heads see: h."""
        return state[..., : self.hidden]


class ActorCritic(nn.Module):
    """``encode`` (observation -> features), an optional recurrent ``core``, ``heads`` (features -> head,
    value). Each network (``NatureCNN``, ``MLP``) defines ``encode`` and ``heads``; this class composes
    them, with or without the core."""

    def __init__(self):
        super().__init__()
        self.core: RecurrentCore | None = None  # set by a subclass with --recurrent

    @property
    def state_size(self) -> int:
        return self.core.state_size if self.core is not None else 0

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.core is not None:
            raise TypeError("a recurrent network acts through step() or sequence(), with its state")
        return self.heads(self.encode(obs))

    def step(
        self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of N envs: ``(head, value, state_in, state_out)``; ``state_in`` is ``state`` zeroed
        where ``starts``, the state the step used."""
        state_in = torch.where(starts.unsqueeze(-1), 0.0, state)
        state_out = self.core(self.encode(obs).float(), state_in)
        head, value = self.heads(self.core.output(state_out))
        return head, value, state_in, state_out

    def sequence(
        self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """T steps of N envs (``obs`` (T, N, ...), ``state`` (N, S) before step 0, ``starts`` (T, N)):
        ``(head (T, N, ...), value (T, N), states (T, N, S))``, ``states[t]`` the state after step t
        (before any reset at t + 1). The encoder runs once over all T * N observations."""
        T, N = starts.shape
        x = self.encode(obs.flatten(0, 1)).float()
        x = x.view(T, N, x.shape[-1])  # N may be 0: a rank that owns none of a minibatch's envs
        states = []
        for t in range(T):
            state = self.core(x[t], torch.where(starts[t].unsqueeze(-1), 0.0, state))
            states.append(state)
        out = torch.stack(states) if states else state.new_zeros((0, N, self.state_size))
        head, value = self.heads(self.core.output(out).flatten(0, 1))
        return head.view(T, N, *head.shape[1:]), value.view(T, N), out


class NatureCNN(ActorCritic):
    """``bf16``: the convolutions and the hidden layer run under bfloat16 autocast (``--precision
    bf16``; weights, gradients and optimizer state stay float32); the policy and value heads always
    take float32 features, so logits and values are float32 computations."""

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int, bf16: bool = False, recurrent: str = "none"):
        super().__init__()
        self.bf16 = bf16
        # inference only (cache_bf16_trunk); a plain list, not a submodule: parameters(), state_dict() and
        # bind_params never see it
        self.trunk_bf16: list[nn.Module] = []
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
        if recurrent != "none":  # 512 -> 512 cell between the hidden layer and the heads
            self.core = RecurrentCore(recurrent, 512, 512)

    def cache_bf16_trunk(self) -> None:
        """Inference with ``bf16``: keep a bfloat16 copy of the trunk (convolutions and hidden layer) and run
        it instead of autocast. Autocast casts the weights again at every call (1.6M of them, the cost of a
        forward of 2 observations); the copy gives the same numbers bitwise (tests/test_precision.py).
        The owner refreshes it whenever the weights change; actors do so once per published version."""
        trunk = nn.Sequential(self.body, self.fc)
        if not self.trunk_bf16:
            self.trunk_bf16.append(copy.deepcopy(trunk).to(torch.bfloat16))
        with torch.no_grad():
            for mine, theirs in zip(self.trunk_bf16[0].parameters(), trunk.parameters()):
                mine.copy_(theirs)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        # channels_last input: oneDNN's convolutions (and backward) run ~1.5x faster on CPU with it
        x = (obs.float() / 255.0).contiguous(memory_format=torch.channels_last)
        if self.trunk_bf16 and not torch.is_grad_enabled():  # the copy has no gradient path to the weights
            return self.trunk_bf16[0](x.to(torch.bfloat16)).float()
        with torch.autocast(obs.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            x = self.fc(self.body(x))
        return x.float()  # a no-op in float32

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pi(x), self.v(x).squeeze(-1)


class MLP(ActorCritic):
    """Separate actor and critic, each 64-64 tanh (CleanRL's ppo.py and ppo_continuous_action.py Agent,
    orthogonal init sqrt(2), policy head 0.01, value head 1). ``continuous``: the policy head gives the
    Gaussian's means and a state-independent log-std vector, initialised at 0, is appended to them
    (CleanRL's ``actor_logstd``). ``recurrent``: a cell of ``hidden`` units on the (normalized) input,
    which the actor and critic then take (Kostrikov's MLPBase with ``recurrent=True``)."""

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        num_actions: int,
        hidden: int = 64,
        continuous: bool = False,
        obs_norm_clip: float | None = None,
        recurrent: str = "none",
    ):
        super().__init__()
        # --norm-obs: the running statistics are the first layer (htsrl.normalization)
        self.obs_norm = ObsNormalizer(obs_shape, obs_norm_clip) if obs_norm_clip is not None else None
        d = hidden if recurrent != "none" else int(np.prod(obs_shape))  # what the bodies take
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
        if recurrent != "none":
            self.core = RecurrentCore(recurrent, int(np.prod(obs_shape)), hidden)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return (self.obs_norm(obs) if self.obs_norm is not None else obs.float()).flatten(1)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        head = self.pi(self.pi_body(x))
        if self.logstd is not None:
            head = torch.cat([head, self.logstd.expand_as(head)], -1)
        return head, self.v(self.v_body(x)).squeeze(-1)


def build_model(
    obs_shape: tuple[int, ...],
    action: ActionSpec | int,
    obs_norm_clip: float | None = None,
    precision: str = "fp32",
    recurrent: str = "none",
) -> ActorCritic:
    """The network for observations of ``obs_shape`` and actions of ``action`` (an int n: Discrete(n));
    it carries the spec as ``action_spec`` for ``distributions.distribution``. ``obs_norm_clip``: the
    network normalizes its input with running statistics, clipped to that bound (``--norm-obs``, vector
    observations only). ``precision``: "bf16" runs the CNN's trunk under bfloat16 autocast (images
    only). ``recurrent``: "gru" or "lstm" puts that core between the encoder and the heads. The engine
    passes all three from ``Config.network_options``."""
    if recurrent not in RECURRENT_CORES:
        raise ValueError(f"--recurrent must be one of {', '.join(RECURRENT_CORES)}, got {recurrent!r}")
    spec = as_spec(action)
    if len(obs_shape) == 3:
        if spec.kind == BOX:
            raise ValueError("Box actions need vector observations (the MLP); image observations are not supported")
        if obs_norm_clip is not None:
            raise ValueError("--norm-obs normalizes vector observations (the MLP); images are scaled by 1/255")
        model = NatureCNN(obs_shape, spec.num_outputs, bf16=precision == "bf16", recurrent=recurrent)
    else:
        if precision != "fp32":
            raise ValueError("--precision bf16 applies to the CNN (image observations); the MLP runs in fp32")
        model = MLP(
            obs_shape, spec.num_outputs, continuous=spec.kind == BOX, obs_norm_clip=obs_norm_clip, recurrent=recurrent
        )
    model.action_spec = spec
    return model


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Each parameter starts a multiple of 64 bytes into the published vector (16 float32s), as a tensor of its
# own does (torch's CPU allocator aligns to 64 bytes). Why it matters: some CPU GEMM kernels (MKL's on AMD
# EPYC, for one) round differently when a weight matrix starts off a 64-byte boundary, so unaligned views
# would make an actor's forward depend on which of the two parameter slots it reads (and differ from the
# learner's forward on the same weights); a resumed run, which publishes into the other slot, then diverged.
PARAM_ALIGN = 16


def _aligned(n: int) -> int:
    return -(-n // PARAM_ALIGN) * PARAM_ALIGN


def flat_size(model: nn.Module) -> int:
    """Floats in the published vector of ``model``: every parameter padded to a 64-byte boundary."""
    return sum(_aligned(p.numel()) for p in model.parameters())


def flatten_params(model: nn.Module) -> torch.Tensor:
    """The published vector of ``model``'s parameters (the layout ``bind_params`` reads; padding is zero)."""
    flat = torch.zeros(flat_size(model))
    off = 0
    for p in model.parameters():
        flat[off : off + p.numel()] = p.detach().reshape(-1).cpu()
        off += _aligned(p.numel())
    return flat


def mismatch(e: RuntimeError) -> str:
    """The first detail of a failed ``load_state_dict`` (a missing key, a size mismatch), not its header."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[1] if len(lines) > 1 else lines[0] if lines else type(e).__name__


def params_sha256(model: nn.Module) -> str:
    """sha256 over the state dict in sorted key order (float32, C order)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def bind_params(model: nn.Module, flat: torch.Tensor) -> None:
    """Make every parameter of ``model`` a view into ``flat`` (shared memory, laid out by
    ``flatten_params``), so that weights published there reach this model with no copy."""
    off = 0
    for p in model.parameters():
        n = p.numel()
        p.data = flat[off : off + n].view_as(p)
        off += _aligned(n)
    assert off == flat.numel()
