"""Hyper-parameter presets, each equal to one published source (which one an env takes by default is its
family's: ``htsrl/env_families.py``).

A flag the user gives always wins; a preset only fills the hyper-parameters the user left unset
(``config.resolve``), and the saved ``config.json`` holds the resolved values. So a preset never has
to deviate from its source "because htsrl needs it": where a run needs something else, give the
flag.

Every preset sets every field in :data:`PRESET_FIELDS`. Each value is the source's own (file and
line below, in :data:`PRESET_SOURCES` and in the comment beside it); a field the source does not
have (e.g. an RMSprop constant for an Adam run, PPO epochs for A2C) is marked *unused*/*htsrl* with
the reason for the value. The commits read were:

- ikostrikov/pytorch-a2c-ppo-acktr-gail @ 41332b78dfb50321c29bade65f9d244387f68a60
- vwxyzjn/cleanrl @ fe8d8a03c41a7ef5b523e2e354bd01c363e786bb
- vwxyzjn/cleanrl @ 016ca33aa70f188ef385082524373ccb6dd14e03 (cleanrl/ppo_continuous_action.py)
- DLR-RM/rl-baselines3-zoo @ 22e3ff2450fd92033f7f032915e1f64894a09584
- DLR-RM/stable-baselines3 @ e05d2dbe6eda0acd0ef2e316e3e4065677add3eb (2.9.0a4)
- IouJenLiu/HTS-RL @ 7972340c765ef45d2bda353a197b78e0b844f2bd
- google-research/football @ 3d9e754720a95621bba6475c4d3b0d56fe919014
- openai/baselines @ ea25b9e8b234e6ee1bca43083f8f3cf974143998
- google-research/seed_rl @ 0e1e0ac9178a670ad1e1463baed92020e88905ec
- facebookresearch/torchbeast @ 0af07b051a2176a8f9fd20c36891ba2bba6bae68
- google-deepmind/scalable_agent @ c63d4f24676aae9611a0456c3b05edc7e77f5c0a (IMPALA's published code)

What the fields mean in htsrl (the sources' forms map onto these as noted per preset):

- ``alpha``: rollout length per env between updates (Kostrikov/CleanRL ``num_steps``, SB3
  ``n_steps``, HTS-RL ``sync_every``); ``num_envs``: environments (``num_processes``, ``n_envs``).
- ``lr_decay``: linear decay from ``lr`` to 0 over the run, ``lr * (1 - update / updates)``
  (Kostrikov ``--use-linear-lr-decay``, CleanRL ``anneal_lr``).
- ``optim_eps``: Adam's or RMSprop's epsilon; ``rmsprop_alpha``: RMSprop's smoothing constant
  (``torch.optim.RMSprop(alpha=...)``); it is not read when ``optimizer == "adam"``.
- ``gae_lambda``: 1.0 gives n-step returns, which is what Kostrikov's and SB3's A2C compute.
- loss = policy + ``vf_coef`` * value - ``ent_coef`` * entropy (entropy is a *bonus*, the mean
  entropy of the policy over the batch). PPO's value loss is ``0.5*(v-R)^2`` (the max with the
  clipped form, clipped by ``clip_coef``, when ``clip_value_loss``); A2C's is ``(R-v)^2`` averaged
  (Kostrikov's ``advantages.pow(2).mean()``; SB3's ``F.mse_loss`` is the same thing).
- ``norm_adv``: PPO advantages normalised over the whole batch (Kostrikov's form; CleanRL normalises
  per minibatch). htsrl's A2C reads none of ``clip_coef``, ``clip_value_loss``, ``epochs``,
  ``minibatches``, ``norm_adv``: it takes one gradient step on the whole window, as the A2C sources
  do; the A2C presets set them to values that say so. IMPALA (``--algo impala``) reads none of them
  either, nor ``--proximal``/``--max-is-weight``; its ``gae_lambda`` is V-trace's lambda (c_t =
  lambda * min(c_bar, rho_t)) and its value loss is ``0.5*(vs-v)^2``, as in IMPALA's code.

This module imports nothing from htsrl, so ``htsrl.config`` can import it.
"""

