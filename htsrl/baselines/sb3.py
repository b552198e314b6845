"""Stable-Baselines3 A2C/PPO on htsrl's own env construction (same preprocessing, same env count,
same rollout length, SB3's NatureCNN/MLP), with SubprocVecEnv, and the rest of htsrl's preset for the
env (learning rate and its decay, clipping, value clipping, advantage normalization, and for the presets
that normalize, ``VecNormalize`` with the same clip). Prints one JSON line with the steady-state rate
(start-up and the first rollouts excluded) and the mean return of the last 100 episodes, from
``VecMonitor`` beneath any normalization: the env's own rewards on MuJoCo and classic control, but on
Atari the rewards of htsrl's env construction (clipped, one life per episode), not the game score htsrl
reports. SB3's ``clip_range_vf`` clips the value loss in SB3's form (the clipped term only), not the
max of the two that the presets cite.

    python -m htsrl.baselines.sb3 --env ALE/Breakout-v5 --algo ppo --num-envs 8 --n-steps 128 --steps 20000
    python -m htsrl.baselines.sb3 --env HalfCheetah-v5 --algo ppo --num-envs 2 --n-steps 1024 --steps 1000000
"""

from __future__ import annotations

import argparse
import json
import time

from htsrl.env_families import default_preset
from htsrl.presets import PRESETS


def _make(env_id: str, index: int):
    def thunk():
        from htsrl.envs import make_env

        return make_env(env_id, index=index)

    return thunk


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--env", required=True)
    p.add_argument("--algo", default="ppo", choices=("ppo", "a2c"))
    p.add_argument("--num-envs", type=int, required=True)
    p.add_argument("--n-steps", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    import torch
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecMonitor, VecNormalize

    torch.set_num_threads(args.threads)
    h = PRESETS[default_preset(args.algo, args.env)]
    venv = monitor = VecMonitor(SubprocVecEnv([_make(args.env, i) for i in range(args.num_envs)], start_method="fork"))
    if h["norm_obs"] or h["norm_reward"]:
        clip = h["norm_clip"]
        venv = VecNormalize(
            venv,
            norm_obs=h["norm_obs"],
            norm_reward=h["norm_reward"],
            clip_obs=clip,
            clip_reward=clip,
            gamma=h["gamma"],
        )
    image = len(venv.observation_space.shape) == 3
    lr = h["lr"]
    learning_rate = (lambda remaining: remaining * lr) if h["lr_decay"] else lr  # SB3's progress_remaining
    policy = "CnnPolicy" if image else "MlpPolicy"
    # the settings both algorithms take, from the same preset htsrl resolved
    common = dict(
        n_steps=args.n_steps,
        learning_rate=learning_rate,
        gamma=h["gamma"],
        ent_coef=h["ent_coef"],
        vf_coef=h["vf_coef"],
        max_grad_norm=h["max_grad_norm"],
        seed=args.seed,
        device=args.device,
        verbose=0,
    )
    if args.algo == "ppo":
        model = PPO(
            policy,
            venv,
            batch_size=args.n_steps * args.num_envs // h["minibatches"],
            n_epochs=h["epochs"],
            gae_lambda=h["gae_lambda"],
            clip_range=h["clip_coef"],
            clip_range_vf=h["clip_coef"] if h["clip_value_loss"] else None,
            normalize_advantage=h["norm_adv"],
            **common,
        )
    else:
        model = A2C(policy, venv, rms_prop_eps=h["optim_eps"], **common)

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.marks: list[tuple[int, float]] = []

        def _on_rollout_start(self) -> None:  # after the previous update: one mark per iteration
            self.marks.append((self.num_timesteps, time.perf_counter()))

        def _on_step(self) -> bool:
            return True

    class Episodes(BaseCallback):
        """The env's own episode returns, as VecMonitor (beneath VecNormalize) reports them."""

        def __init__(self):
            super().__init__()
            self.returns: list[float] = []

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.returns.append(float(info["episode"]["r"]))
            return True

    clock, episodes = Clock(), Episodes()
    t0 = time.perf_counter()
    model.learn(total_timesteps=args.steps, callback=[clock, episodes])
    clock.marks.append((model.num_timesteps, time.perf_counter()))
    monitor.close()
    skip = max(1, len(clock.marks) // 5)
    (s0, w0), (s1, w1) = clock.marks[skip], clock.marks[-1]
    result = {
        "library": "stable-baselines3",
        "algo": args.algo,
        "env": args.env,
        "num_envs": args.num_envs,
        "steps": int(model.num_timesteps),
        "wall_time_s": time.perf_counter() - t0,
        "steady_sps": (s1 - s0) / (w1 - w0),
        "normalize": {"obs": bool(h["norm_obs"]), "reward": bool(h["norm_reward"])},
        "episodes": len(episodes.returns),
        "mean_return_last_100": sum(episodes.returns[-100:]) / len(episodes.returns[-100:])
        if episodes.returns
        else None,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
