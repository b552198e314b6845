"""Stable-Baselines3 A2C/PPO on htsrl's own env construction (same preprocessing, same env count,
same rollout length, SB3's NatureCNN/MLP), with SubprocVecEnv. Prints one JSON line with the
steady-state rate (start-up and the first rollouts excluded).

    python -m htsrl.baselines.sb3 --env ALE/Breakout-v5 --algo ppo --num-envs 8 --n-steps 128 --steps 20000
"""

from __future__ import annotations

import argparse
import json
import time

from htsrl.presets import PRESETS, default_preset


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
    from stable_baselines3.common.vec_env import SubprocVecEnv

    torch.set_num_threads(args.threads)
    h = PRESETS[default_preset(args.algo, args.env)]
    venv = SubprocVecEnv([_make(args.env, i) for i in range(args.num_envs)], start_method="fork")
    image = len(venv.observation_space.shape) == 3
    policy = "CnnPolicy" if image else "MlpPolicy"
    if args.algo == "ppo":
        model = PPO(
            policy,
            venv,
            n_steps=args.n_steps,
            batch_size=args.n_steps * args.num_envs // h["minibatches"],
            n_epochs=h["epochs"],
            learning_rate=h["lr"],
            gamma=h["gamma"],
            gae_lambda=h["gae_lambda"],
            clip_range=h["clip_coef"],
            ent_coef=h["ent_coef"],
            vf_coef=h["vf_coef"],
            max_grad_norm=h["max_grad_norm"],
            seed=args.seed,
            device=args.device,
            verbose=0,
        )
    else:
        model = A2C(
            policy,
            venv,
            n_steps=args.n_steps,
            learning_rate=h["lr"],
            gamma=h["gamma"],
            ent_coef=h["ent_coef"],
            vf_coef=h["vf_coef"],
            max_grad_norm=h["max_grad_norm"],
            rms_prop_eps=h["optim_eps"],
            seed=args.seed,
            device=args.device,
            verbose=0,
        )

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.marks: list[tuple[int, float]] = []

        def _on_rollout_start(self) -> None:  # after the previous update: one mark per iteration
            self.marks.append((self.num_timesteps, time.perf_counter()))

        def _on_step(self) -> bool:
            return True

    clock = Clock()
    t0 = time.perf_counter()
    model.learn(total_timesteps=args.steps, callback=clock)
    clock.marks.append((model.num_timesteps, time.perf_counter()))
    venv.close()
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
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