from __future__ import annotations

from typing import Any

# Every preset sets exactly these.
PRESET_FIELDS: tuple[str, ...] = (
    "num_envs",
    "alpha",
    "lr",
    "lr_decay",
    "optimizer",
    "optim_eps",
    "rmsprop_alpha",
    "gamma",
    "gae_lambda",
    "ent_coef",
    "vf_coef",
    "max_grad_norm",
    "clip_coef",
    "clip_value_loss",
    "epochs",
    "minibatches",
    "norm_adv",
    "norm_obs",
    "norm_reward",
    "norm_clip",
)

_KOSTRIKOV = "github.com/ikostrikov/pytorch-a2c-ppo-acktr-gail"
_HTSRL_AUTHORS = "github.com/IouJenLiu/HTS-RL"
_SEED_RL = "github.com/google-research/seed_rl"
_TORCHBEAST = "github.com/facebookresearch/torchbeast"

# IMPALA's loss in the paper's code (github.com/deepmind/scalable_agent) and in TorchBeast
# (torchbeast/monobeast.py lines 107-125) is a *sum* over the batch's T x B samples; htsrl's, like
# SEED RL's, is a mean. Multiplying a loss by k multiplies its gradient by k, which RMSprop's update
# g / (sqrt(v) + eps) cancels except in eps, and which moves the gradient-norm clip. So the sum form's
# eps and clip equal htsrl's divided by the batch size: the atari-impala preset sets those two so.
IMPALA_ATARI_BATCH = 32 * 20  # the paper's Atari batch: 32 trajectories of 20 steps

