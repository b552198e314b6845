"""``htsrl eval DIR``: play the saved policy for K episodes on seeds disjoint from training and report
the true score (no episodic life, no reward clipping); ``--video`` records one episode as MP4."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from htsrl.config import Config, ConfigError
from htsrl.envs import EPISODE_KEY, make_env_set, probe_env
from htsrl.nn import build_model

_EVAL_KEY = 4  # spawn key of evaluation seeds; training uses 0..3 (see engine/streams.py)


def eval_seed(seed: int, episode: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=(_EVAL_KEY, episode)).generate_state(1)[0])


def load_policy(run_dir: Path):
    cfg_path, model_path = run_dir / "config.json", run_dir / "model.pt"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir} has no config.json: not an htsrl run directory")
    cfg = Config.from_dict(json.loads(cfg_path.read_text()))
    info = probe_env(cfg.env, cfg.env_kwargs, cfg.env_backend)
    model = build_model(info.obs_shape, info.num_actions)
    if model_path.is_file():
        state = torch.load(model_path, weights_only=True)
    else:  # an unfinished run: take the weights of its last checkpoint
        from htsrl.checkpoint import load_checkpoint
        state = load_checkpoint(run_dir)["learner"]["model"]
    model.load_state_dict(state)
    model.eval()
    return cfg, model


def evaluate(run_dir: str | Path, episodes: int = 10, greedy: bool = False, video: str | Path | None = None,
             max_steps: int = 100_000) -> dict:
    if episodes <= 0:
        raise ConfigError(f"--episodes must be positive, got {episodes}")
    run_dir = Path(run_dir)
    cfg, model = load_policy(run_dir)
    kwargs = dict(cfg.env_kwargs)
    if video is not None:
        kwargs["render_mode"] = "rgb_array"
    env_set = make_env_set(cfg.env, kwargs, cfg.env_backend, range(1), training=False)  # the run's backend
    env = env_set.envs[0]
    generator = torch.Generator().manual_seed(eval_seed(cfg.seed, episodes + 1))  # action sampling
    scores, score_diffs, lengths = [], [], []
    writer = None
    for ep in range(episodes):
        obs, _ = env.reset(seed=eval_seed(cfg.seed, ep))
        record = video is not None and ep == 0
        for _ in range(max_steps):
            if record:
                writer = _write_frame(writer, env.render(), Path(video))
            with torch.inference_mode():
                logits, _ = model(torch.as_tensor(np.asarray(obs)).unsqueeze(0))
            if greedy:
                action = int(logits.argmax(-1))
            else:
                action = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
            obs, _, terminated, truncated, info = env.step(action)
            if EPISODE_KEY in info:  # the real end of the game (not a lost life)
                scores.append(info[EPISODE_KEY]["r"])
                lengths.append(info[EPISODE_KEY]["l"])
                if info[EPISODE_KEY]["s"] is not None:
                    score_diffs.append(info[EPISODE_KEY]["s"])
                break
            if terminated or truncated:
                obs, _ = env.reset()
        else:
            raise RuntimeError(f"episode {ep} did not end within {max_steps} steps")
        if record and writer is not None:
            writer.release()
            writer = None
    env_set.close()
    result = {"run_dir": str(run_dir), "env": cfg.env, "episodes": episodes, "greedy": greedy,
              "mean_score": float(np.mean(scores)), "std_score": float(np.std(scores)),
              "mean_length": float(np.mean(lengths)), "scores": scores}
    if score_diffs:
        result["mean_score_difference"] = float(np.mean(score_diffs))
    if video is not None:
        result["video"] = str(video)
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2))
    return result


def _write_frame(writer, frame, path: Path):
    import cv2
    frame = np.asarray(frame)
    if writer is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        h, w = frame.shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"cannot write video {path} (OpenCV without an MP4 encoder?)")
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return writer

