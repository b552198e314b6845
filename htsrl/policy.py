"""A trained run as a policy you can call from Python, and the files ``htsrl export`` writes.

``htsrl.load(run_dir)`` reads the run's ``config.json`` and its weights (``model.pt``, the final model,
or the last ``checkpoint.pt``) into a :class:`Policy` on CPU. Every path from a raw env observation to
an action goes through one module, :class:`ActingNetwork`: :meth:`Policy.predict`, ``htsrl eval``
(``htsrl.evaluation``) and the exported TorchScript and ONNX files. Its :meth:`ActingNetwork.preprocess`
is the one place where the run's observation preprocessing lives, so they cannot drift apart when it
grows. Observation normalization (``--norm-obs``) is inside the network itself (``htsrl.normalization``),
so it is in every one of these paths, with the statistics frozen at the loaded weights.

A recurrent policy (``--recurrent gru|lstm``) has a state per env: ``predict`` takes and returns it (as
Stable-Baselines3's ``RecurrentPPO.predict``), ``htsrl eval`` carries it through each game, and the
exported files take ``(obs, state)`` and return ``(action, state)``.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from htsrl.config import Config
from htsrl.distributions import ActionSpec, distribution, greedy, spec_of
from htsrl.envs import EnvInfo, make_env_set, probe_env
from htsrl.errors import CheckpointError, ConfigError
from htsrl.nn import build_model, mismatch
from htsrl.run_dir import RunDir

CHECKPOINTS = ("auto", "final", "last")
EXPORT_FORMATS = ("torchscript", "onnx")
DEFAULT_EXPORT_NAMES = {"torchscript": "policy_torchscript.pt", "onnx": "policy.onnx"}
ONNX_OPSET = 17  # old enough for every onnxruntime of the last years, new enough for every op used


class ActingNetwork(nn.Module):
    """Raw env observations (a batch, as the env returns them) -> ``(logits, value)``.

    The run's preprocessing followed by its network; the only route from an observation to an action,
    so the Python API, ``htsrl eval`` and the exported files act identically."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.action_spec: ActionSpec = spec_of(model)

    def preprocess(self, obs: torch.Tensor) -> torch.Tensor:
        """What the run does to an observation before its network. Nothing: the networks take observations
        as the envs give them (uint8 images become float /255 inside NatureCNN; with ``--norm-obs`` the
        MLP's first layer normalizes them with the run's statistics, frozen at the loaded weights, so
        the engine, predict and the exported files share that code too)."""
        return obs

    @property
    def state_size(self) -> int:
        """Floats of recurrent state per env (0: feed-forward)."""
        return self.model.state_size

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(self.preprocess(obs))

    def step(
        self, obs: torch.Tensor, state: torch.Tensor, starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A recurrent network's step: ``(head, value, new state)``; the state is zeroed where ``starts``."""
        head, value, _, state_out = self.model.step(self.preprocess(obs), state, starts)
        return head, value, state_out


class GreedyActions(nn.Module):
    """What the exported files and ``predict(deterministic=True)`` compute: a batch of raw observations ->
    the deterministic actions as the env receives them (``distributions.greedy``): the most likely action
    (int64; MultiDiscrete: one per sub-action), or for Box actions the Gaussian's mean **clipped to the
    action bounds** (float32), as training clips what it sends to the env."""

    def __init__(self, network: ActingNetwork):
        super().__init__()
        self.network = network

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        head, _ = self.network(obs)
        return greedy(self.network.action_spec, head)


class GreedyRecurrentActions(nn.Module):
    """:class:`GreedyActions` for a recurrent network: ``(obs, state) -> (actions, new state)``, state
    ``(N, state_size)`` float32. The caller zeros an env's state where its episode begins."""

    def __init__(self, network: ActingNetwork):
        super().__init__()
        self.network = network

    def forward(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.zeros(state.shape[:1], dtype=torch.bool, device=state.device)
        head, _, state_out = self.network.step(obs, state, starts)
        return greedy(self.network.action_spec, head), state_out


class Policy:
    """A trained run's policy on CPU; build it with :func:`load`.

    ``config`` is the run's config, ``network`` its :class:`ActingNetwork` (eval mode), ``checkpoint``
    which weights were loaded ("final": ``model.pt``; "last": the last ``checkpoint.pt``)."""

    def __init__(
        self, config: Config, network: ActingNetwork, info: EnvInfo, checkpoint: str, run_dir: Path, seed: int = 0
    ):
        self.config = config
        self.network = network.eval()
        self.checkpoint = checkpoint
        self.run_dir = run_dir
        self.observation_shape: tuple[int, ...] = info.obs_shape
        self.observation_dtype: np.dtype = info.obs_dtype
        self.num_actions: int = info.num_actions  # Discrete: n; MultiDiscrete: sum(nvec); Box: dimensions
        self.action_spec: ActionSpec = info.action_spec
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def export_dtype(self) -> np.dtype:
        """The dtype the exported files take: uint8 images as the env gives them, float32 vectors (the
        networks compute in float32; ONNX fixes an input's dtype)."""
        return np.dtype(np.uint8) if self.observation_dtype == np.uint8 else np.dtype(np.float32)

    def __repr__(self) -> str:
        return (
            f"Policy(env={self.config.env!r}, run_dir={str(self.run_dir)!r}, checkpoint={self.checkpoint!r}, "
            f"observation_shape={self.observation_shape}, num_actions={self.num_actions})"
        )

    @property
    def state_size(self) -> int:
        """Floats of recurrent state per env: 0 for a feed-forward policy."""
        return self.network.state_size

    def predict(
        self,
        observation: np.ndarray | torch.Tensor,
        state: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The action for one observation, or the actions for a batch: what ``env.step`` takes.

        ``observation``: numpy or torch, shaped like the env's observation (one) or with a leading batch
        dimension (a batch of N). Actions: Discrete, an int64 scalar for one, ``(N,)`` for a batch;
        MultiDiscrete, int64 ``(k,)`` / ``(N, k)``; Box, float32 ``(d,)`` / ``(N, d)``, **clipped to the
        action bounds** as the env receives them in training.

        A recurrent policy (``--recurrent``) also returns its next state, as ``(actions, state)``: it steps
        from ``state`` (float32 ``(state_size,)`` for one observation, ``(N, state_size)`` for a batch;
        ``None``: every env begins an episode), zeroed where ``episode_start`` is true (bool, one per env);
        pass the state back with the next observations. A feed-forward policy ignores both. (The argument
        order is Stable-Baselines3's; unlike SB3's ``predict``, a feed-forward policy returns the actions
        alone, and it is greedy by default.)

        ``deterministic`` (the default): the most likely action (Box: the mean, clipped). Otherwise an
        action is sampled as training's actors sample it (``htsrl.distributions``, from uniforms) from
        ``generator``, or from the policy's own generator (seeded by ``load(..., seed=)``), so sampled
        actions are reproducible."""
        obs, single = self._as_batch(observation)
        spec = self.action_spec
        state_out = None
        with torch.inference_mode():
            if self.state_size:
                state_in, starts = self._state_batch(state, episode_start, len(obs), single)
                head, _, state_out = self.network.step(obs, state_in, starts)
            else:
                head, _ = self.network(obs)
            if deterministic:
                actions = greedy(spec, head)
            else:
                source = self.generator if generator is None else generator
                uniforms = torch.rand((len(obs), *spec.uniform_shape), generator=source, dtype=torch.float64)
                actions = spec.clip(distribution(spec, head).sample(uniforms)[0])
        out = actions.numpy().astype(spec.action_dtype)
        out = out[0] if single else out
        if state_out is None:
            return out
        state_out = state_out.numpy()
        return out, (state_out[0] if single else state_out)

    def _state_batch(
        self, state: np.ndarray | None, episode_start: np.ndarray | None, n: int, single: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The recurrent state ``(n, state_size)`` and the episode starts ``(n,)`` of a ``predict`` call."""
        size = self.state_size
        if state is None:
            return torch.zeros(n, size), torch.ones(n, dtype=torch.bool)
        s = torch.as_tensor(np.asarray(state, np.float32))
        s = s.unsqueeze(0) if single and s.shape == (size,) else s
        if tuple(s.shape) != (n, size):
            want = f"({size},)" if single else f"({n}, {size})"
            raise ConfigError(f"state of shape {tuple(np.shape(state))}: this policy's state is {want}")
        if episode_start is None:
            return s, torch.zeros(n, dtype=torch.bool)
        starts = torch.as_tensor(np.asarray(episode_start, bool)).reshape(-1)
        if starts.numel() != n:
            raise ConfigError(f"episode_start has {starts.numel()} entries for {n} observations")
        return s, starts

    def _as_batch(self, observation: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, bool]:
        """A batch tensor on CPU, and whether one observation was given (told apart by its shape)."""
        if isinstance(observation, torch.Tensor):
            obs = observation.detach().cpu()
        else:
            obs = torch.as_tensor(np.asarray(observation))
        shape = tuple(obs.shape)
        if shape == self.observation_shape:
            return obs.unsqueeze(0), True
        if shape[1:] == self.observation_shape and len(shape) == len(self.observation_shape) + 1:
            return obs, False
        raise ConfigError(
            f"observation of shape {shape}: {self.config.env} observations are {self.observation_shape} "
            f"(one) or (N, {', '.join(map(str, self.observation_shape))}) (a batch)"
        )

    def make_env(self, seed: int | None = None, training: bool = True, render_mode: str | None = None) -> gym.Env:
        """The run's env with the run's wrappers, on the run's backend: the observations the policy was
        trained on. ``training=True`` (default) is the env as training and ``htsrl eval`` step it: on Atari
        a lost life ends an episode (``reset()`` then continues the game, pressing FIRE where the game
        needs it), rewards are sign-clipped, and the true score of a whole game is
        ``info["htsrl_episode"]["r"]`` at game over. ``training=False``: one whole game per episode with
        raw rewards, and no automatic FIRE after a lost life (a policy that never learned to serve stalls).
        ``seed``: the seed of the first ``reset()`` that is given none, and of the action space.
        Football with several controlled players: the game, which returns ``(players, *obs)`` (a batch
        for ``predict``) and takes one action per player."""
        kwargs = dict(self.config.env_kwargs)
        if render_mode is not None:
            kwargs["render_mode"] = render_mode
        columns = range(self.config.players)
        env_set = make_env_set(self.config.env, kwargs, self.config.env_backend, columns, training=training)
        return _RunEnv(env_set, seed)

    def export(self, path: str | Path, format: str = "torchscript") -> Path:
        """Write a file that maps a batch of raw observations to deterministic actions (see :func:`export`)."""
        return export(self, path, format)


class _RunEnv(gym.Wrapper):
    """The one env of an env set (a plain env or one slot of an EnvPool); closing it closes the set, and
    the first unseeded reset uses ``seed``."""

    def __init__(self, env_set, seed: int | None):
        super().__init__(env_set.game(next(iter(env_set.envs))))
        self._env_set = env_set
        self._first_seed = seed
        if seed is not None:
            self.action_space.seed(seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        seed = self._first_seed if seed is None else seed
        self._first_seed = None  # used once: later resets go on from the env's own generator, as in Gymnasium
        return self.env.reset(seed=seed, options=options)

    def close(self) -> None:
        self._env_set.close()


def load(run_dir: str | Path, checkpoint: str = "auto", seed: int = 0) -> Policy:
    """The policy of the run in ``run_dir``, on CPU, in eval mode.

    ``checkpoint``: "final" (``model.pt``, written when a training invocation ends), "last" (the last
    ``checkpoint.pt``, loaded with ``weights_only=True`` and checked by its sha256), or "auto" (the
    newer of the two: model.pt, unless the run was interrupted or failed after writing it). ``seed``
    seeds the generator ``predict(deterministic=False)`` samples from. Bad input raises ConfigError or
    CheckpointError."""
    run_dir = Path(run_dir)
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    config = read_config(run_dir)
    info = probe_env(config.env, config.env_kwargs, config.env_backend)
    # fp32 whatever the run's --precision (bf16 is a training speed setting); --norm-obs: frozen statistics
    options = config.network_options
    model = build_model(
        info.obs_shape, info.action_spec, obs_norm_clip=options["obs_norm_clip"], recurrent=options["recurrent"]
    )
    state, which = load_weights(run_dir, checkpoint)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:  # weights of another network (another env, another htsrl)
        raise CheckpointError(f"the weights in {run_dir} do not fit {config.env}'s network: {mismatch(e)}") from None
    return Policy(config, ActingNetwork(model), info, which, run_dir, seed)


def read_config(run_dir: Path) -> Config:
    return RunDir(run_dir).saved_config()


def load_weights(run_dir: Path, checkpoint: str) -> tuple[dict, str]:
    """The network's state dict and which file it came from ("final" or "last"; ``checkpoint`` "auto":
    the newer of the two)."""
    from htsrl.checkpoint import load_checkpoint

    path, which = RunDir(run_dir).weights_file(checkpoint)
    if which == "final":
        return torch.load(path, weights_only=True, map_location="cpu"), "final"
    return load_checkpoint(run_dir)["learner"]["model"], "last"


def export(policy: Policy, path: str | Path, format: str = "torchscript") -> Path:
    """Write ``policy`` as a file that takes a batch of raw env observations (uint8 images as the env
    gives them, float32 vectors) and returns the deterministic actions (:class:`GreedyActions`: int64
    ``(N,)`` for Discrete, int64 ``(N, k)`` for MultiDiscrete, float32 ``(N, d)`` for Box, the mean clipped
    to the action bounds), with the run's preprocessing inside. ``format``: "torchscript" (``torch.jit.load``) or
    "onnx" (e.g. onnxruntime; input ``obs``, output ``action``, any batch size). A recurrent policy's
    file takes ``(obs, state)`` and returns ``(action, state)`` (ONNX: inputs ``obs`` and ``state``,
    outputs ``action`` and ``state_out``); zero an env's state where its episode begins."""
    if format not in EXPORT_FORMATS:
        raise ConfigError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recurrent = policy.state_size > 0
    module = copy.deepcopy((GreedyRecurrentActions if recurrent else GreedyActions)(policy.network)).eval()
    module.requires_grad_(False)  # the traced file's actions carry no autograd history (a Box mean would)
    example = (torch.from_numpy(np.zeros((2, *policy.observation_shape), policy.export_dtype)),)
    if recurrent:
        example += (torch.zeros(2, policy.state_size),)
    if format == "torchscript":
        # recent torch warns that TorchScript is deprecated; it is still what libtorch (C++) loads.
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # Box bounds become constants, as meant
            torch.jit.trace(module, example).save(str(path))
    else:
        _export_onnx(module, example, path)
    return path


def _export_onnx(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    # The TorchScript-based exporter (dynamo=False): the torch.export-based one needs onnxscript, and
    # these small feed-forward networks need nothing it adds. torch warns that the legacy one is deprecated.
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        names = (["obs", "state"], ["action", "state_out"]) if len(example) == 2 else (["obs"], ["action"])
        torch.onnx.export(
            module,
            example,
            str(path),
            **legacy,
            input_names=names[0],
            output_names=names[1],
            dynamic_axes={name: {0: "batch"} for name in names[0] + names[1]},
            opset_version=ONNX_OPSET,
        )
