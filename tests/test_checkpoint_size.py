"""Checkpoint encoding (issue 34): a window of stacked frames keeps each frame once and integer arrays are
compressed where it pays, exactly; the weights and optimizer moments are stored as they are."""

import collections
import hashlib
import io

import numpy as np
import pytest
import torch
from conftest import assert_same_state

from htsrl import Config, train
from htsrl.checkpoint import (
    PACKED,
    encode_state,
    load_checkpoint,
    save_checkpoint,
    stored_sizes,
)
from htsrl.errors import CheckpointError
from htsrl.run_dir import CHECKPOINT as FILENAME


def stacked_window(steps=17, envs=3, stack=4, size=(6, 5), reset_every=(5, 7, 100), seed=0, dtype=np.uint8):
    """What a frame-stacking env writes into a window: row ``t`` of env ``i`` is its last ``stack`` frames,
    and a reset starts a stack of the reset frame repeated (gymnasium's FrameStackObservation)."""
    rng = np.random.default_rng(seed)
    x = np.empty((steps, envs, stack, *size), dtype)
    for i in range(envs):
        frames = []
        for t in range(steps):
            frame = rng.integers(0, 256, size).astype(dtype)
            frames = [frame] * stack if t % reset_every[i] == 0 else [*frames[1:], frame]
            x[t, i] = np.stack(frames)
    return x


def roundtrip(tmp_path, state):
    save_checkpoint(tmp_path, state)
    got = load_checkpoint(tmp_path)
    assert_same_state(got, state)
    return got


def stored(tmp_path) -> dict:
    data = (tmp_path / FILENAME).read_bytes()
    return torch.load(io.BytesIO(data[8 + 32 + 8 :]), weights_only=True)


def test_encoding_round_trips_bitwise(tmp_path):
    frames = stacked_window()
    almost = frames.copy()
    almost[9, 1, 0, 2, 3] ^= 1  # one pixel off: that row is not a shift of the one before and is kept whole
    model = collections.OrderedDict(w=torch.randn(40, 40), b=torch.tensor([-0.0, float("nan"), 1.0]))
    model._metadata = collections.OrderedDict({"": {"version": 1}})
    state = {
        "format": 4,
        "window": {
            "obs": torch.from_numpy(frames),
            "almost": torch.from_numpy(almost),
            "zeros": torch.zeros(9, 3, 4, 16, 16, dtype=torch.uint8),
            "noise": torch.from_numpy(np.random.default_rng(1).integers(0, 256, 8192).astype(np.uint8)),
            "starts": torch.zeros(300, 20, dtype=torch.bool),
            "version": torch.arange(1000, dtype=torch.int64).reshape(100, 10),
            "stack_last": torch.from_numpy(np.ascontiguousarray(np.moveaxis(frames, 2, -1))),  # channels last
            "int16": torch.from_numpy(stacked_window(dtype=np.int16)),
            "values": torch.zeros(5000, dtype=torch.float32),
        },
        "learner": {"model": model, "updates": 3},
        "history": {"actions": [[1, 2, 3], []], "pair": (1, "a"), "raw": b"x" * 10},
        "next_behaviour": None,
    }
    got = roundtrip(tmp_path, state)
    assert type(got["learner"]["model"]) is collections.OrderedDict
    assert got["learner"]["model"]._metadata == model._metadata  # load_state_dict reads it
    window = stored(tmp_path)["window"]
    # env 0 resets every 5 steps, env 1 every 7, env 2 never: 4 + 3 + 1 rows whole, 43 newest frames alone
    assert window["obs"][PACKED] == "frame_stacks"
    assert window["obs"]["stacks"].shape == (8, 4, 6, 5) and window["obs"]["new"].shape == (43, 6, 5)
    assert window["almost"]["stacks"].shape == (9, 4, 6, 5) and window["almost"]["new"].shape == (42, 6, 5)
    assert window["int16"][PACKED] == "frame_stacks" and window["zeros"][PACKED] == "frame_stacks"
    assert window["starts"][PACKED] == "zlib" and window["version"][PACKED] == "zlib"
    assert window["stack_last"][PACKED] == "zlib"  # its rows are not shifted copies along axis 2
    assert isinstance(window["noise"], torch.Tensor)  # incompressible: as it is
    assert isinstance(window["values"], torch.Tensor)  # floating point: as it is


def test_frame_stack_rows_that_only_look_shifted_are_exact(tmp_path):
    """Every row of every env is checked: a window whose rows are shifts only in some envs, steps or pixels
    comes back bitwise."""
    rng = np.random.default_rng(2)
    for seed in range(5):
        frames = stacked_window(steps=12, envs=4, reset_every=tuple(rng.integers(1, 13, 4)), seed=seed)
        flips = rng.integers(0, 2, frames.shape[:2]).astype(bool)
        frames[flips, rng.integers(0, 4), 0, 0] ^= 0x80
        roundtrip(tmp_path, {"obs": torch.from_numpy(frames)})


def test_checkpoints_of_the_previous_file_format_still_load(tmp_path):
    state = {"format": 4, "obs": torch.from_numpy(stacked_window()), "x": [1.5, None]}
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    (tmp_path / FILENAME).write_bytes(
        b"HTSRLCK1" + hashlib.sha256(payload).digest() + len(payload).to_bytes(8, "little") + payload
    )
    assert_same_state(load_checkpoint(tmp_path), state)


def test_an_unknown_encoding_is_refused(tmp_path):
    save_checkpoint(tmp_path, {"x": {PACKED: "from-the-future", "dtype": "uint8", "shape": [1]}})
    with pytest.raises(CheckpointError, match="unknown encoding 'from-the-future'"):
        load_checkpoint(tmp_path)


def test_atari_checkpoint_stores_frames_once_and_compressed(tmp_path):
    """A finished HTS Atari PPO run: the checkpoint holds the weights, the optimizer's moments and the
    behaviour weights as they are, and everything else (the window's stacked frames, above all) in a
    quarter of its bytes or less. Before issue 34 the frames were stored 4 times over, uncompressed."""
    cfg = dict(env="ALE/Breakout-v5", num_envs=4, alpha=16, total_steps=4 * 16 * 2, seed=5, epochs=1, minibatches=2)
    train(Config(**cfg, progress=False, run_dir=str(tmp_path)))
    state = load_checkpoint(tmp_path)
    floats, others = [], []

    def collect(obj):
        if isinstance(obj, torch.Tensor):
            (floats if obj.is_floating_point() else others).append(obj.nbytes)
        elif isinstance(obj, dict):
            for v in obj.values():
                collect(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                collect(v)

    collect(state)
    obs = state["window"]["obs"]
    assert obs.dtype == torch.uint8 and obs.shape == (17, 4, 4, 84, 84)
    size = (tmp_path / FILENAME).stat().st_size
    assert sum(floats) > 3 * 6_000_000  # model, Adam's two moments and the behaviour weights, as they are
    assert size - sum(floats) < sum(others) / 4, (size, sum(floats), sum(others))
    assert stored_sizes(tmp_path)["window.obs"] < obs.nbytes / 8
    assert encode_state(state)["learner"]["model"] is state["learner"]["model"]  # weights: as they are