PRESET_SOURCES: dict[str, str] = {
    "atari-ppo": (
        f"{_KOSTRIKOV} README.md 'Training / Atari / PPO' (line 93): python main.py --env-name "
        '"PongNoFrameskip-v4" --algo ppo --use-gae --lr 2.5e-4 --clip-param 0.1 --value-loss-coef 0.5 '
        "--num-processes 8 --num-steps 128 --num-mini-batch 4 --log-interval 1 --use-linear-lr-decay "
        "--entropy-coef 0.01; the rest from a2c_ppo_acktr/arguments.py defaults and a2c_ppo_acktr/algo/ppo.py "
        "(Adam, clipped value loss, batch-normalised advantages). Same values as vwxyzjn/cleanrl "
        "cleanrl/ppo_atari.py Args."
    ),
    "atari-a2c": (
        f"{_KOSTRIKOV} README.md 'Training / Atari / A2C' (line 87): python main.py --env-name "
        '"PongNoFrameskip-v4", i.e. every a2c_ppo_acktr/arguments.py default (no --use-gae, no '
        "--use-linear-lr-decay); RMSprop from a2c_ppo_acktr/algo/a2c_acktr.py."
    ),
    "classic-ppo": (
        "github.com/vwxyzjn/cleanrl cleanrl/ppo.py: the Args dataclass defaults (env_id CartPole-v1, lines "
        "41-67) and optim.Adam(..., eps=1e-5) (line 168)."
    ),
    "classic-a2c": (
        "github.com/DLR-RM/rl-baselines3-zoo hyperparams/a2c.yml, entry CartPole-v1 (lines 21-25: n_envs 8, "
        "ent_coef 0.0), with every other value from github.com/DLR-RM/stable-baselines3 "
        "stable_baselines3/a2c/a2c.py A2C.__init__ defaults (lines 70-83) and its RMSprop kwargs "
        "(line 127: alpha=0.99, eps=rms_prop_eps)."
    ),
    "football-ppo": (
        f"{_HTSRL_AUTHORS} scripts/run_ours_*.sh (all eleven academy scripts use the same command: "
        "--use-gae --num-processes 16 --use-linear-lr-decay --clip-param 0.08 --gamma 0.993 "
        "--entropy-coef 0.003 --max-grad-norm 0.64 --lr 0.000343 --ppo-epoch 2 --num-mini-batch 8 "
        "--sync-every 128), a2c_ppo_acktr/arguments.py defaults for the rest and "
        "a2c_ppo_acktr/algo/ppo_aug.py (Adam, clipped value loss, batch-normalised advantages). The "
        "entropy term differs in sign and scale from the authors' code: see the comment on ent_coef. "
        "Those numbers are Google Research Football's own PPO settings "
        "(github.com/google-research/football gfootball/examples/repro_checkpoint_easy.sh)."
    ),
    "atari-impala": (
        "Espeholt et al. 2018, IMPALA (arXiv:1802.01561), appendix table 'Hyperparameters for Atari "
        "experiments' (G.1): batch size 32, unroll length 20, discount 0.99, baseline loss scaling 0.5, "
        "entropy regulariser 0.01, RMSProp momentum 0 and epsilon 0.01, learning rate 0.0006 annealed "
        "linearly to 0, global gradient-norm clip 40; RMSProp's decay 0.99 from the paper's code's default "
        f"(github.com/deepmind/scalable_agent experiment.py: --decay .99, losses summed) as in {_TORCHBEAST} "
        "torchbeast/monobeast.py (--alpha 0.99, line 86), whose summed loss (lines 107-125) is the form "
        "the epsilon and the clip apply to (scaled to htsrl's mean, see IMPALA_ATARI_BATCH)."
    ),
    "football-impala": (
        f"{_SEED_RL} gcp/train_football_checkpoints.sh (SEED RL's V-trace on Google Research Football, "
        "reward 'scoring,checkpoints': batch_size 32, unroll_length 32, discounting 0.997, entropy_cost "
        "0.0007330944745454107, lambda_ 1, learning_rate 0.00012542101122072784), with the rest from "
        "agents/vtrace/learner.py flag defaults (baseline_cost 0.5, v_loss = baseline_cost * 0.5 * "
        "mean(square), no gradient clipping) and football/vtrace_main.py (tf.keras.optimizers.Adam, "
        "constant learning rate)."
    ),
    "mujoco-ppo": (
        "github.com/vwxyzjn/cleanrl cleanrl/ppo_continuous_action.py @ 016ca33a: the Args dataclass defaults "
        "(env_id HalfCheetah-v4, lines 55-81) and optim.Adam(agent.parameters(), lr=args.learning_rate, "
        "eps=1e-5). CleanRL's 1 env x 2048 steps are 2 envs x 1024 steps here (the same 2048-sample batch "
        "and 64-sample minibatches; two envs so the default two executors each own one). Observations and "
        "rewards are normalised as there (make_env, lines 105-108: gymnasium NormalizeObservation and "
        "NormalizeReward, each clipped to +-10), by htsrl.normalization: statistics updated once per window "
        "by the learner, not every step."
    ),
    "pendulum-ppo": (
        "github.com/DLR-RM/rl-baselines3-zoo hyperparams/ppo.yml, entry Pendulum-v1 ('# Tuned': n_envs 4, "
        "n_steps 1024, gae_lambda 0.95, gamma 0.9, n_epochs 10, ent_coef 0.0, learning_rate 1e-3, "
        "clip_range 0.2, use_sde True, sde_sample_freq 4, n_timesteps 1e5), with every other value from "
        "github.com/DLR-RM/stable-baselines3 stable_baselines3/ppo/ppo.py PPO.__init__ defaults (batch_size "
        "64, vf_coef 0.5, max_grad_norm 0.5, normalize_advantage True, clip_range_vf None) and "
        "ActorCriticPolicy's Adam eps=1e-5. htsrl has no gSDE: its Gaussian has a state-independent "
        "log-std (CleanRL's), so use_sde is not followed."
    ),
}

PRESETS: dict[str, dict[str, Any]] = {
    # Kostrikov, README Atari PPO command + arguments.py defaults (a2c_ppo_acktr/arguments.py line numbers).
    # CleanRL's cleanrl/ppo_atari.py defaults are the same numbers (it normalises advantages per
    # minibatch; Kostrikov, and htsrl, over the batch: a2c_ppo_acktr/algo/ppo.py lines 35-37).
    "atari-ppo": dict(
        num_envs=8,  # --num-processes 8
        alpha=128,  # --num-steps 128
        lr=2.5e-4,  # --lr 2.5e-4
        lr_decay=True,  # --use-linear-lr-decay (main.py: lr * (1 - j / num_updates), j from 0)
        optimizer="adam",  # algo/ppo.py line 32: optim.Adam(lr=lr, eps=eps)
        optim_eps=1e-5,  # --eps default 1e-5 (arguments.py line 29)
        rmsprop_alpha=0.99,  # unused by Adam; --alpha default 0.99 (arguments.py line 34)
        gamma=0.99,  # --gamma default (line 39)
        gae_lambda=0.95,  # --use-gae with --gae-lambda default 0.95 (line 49)
        ent_coef=0.01,  # --entropy-coef 0.01; bonus on dist.entropy().mean(), as in htsrl
        vf_coef=0.5,  # --value-loss-coef 0.5; value loss 0.5*max(...) as in htsrl
        max_grad_norm=0.5,  # --max-grad-norm default (line 64)
        clip_coef=0.1,  # --clip-param 0.1 (also clips the value, as in htsrl)
        clip_value_loss=True,  # algo/ppo.py line 18: use_clipped_value_loss=True (main.py keeps it)
        epochs=4,  # --ppo-epoch default 4 (line 86)
        minibatches=4,  # --num-mini-batch 4
        norm_adv=True,  # algo/ppo.py lines 36-37, always on (std + 1e-5; htsrl uses + 1e-8)
        norm_obs=False,  # no normalization in the source
        norm_reward=False,
        norm_clip=10.0,  # not read when both are off
    ),
    # Kostrikov, README Atari A2C command = all arguments.py defaults. His A2C has no LR decay unless
    # --use-linear-lr-decay is given, and the README command does not give it.
    "atari-a2c": dict(
        num_envs=16,  # --num-processes default 16 (arguments.py line 76)
        alpha=5,  # --num-steps default 5 (line 81)
        lr=7e-4,  # --lr default 7e-4 (line 27)
        lr_decay=False,  # --use-linear-lr-decay default False (line 148)
        optimizer="rmsprop",  # algo/a2c_acktr.py line 30: optim.RMSprop(lr, eps=eps, alpha=alpha)
        optim_eps=1e-5,  # --eps default 1e-5 (line 29)
        rmsprop_alpha=0.99,  # --alpha default 0.99 (line 34)
        gamma=0.99,  # --gamma default (line 39)
        gae_lambda=1.0,  # no --use-gae: storage.py compute_returns gives n-step returns = GAE(1)
        ent_coef=0.01,  # --entropy-coef default (line 54); bonus, as in htsrl
        vf_coef=0.5,  # --value-loss-coef default (line 59); value_loss = advantages.pow(2).mean()
        max_grad_norm=0.5,  # --max-grad-norm default (line 64)
        clip_coef=0.2,  # unused by A2C; --clip-param default 0.2 (line 96), kept so the field is set
        clip_value_loss=False,  # unused by A2C, which has no value clipping
        epochs=1,  # A2C: one gradient step per rollout (algo/a2c_acktr.py update)
        minibatches=1,  # A2C: the whole rollout is one batch
        norm_adv=False,  # A2C uses raw advantages (algo/a2c_acktr.py lines 48-51)
        norm_obs=False,  # no normalization in the source
        norm_reward=False,
        norm_clip=10.0,  # not read when both are off
    ),
    # CleanRL cleanrl/ppo.py Args defaults (written for CartPole-v1), exactly. Formulation differences
    # that are not preset fields: CleanRL normalises advantages per minibatch (line 262), htsrl over
    # the batch; CleanRL treats a truncated episode as terminated (next_done = terminations |
    # truncations, no bootstrap), htsrl bootstraps V(final obs) at truncations.
    "classic-ppo": dict(
        num_envs=4,  # num_envs: int = 4 (line 43)
        alpha=128,  # num_steps: int = 128 (line 45)
        lr=2.5e-4,  # learning_rate: float = 2.5e-4 (line 41)
        lr_decay=True,  # anneal_lr: bool = True (line 47), frac = 1 - (iteration - 1) / num_iterations
        optimizer="adam",  # optim.Adam (line 168)
        optim_eps=1e-5,  # eps=1e-5 (line 168)
        rmsprop_alpha=0.99,  # unused by Adam; not in the source (torch's RMSprop default)
        gamma=0.99,  # gamma: float = 0.99 (line 49)
        gae_lambda=0.95,  # gae_lambda: float = 0.95 (line 51)
        ent_coef=0.01,  # ent_coef: float = 0.01 (line 63); bonus, as in htsrl
        vf_coef=0.5,  # vf_coef: float = 0.5 (line 65); value loss 0.5*..., as in htsrl
        max_grad_norm=0.5,  # max_grad_norm: float = 0.5 (line 67)
        clip_coef=0.2,  # clip_coef: float = 0.2 (line 59)
        clip_value_loss=True,  # clip_vloss: bool = True (line 61)
        epochs=4,  # update_epochs: int = 4 (line 55)
        minibatches=4,  # num_minibatches: int = 4 (line 53)
        norm_adv=True,  # norm_adv: bool = True (line 57)
        norm_obs=False,  # no normalization in the source
        norm_reward=False,
        norm_clip=10.0,  # not read when both are off
    ),
    # rl-baselines3-zoo hyperparams/a2c.yml CartPole-v1 (n_envs 8, ent_coef 0.0, n_timesteps 5e5) on
    # top of SB3's A2C defaults (stable_baselines3/a2c/a2c.py). SB3's value loss F.mse_loss(returns,
    # values) is mean((R-v)^2), the same as htsrl's A2C value loss (no 0.5 factor in either); SB3's
    # RMSprop is torch's, with alpha=0.99 and eps=rms_prop_eps=1e-5, as here.
    "classic-a2c": dict(
        num_envs=8,  # a2c.yml CartPole-v1: n_envs: 8
        alpha=5,  # SB3 A2C n_steps=5
        lr=7e-4,  # SB3 A2C learning_rate=7e-4; the zoo entry sets none
        lr_decay=False,  # a constant float (the zoo writes lin_<lr> for decay; this entry has none)
        optimizer="rmsprop",  # SB3 A2C use_rms_prop=True -> th.optim.RMSprop (a2c.py line 126)
        optim_eps=1e-5,  # SB3 A2C rms_prop_eps=1e-5
        rmsprop_alpha=0.99,  # a2c.py line 127: dict(alpha=0.99, eps=rms_prop_eps, weight_decay=0)
        gamma=0.99,  # SB3 A2C gamma=0.99
        gae_lambda=1.0,  # SB3 A2C gae_lambda=1.0 (n-step returns)
        ent_coef=0.0,  # a2c.yml CartPole-v1: ent_coef: 0.0 (also SB3's default)
        vf_coef=0.5,  # SB3 A2C vf_coef=0.5
        max_grad_norm=0.5,  # SB3 A2C max_grad_norm=0.5
        clip_coef=0.2,  # unused by A2C; not in the source, same as atari-a2c
        clip_value_loss=False,  # unused by A2C, which has no value clipping
        epochs=1,  # SB3 A2C.train: one gradient step on the whole rollout
        minibatches=1,  # SB3 A2C.train: rollout_buffer.get(batch_size=None), one batch
        norm_adv=False,  # SB3 A2C normalize_advantage=False
        norm_obs=False,  # no normalization in the source
        norm_reward=False,
        norm_clip=10.0,  # not read when both are off
    ),
    # HTS-RL authors' football PPO (scripts/run_ours_*.sh + a2c_ppo_acktr/arguments.py defaults).
    # These numbers are GRF's tuned PPO settings (gfootball/examples/repro_checkpoint_easy.sh: the same
    # cliprange, gamma, ent_coef, max_grad_norm, lr, num_envs, noptepochs, nminibatches); HTS-RL runs
    # them with a 128-step rollout (GRF: 512) and linear LR decay (GRF: constant), and htsrl follows
    # HTS-RL there.
    "football-ppo": dict(
        num_envs=16,  # N_ENVS=16 -> --num-processes 16
        alpha=128,  # --sync-every 128: the rollout storage is RolloutStorageMA(args.sync_every, ...)
        # (main.py line 70; learner.py num_updates = steps // sync_every // envs);
        # --num-steps (default 512) is not the rollout length in that code
        lr=3.43e-4,  # --lr 0.000343
        lr_decay=True,  # --use-linear-lr-decay (learner.py: update_linear_schedule per sync)
        optimizer="adam",  # algo/ppo_aug.py line 33: optim.Adam(lr=lr, eps=eps)
        optim_eps=1e-5,  # --eps default 1e-5 (arguments.py line 13)
        rmsprop_alpha=0.99,  # unused by Adam; --alpha default 0.99 (arguments.py line 18)
        gamma=0.993,  # --gamma 0.993
        gae_lambda=0.95,  # --use-gae with --gae-lambda default 0.95 (arguments.py line 33)
        # Entropy. The authors' a2c_ppo_acktr/model.py line 60 computes dist_entropy =
        # torch.mean(dist * dist_log), the mean of p*log(p) over the batch and the 19 football actions,
        # i.e. -H/19, and algo/ppo_aug.py lines 85-86 subtract dist_entropy * entropy_coef from the
        # loss: loss += (0.003/19) * H, a tiny entropy *penalty*. In htsrl's form (loss -= ent_coef * H)
        # the authors' code is ent_coef = -0.003/19 = -1.5789e-4. htsrl uses ent_coef = 0.003 as a
        # *bonus* on the true entropy because that is what the number means where it comes from: GRF's
        # repro_checkpoint_easy.sh passes --ent_coef 0.003 to OpenAI baselines ppo2
        # (baselines/ppo2/model.py line 91: loss = pg_loss - entropy * ent_coef + vf_loss * vf_coef,
        # entropy = mean of pd.entropy()), and the authors' own flag is described as the "entropy term
        # coefficient" of Kostrikov's code, where it is a bonus on dist.entropy().mean(). To run the
        # authors' code's term instead, pass --ent-coef -0.00015789.
        ent_coef=0.003,
        vf_coef=0.5,  # --value-loss-coef default 0.5 (arguments.py line 43); value loss 0.5*max(...)
        max_grad_norm=0.64,  # --max-grad-norm 0.64
        clip_coef=0.08,  # --clip-param 0.08 (also clips the value, as in htsrl)
        clip_value_loss=True,  # algo/ppo_aug.py line 19: use_clipped_value_loss=True (main.py keeps it)
        epochs=2,  # --ppo-epoch 2
        minibatches=8,  # --num-mini-batch 8
        norm_adv=True,  # algo/ppo_aug.py lines 37-38, always on (std + 1e-5; htsrl uses + 1e-8)
        norm_obs=False,  # no normalization in the source
        norm_reward=False,
        norm_clip=10.0,  # not read when both are off
    ),
    # IMPALA paper, Atari table (G.1). The paper's 48 actors fill batches of 32 trajectories; an htsrl
    # update learns every env's window, so the batch sets num_envs. Losses are summed in the paper's
    # code and averaged in htsrl: eps and the clip are the paper's divided by the batch (see
    # IMPALA_ATARI_BATCH), which takes the same RMSprop steps.
    "atari-impala": dict(
        num_envs=32,  # batch size 32
        alpha=20,  # unroll length 20
        lr=6e-4,  # learning rate 0.0006
        lr_decay=True,  # "anneal linearly to 0 from beginning to end of training"
        optimizer="rmsprop",  # RMSProp, momentum 0 (torch's RMSprop has momentum 0)
        optim_eps=0.01 / IMPALA_ATARI_BATCH,  # RMSProp epsilon 0.01 on the summed loss
        rmsprop_alpha=0.99,  # not in the table: scalable_agent's --decay default 0.99 (TorchBeast --alpha)
        gamma=0.99,  # discount 0.99
        gae_lambda=1.0,  # V-trace lambda 1: the paper's V-trace (no lambda in its code)
        ent_coef=0.01,  # entropy regulariser 0.01
        vf_coef=0.5,  # baseline loss scaling 0.5, on 0.5 * (vs - V)^2 as in htsrl
        max_grad_norm=40.0 / IMPALA_ATARI_BATCH,  # clip global gradient norm 40 on the summed loss
        clip_coef=0.2,  # unused by IMPALA; the same value as the A2C presets, kept so the field is set
        clip_value_loss=False,  # unused by IMPALA, which has no value clipping
        epochs=1,  # IMPALA: one gradient step per batch
        minibatches=1,  # IMPALA: the whole batch is one minibatch
        norm_adv=False,  # IMPALA uses the V-trace advantages as they are
        norm_obs=False,  # no normalization in the source
        norm_reward=False,
        norm_clip=10.0,  # not read when both are off
    ),
    # SEED RL, V-trace on football (gcp/train_football_checkpoints.sh; htsrl's football reward is
    # scoring,checkpoints too). SEED's learner averages over the [T, B] batch like htsrl.
    "football-impala": dict(
        num_envs=32,  # batch_size 32 (trajectories per update; SEED runs 200 actors to fill them)
        alpha=32,  # unroll_length 32
        lr=0.00012542101122072784,  # learning_rate
        lr_decay=False,  # football/vtrace_main.py: learning_rate_fn = lambda iteration: FLAGS.learning_rate
        optimizer="adam",  # football/vtrace_main.py: tf.keras.optimizers.Adam(FLAGS.learning_rate)
        optim_eps=1e-7,  # not in the source: tf.keras Adam's default epsilon (1e-7)
        rmsprop_alpha=0.99,  # unused by Adam; torch's RMSprop default
        gamma=0.997,  # discounting 0.997
        gae_lambda=1.0,  # lambda_ 1 (SEED: cs = lambda_ * min(1, rho), as htsrl)
        ent_coef=0.0007330944745454107,  # entropy_cost; learner.py: entropy_cost * -mean(entropy), a bonus
        vf_coef=0.5,  # learner.py baseline_cost default .5, on 0.5 * mean(square(vs - V)) as in htsrl
        max_grad_norm=float("inf"),  # learner.py clips no gradient
        clip_coef=0.2,  # unused by IMPALA; kept so the field is set
        clip_value_loss=False,  # unused by IMPALA, which has no value clipping
        epochs=1,  # one gradient step per batch (learner.py)
        minibatches=1,  # the whole batch
        norm_adv=False,  # the V-trace advantages as they are
        norm_obs=False,  # no normalization in the source
        norm_reward=False,
        norm_clip=10.0,  # not read when both are off
    ),
    # CleanRL cleanrl/ppo_continuous_action.py Args defaults (written for MuJoCo, env_id HalfCheetah-v4),
    # for MuJoCo ids, with its observation and reward normalization (make_env, lines 105-108; htsrl's
    # statistics move once per window, see htsrl/normalization.py). Not followed: its batch of 1 env x
    # 2048 steps (here 2 x 1024, the same batch). CleanRL clips actions to the bounds with
    # gym.wrappers.ClipAction, as htsrl does at the env; it treats truncation as termination (no
    # bootstrap), htsrl bootstraps V(final obs); it normalises advantages per minibatch, htsrl over the
    # batch.
    "mujoco-ppo": dict(
        num_envs=2,  # num_envs: int = 1 (line 57); 2 here so the default 2 executors each own one env
        alpha=1024,  # num_steps: int = 2048 (line 59): 2 envs x 1024 = CleanRL's 2048-sample batch
        lr=3e-4,  # learning_rate: float = 3e-4 (line 55)
        lr_decay=True,  # anneal_lr: bool = True (line 61)
        optimizer="adam",  # optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
        optim_eps=1e-5,  # eps=1e-5 (same line)
        rmsprop_alpha=0.99,  # unused by Adam; not in the source (torch's RMSprop default)
        gamma=0.99,  # gamma: float = 0.99 (line 63)
        gae_lambda=0.95,  # gae_lambda: float = 0.95 (line 65)
        ent_coef=0.0,  # ent_coef: float = 0.0 (line 77)
        vf_coef=0.5,  # vf_coef: float = 0.5 (line 79); value loss 0.5*..., as in htsrl
        max_grad_norm=0.5,  # max_grad_norm: float = 0.5 (line 81)
        clip_coef=0.2,  # clip_coef: float = 0.2 (line 73)
        clip_value_loss=True,  # clip_vloss: bool = True (line 75)
        epochs=10,  # update_epochs: int = 10 (line 69)
        minibatches=32,  # num_minibatches: int = 32 (line 67): minibatches of 64 samples
        norm_adv=True,  # norm_adv: bool = True (line 71)
        norm_obs=True,  # gym.wrappers.NormalizeObservation(env) (line 105)
        norm_reward=True,  # gym.wrappers.NormalizeReward(env, gamma=gamma) (line 107)
        norm_clip=10.0,  # np.clip(obs, -10, 10) and np.clip(reward, -10, 10) (lines 106, 108)
    ),
    # rl-baselines3-zoo hyperparams/ppo.yml Pendulum-v1 on top of SB3's PPO defaults, for Pendulum-v1.
    # Not followed: use_sde True / sde_sample_freq 4 (gSDE, state-dependent exploration, which htsrl
    # does not have; its Gaussian's log-std is a learned vector, as in CleanRL).
    "pendulum-ppo": dict(
        num_envs=4,  # ppo.yml Pendulum-v1: n_envs: 4
        alpha=1024,  # ppo.yml Pendulum-v1: n_steps: 1024
        lr=1e-3,  # ppo.yml Pendulum-v1: learning_rate: !!float 1e-3
        lr_decay=False,  # a constant float (the zoo writes lin_<lr> for decay; this entry has none)
        optimizer="adam",  # SB3 ActorCriticPolicy: optimizer_class=th.optim.Adam
        optim_eps=1e-5,  # SB3 ActorCriticPolicy: optimizer_kwargs["eps"] = 1e-5 for Adam
        rmsprop_alpha=0.99,  # unused by Adam; not in the source (torch's RMSprop default)
        gamma=0.9,  # ppo.yml Pendulum-v1: gamma: 0.9
        gae_lambda=0.95,  # ppo.yml Pendulum-v1: gae_lambda: 0.95
        ent_coef=0.0,  # ppo.yml Pendulum-v1: ent_coef: 0.0
        vf_coef=0.5,  # SB3 PPO vf_coef=0.5
        max_grad_norm=0.5,  # SB3 PPO max_grad_norm=0.5
        clip_coef=0.2,  # ppo.yml Pendulum-v1: clip_range: 0.2
        clip_value_loss=False,  # SB3 PPO clip_range_vf=None: no value clipping
        epochs=10,  # ppo.yml Pendulum-v1: n_epochs: 10
        minibatches=64,  # SB3 PPO batch_size=64: 4 envs x 1024 steps / 64
        norm_adv=True,  # SB3 PPO normalize_advantage=True (per minibatch there; over the batch in htsrl)
        norm_obs=False,  # no normalization in the source
        norm_reward=False,
        norm_clip=10.0,  # not read when both are off
    ),
}
