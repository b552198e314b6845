"""Each preset pinned to the source it cites.

The dicts below are written from the source files themselves (repository, commit and path in each
comment; the values in htsrl's field names, the source's name beside each). A preset must equal its
source on every field the source has; a field the source lacks must be listed in ``NOT_IN_SOURCE``
with the value and the reason, so no preset can drift from its source silently.
"""

from __future__ import annotations

import ast
import inspect

import pytest
import torch

import htsrl.env_families
import htsrl.presets
from htsrl.env_families import default_preset
from htsrl.presets import PRESET_FIELDS, PRESET_SOURCES, PRESETS

FIELDS = (
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

# ikostrikov/pytorch-a2c-ppo-acktr-gail @ 41332b78, README.md line 93 (Atari PPO command):
#   --algo ppo --use-gae --lr 2.5e-4 --clip-param 0.1 --value-loss-coef 0.5 --num-processes 8
#   --num-steps 128 --num-mini-batch 4 --log-interval 1 --use-linear-lr-decay --entropy-coef 0.01
# other values: a2c_ppo_acktr/arguments.py defaults; a2c_ppo_acktr/algo/ppo.py (Adam, line 32;
# use_clipped_value_loss=True, line 18; advantages normalised, lines 36-37).
KOSTRIKOV_ATARI_PPO = dict(
    num_envs=8,  # --num-processes 8
    alpha=128,  # --num-steps 128
    lr=2.5e-4,  # --lr 2.5e-4
    lr_decay=True,  # --use-linear-lr-decay
    optimizer="adam",  # algo/ppo.py: optim.Adam
    optim_eps=1e-5,  # arguments.py --eps default
    rmsprop_alpha=0.99,  # arguments.py --alpha default (not read by Adam)
    gamma=0.99,  # arguments.py --gamma default
    gae_lambda=0.95,  # --use-gae, arguments.py --gae-lambda default
    ent_coef=0.01,  # --entropy-coef 0.01
    vf_coef=0.5,  # --value-loss-coef 0.5
    max_grad_norm=0.5,  # arguments.py --max-grad-norm default
    clip_coef=0.1,  # --clip-param 0.1
    clip_value_loss=True,  # algo/ppo.py use_clipped_value_loss=True
    epochs=4,  # arguments.py --ppo-epoch default
    minibatches=4,  # --num-mini-batch 4
    norm_adv=True,  # algo/ppo.py update(): always
    norm_obs=False,  # no observation normalization in the source
    norm_reward=False,  # no reward normalization in the source
)

# vwxyzjn/cleanrl @ fe8d8a03, cleanrl/ppo_atari.py Args defaults and optim.Adam(eps=1e-5) (line 185).
# (Cross-check: the same numbers as Kostrikov's Atari PPO command.)
CLEANRL_PPO_ATARI = dict(
    num_envs=8,  # num_envs
    alpha=128,  # num_steps
    lr=2.5e-4,  # learning_rate
    lr_decay=True,  # anneal_lr
    optimizer="adam",  # optim.Adam
    optim_eps=1e-5,  # eps=1e-5
    gamma=0.99,  # gamma
    gae_lambda=0.95,  # gae_lambda
    ent_coef=0.01,  # ent_coef
    vf_coef=0.5,  # vf_coef
    max_grad_norm=0.5,  # max_grad_norm
    clip_coef=0.1,  # clip_coef
    clip_value_loss=True,  # clip_vloss
    epochs=4,  # update_epochs
    minibatches=4,  # num_minibatches
    norm_adv=True,  # norm_adv (per minibatch there; over the batch in Kostrikov and htsrl)
    norm_obs=False,  # no observation normalization in the source
    norm_reward=False,  # no reward normalization in the source
)

# ikostrikov/pytorch-a2c-ppo-acktr-gail @ 41332b78, README.md line 87 (Atari A2C command):
#   python main.py --env-name "PongNoFrameskip-v4"   -> every a2c_ppo_acktr/arguments.py default
# a2c_ppo_acktr/algo/a2c_acktr.py: optim.RMSprop(lr, eps=eps, alpha=alpha); one step on the whole
# rollout with raw advantages; value_loss = advantages.pow(2).mean().
KOSTRIKOV_ATARI_A2C = dict(
    num_envs=16,  # --num-processes default 16
    alpha=5,  # --num-steps default 5
    lr=7e-4,  # --lr default 7e-4
    lr_decay=False,  # --use-linear-lr-decay default False (not given by the command)
    optimizer="rmsprop",  # algo/a2c_acktr.py: optim.RMSprop
    optim_eps=1e-5,  # --eps default 1e-5
    rmsprop_alpha=0.99,  # --alpha default 0.99
    gamma=0.99,  # --gamma default 0.99
    gae_lambda=1.0,  # --use-gae not given: n-step returns (storage.py compute_returns)
    ent_coef=0.01,  # --entropy-coef default 0.01
    vf_coef=0.5,  # --value-loss-coef default 0.5
    max_grad_norm=0.5,  # --max-grad-norm default 0.5
    clip_coef=0.2,  # --clip-param default 0.2 (not read by A2C)
    clip_value_loss=False,  # A2C has no value clipping
    epochs=1,  # A2C: one update per rollout
    minibatches=1,  # A2C: the whole rollout
    norm_adv=False,  # A2C: raw advantages
    norm_obs=False,  # no observation normalization in the source
    norm_reward=False,  # no reward normalization in the source
)

# vwxyzjn/cleanrl @ fe8d8a03, cleanrl/ppo.py Args defaults (lines 41-67; env_id "CartPole-v1") and
# optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5) (line 168).
CLEANRL_PPO = dict(
    num_envs=4,  # num_envs: int = 4
    alpha=128,  # num_steps: int = 128
    lr=2.5e-4,  # learning_rate: float = 2.5e-4
    lr_decay=True,  # anneal_lr: bool = True
    optimizer="adam",  # optim.Adam
    optim_eps=1e-5,  # eps=1e-5
    gamma=0.99,  # gamma: float = 0.99
    gae_lambda=0.95,  # gae_lambda: float = 0.95
    ent_coef=0.01,  # ent_coef: float = 0.01
    vf_coef=0.5,  # vf_coef: float = 0.5
    max_grad_norm=0.5,  # max_grad_norm: float = 0.5
    clip_coef=0.2,  # clip_coef: float = 0.2
    clip_value_loss=True,  # clip_vloss: bool = True
    epochs=4,  # update_epochs: int = 4
    minibatches=4,  # num_minibatches: int = 4
    norm_adv=True,  # norm_adv: bool = True
    norm_obs=False,  # no observation normalization in the source
    norm_reward=False,  # no reward normalization in the source
)

# DLR-RM/rl-baselines3-zoo @ 22e3ff24, hyperparams/a2c.yml lines 21-25:
#   CartPole-v1: {n_envs: 8, n_timesteps: 5e5, policy: 'MlpPolicy', ent_coef: 0.0}
# + DLR-RM/stable-baselines3 @ e05d2dbe (2.9.0a4), stable_baselines3/a2c/a2c.py A2C.__init__ defaults
# (lines 70-83) and RMSprop kwargs dict(alpha=0.99, eps=rms_prop_eps, weight_decay=0) (line 127);
# A2C.train: one gradient step on rollout_buffer.get(batch_size=None).
SB3_ZOO_A2C_CARTPOLE = dict(
    num_envs=8,  # a2c.yml n_envs: 8
    alpha=5,  # n_steps=5
    lr=7e-4,  # learning_rate=7e-4 (constant: the entry has no lin_ schedule)
    lr_decay=False,
    optimizer="rmsprop",  # use_rms_prop=True
    optim_eps=1e-5,  # rms_prop_eps=1e-5
    rmsprop_alpha=0.99,  # alpha=0.99
    gamma=0.99,  # gamma=0.99
    gae_lambda=1.0,  # gae_lambda=1.0
    ent_coef=0.0,  # a2c.yml ent_coef: 0.0
    vf_coef=0.5,  # vf_coef=0.5
    max_grad_norm=0.5,  # max_grad_norm=0.5
    clip_value_loss=False,  # A2C has no value clipping
    epochs=1,  # one gradient step per rollout
    minibatches=1,  # batch_size=None: the whole rollout
    norm_adv=False,  # normalize_advantage=False
    norm_obs=False,  # no observation normalization in the source
    norm_reward=False,  # no reward normalization in the source
)

# IouJenLiu/HTS-RL @ 7972340c, scripts/run_ours_*.sh (the same command in all eleven):
#   --use-gae --num-processes 16 (N_ENVS=16) --use-linear-lr-decay --clip-param 0.08 --gamma 0.993
#   --entropy-coef 0.003 --max-grad-norm 0.64 --lr 0.000343 --ppo-epoch 2 --num-mini-batch 8
#   --sync-every 128
# + a2c_ppo_acktr/arguments.py defaults; a2c_ppo_acktr/algo/ppo_aug.py (Adam, line 33;
# use_clipped_value_loss=True, line 19; advantages normalised, lines 37-38); the rollout storage is
# RolloutStorageMA(args.sync_every, ...) (main.py line 70).
# ent_coef is left out: the authors' 0.003 multiplies a different quantity (see the entropy tests).
HTSRL_AUTHORS_FOOTBALL_PPO = dict(
    num_envs=16,  # --num-processes 16
    alpha=128,  # --sync-every 128
    lr=3.43e-4,  # --lr 0.000343
    lr_decay=True,  # --use-linear-lr-decay
    optimizer="adam",  # algo/ppo_aug.py: optim.Adam
    optim_eps=1e-5,  # arguments.py --eps default
    rmsprop_alpha=0.99,  # arguments.py --alpha default (not read by Adam)
    gamma=0.993,  # --gamma 0.993
    gae_lambda=0.95,  # --use-gae, arguments.py --gae-lambda default 0.95
    vf_coef=0.5,  # arguments.py --value-loss-coef default 0.5
    max_grad_norm=0.64,  # --max-grad-norm 0.64
    clip_coef=0.08,  # --clip-param 0.08
    clip_value_loss=True,  # algo/ppo_aug.py use_clipped_value_loss=True
    epochs=2,  # --ppo-epoch 2
    minibatches=8,  # --num-mini-batch 8
    norm_adv=True,  # algo/ppo_aug.py update(): always
    norm_obs=False,  # no observation normalization in the source
    norm_reward=False,  # no reward normalization in the source
)
HTSRL_AUTHORS_ENTROPY_COEF = 0.003  # --entropy-coef 0.003, applied to mean(p * log p) (model.py line 60)
FOOTBALL_ACTIONS = 19  # gfootball's default action set (action_set_v1)

# google-research/football @ 3d9e7547, gfootball/examples/repro_checkpoint_easy.sh (OpenAI baselines
# ppo2, whose loss is pg_loss - entropy * ent_coef + vf_loss * vf_coef: the entropy is a bonus).
GRF_REPRO_CHECKPOINT_EASY = dict(
    clip_coef=0.08,  # --cliprange 0.08
    gamma=0.993,  # --gamma 0.993
    ent_coef=0.003,  # --ent_coef 0.003
    max_grad_norm=0.64,  # --max_grad_norm 0.64
    lr=3.43e-4,  # --lr 0.000343
    num_envs=16,  # --num_envs 16
    epochs=2,  # --noptepochs 2
    minibatches=8,  # --nminibatches 8
    alpha=512,  # --nsteps 512 (HTS-RL: --sync-every 128)
    lr_decay=False,  # ppo2: a float lr is constfn(lr) (HTS-RL: --use-linear-lr-decay)
)

# Espeholt et al. 2018, IMPALA (arXiv:1802.01561), appendix table "Hyperparameters for Atari experiments".
# The paper's code (deepmind/scalable_agent experiment.py) and TorchBeast (torchbeast/monobeast.py lines
# 107-125) sum the loss over the batch; htsrl averages it, so RMSProp's epsilon and the gradient clip,
# the two numbers a loss's scale reaches, are the table's divided by the batch (IMPALA_SUM_FORM_BATCH).
IMPALA_SUM_FORM_BATCH = 32 * 20
IMPALA_PAPER_ATARI = dict(
    num_envs=32,  # batch size 32
    alpha=20,  # unroll length 20
    lr=6e-4,  # learning rate 0.0006
    lr_decay=True,  # anneal linearly to 0 from beginning to end of training
    optimizer="rmsprop",  # RMSProp (momentum 0)
    optim_eps=0.01 / IMPALA_SUM_FORM_BATCH,  # RMSProp epsilon 0.01 on the summed loss
    gamma=0.99,  # discount 0.99
    gae_lambda=1.0,  # V-trace without lambda (lambda = 1)
    ent_coef=0.01,  # entropy regulariser 0.01
    vf_coef=0.5,  # baseline loss scaling 0.5 (on 0.5 * sum of squares)
    max_grad_norm=40.0 / IMPALA_SUM_FORM_BATCH,  # clip global gradient norm 40 on the summed loss
    clip_value_loss=False,  # IMPALA has no value clipping
    epochs=1,  # one update per batch
    minibatches=1,  # the whole batch
    norm_adv=False,  # V-trace advantages as they are
    norm_obs=False,  # no observation normalization in the source
    norm_reward=False,  # no reward normalization in the source
)

# google-research/seed_rl @ 0e1e0ac9, gcp/train_football_checkpoints.sh (lines 58-91) with
# agents/vtrace/learner.py flag defaults (baseline_cost .5, line 56; v_loss = baseline_cost * 0.5 *
# mean(square), line 116; no gradient clipping) and football/vtrace_main.py (Adam, constant lr, lines 43-44).
SEED_RL_FOOTBALL_VTRACE = dict(
    num_envs=32,  # batch_size 32
    alpha=32,  # unroll_length 32
    lr=0.00012542101122072784,  # learning_rate
    lr_decay=False,  # learning_rate_fn = lambda iteration: FLAGS.learning_rate
    optimizer="adam",  # tf.keras.optimizers.Adam
    gamma=0.997,  # discounting 0.997
    gae_lambda=1.0,  # lambda_ 1
    ent_coef=0.0007330944745454107,  # entropy_cost
    vf_coef=0.5,  # baseline_cost default .5
    max_grad_norm=float("inf"),  # no gradient clipping
    clip_value_loss=False,  # V-trace has no value clipping
    epochs=1,  # one update per batch
    minibatches=1,  # the whole batch
    norm_adv=False,  # V-trace advantages as they are
    norm_obs=False,  # no observation normalization in the source
    norm_reward=False,  # no reward normalization in the source
)

# vwxyzjn/cleanrl @ 016ca33a, cleanrl/ppo_continuous_action.py Args defaults (lines 55-81) and
# optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5). num_envs 1 and num_steps 2048 are
# not followed (2 x 1024 here, the same batch): see NOT_IN_SOURCE and test_mujoco_ppo_keeps_cleanrls_batch.
CLEANRL_PPO_CONTINUOUS = dict(
    lr=3e-4,  # learning_rate: float = 3e-4
    lr_decay=True,  # anneal_lr: bool = True
    optimizer="adam",  # optim.Adam
    optim_eps=1e-5,  # eps=1e-5
    gamma=0.99,  # gamma: float = 0.99
    gae_lambda=0.95,  # gae_lambda: float = 0.95
    ent_coef=0.0,  # ent_coef: float = 0.0
    vf_coef=0.5,  # vf_coef: float = 0.5
    max_grad_norm=0.5,  # max_grad_norm: float = 0.5
    clip_coef=0.2,  # clip_coef: float = 0.2
    clip_value_loss=True,  # clip_vloss: bool = True
    epochs=10,  # update_epochs: int = 10
    minibatches=32,  # num_minibatches: int = 32
    norm_adv=True,  # norm_adv: bool = True
    norm_obs=True,  # gym.wrappers.NormalizeObservation (make_env, line 105)
    norm_reward=True,  # gym.wrappers.NormalizeReward(env, gamma=gamma) (line 107)
    norm_clip=10.0,  # np.clip(obs, -10, 10), np.clip(reward, -10, 10) (lines 106, 108)
)
CLEANRL_PPO_CONTINUOUS_BATCH = 1 * 2048  # num_envs: int = 1, num_steps: int = 2048

# DLR-RM/rl-baselines3-zoo hyperparams/ppo.yml, Pendulum-v1 ('# Tuned'):
#   {n_envs: 4, n_timesteps: 1e5, policy: 'MlpPolicy', n_steps: 1024, gae_lambda: 0.95, gamma: 0.9,
#    n_epochs: 10, ent_coef: 0.0, learning_rate: 1e-3, clip_range: 0.2, use_sde: True, sde_sample_freq: 4}
# + stable_baselines3/ppo/ppo.py PPO.__init__ defaults (batch_size 64, vf_coef 0.5, max_grad_norm 0.5,
# normalize_advantage True, clip_range_vf None) and ActorCriticPolicy's Adam eps=1e-5. use_sde is not
# followed: htsrl has no gSDE.
SB3_ZOO_PPO_PENDULUM = dict(
    num_envs=4,  # n_envs: 4
    alpha=1024,  # n_steps: 1024
    lr=1e-3,  # learning_rate: 1e-3 (constant)
    lr_decay=False,
    optimizer="adam",  # ActorCriticPolicy optimizer_class=th.optim.Adam
    optim_eps=1e-5,  # optimizer_kwargs["eps"] = 1e-5
    gamma=0.9,  # gamma: 0.9
    gae_lambda=0.95,  # gae_lambda: 0.95
    ent_coef=0.0,  # ent_coef: 0.0
    vf_coef=0.5,  # vf_coef=0.5
    max_grad_norm=0.5,  # max_grad_norm=0.5
    clip_coef=0.2,  # clip_range: 0.2
    clip_value_loss=False,  # clip_range_vf=None
    epochs=10,  # n_epochs: 10
    minibatches=64,  # batch_size=64: 4 * 1024 / 64
    norm_adv=True,  # normalize_advantage=True
    norm_obs=False,  # no observation normalization in the source
    norm_reward=False,  # no reward normalization in the source
)

SOURCES = {
    "mujoco-ppo": [CLEANRL_PPO_CONTINUOUS],
    "pendulum-ppo": [SB3_ZOO_PPO_PENDULUM],
    "atari-ppo": [KOSTRIKOV_ATARI_PPO, CLEANRL_PPO_ATARI],
    "atari-a2c": [KOSTRIKOV_ATARI_A2C],
    "classic-ppo": [CLEANRL_PPO],
    "classic-a2c": [SB3_ZOO_A2C_CARTPOLE],
    "football-ppo": [HTSRL_AUTHORS_FOOTBALL_PPO],
    "atari-impala": [IMPALA_PAPER_ATARI],
    "football-impala": [SEED_RL_FOOTBALL_VTRACE],
}

# Fields a preset's source does not have: the value htsrl sets and why.
NOT_IN_SOURCE = {
    ("mujoco-ppo", "num_envs"): (2, "CleanRL 1 env x 2048 steps; 2 x 1024 here (the default 2 executors)"),
    ("mujoco-ppo", "alpha"): (1024, "CleanRL num_steps 2048 with 1 env; the same 2048-sample batch"),
    ("mujoco-ppo", "rmsprop_alpha"): (0.99, "not read by Adam; torch's RMSprop default"),
    ("pendulum-ppo", "rmsprop_alpha"): (0.99, "not read by Adam; torch's RMSprop default"),
    ("classic-ppo", "rmsprop_alpha"): (0.99, "not read by Adam; torch's RMSprop default"),
    ("classic-a2c", "clip_coef"): (0.2, "not read by A2C; same as atari-a2c"),
    ("football-ppo", "ent_coef"): (0.003, "GRF's bonus value; see test_football_entropy_*"),
    ("atari-impala", "rmsprop_alpha"): (0.99, "not in the table; scalable_agent --decay .99, TorchBeast --alpha"),
    ("atari-impala", "clip_coef"): (0.2, "not read by IMPALA; same as the A2C presets"),
    ("football-impala", "optim_eps"): (1e-7, "tf.keras Adam's default epsilon"),
    ("football-impala", "rmsprop_alpha"): (0.99, "not read by Adam; torch's RMSprop default"),
    ("football-impala", "clip_coef"): (0.2, "not read by IMPALA; same as the A2C presets"),
    ("atari-ppo", "norm_clip"): (10.0, "not read: the source normalizes nothing"),
    ("atari-a2c", "norm_clip"): (10.0, "not read: the source normalizes nothing"),
    ("classic-ppo", "norm_clip"): (10.0, "not read: the source normalizes nothing"),
    ("classic-a2c", "norm_clip"): (10.0, "not read: the source normalizes nothing"),
    ("football-ppo", "norm_clip"): (10.0, "not read: the source normalizes nothing"),
    ("atari-impala", "norm_clip"): (10.0, "not read: the source normalizes nothing"),
    ("football-impala", "norm_clip"): (10.0, "not read: the source normalizes nothing"),
    ("pendulum-ppo", "norm_clip"): (10.0, "not read: the source normalizes nothing"),
}


def test_the_field_list_is_the_one_config_fills():
    assert PRESET_FIELDS == FIELDS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_sets_every_field_with_the_right_type(name):
    p = PRESETS[name]
    assert set(p) == set(FIELDS)
    assert p["optimizer"] in ("adam", "rmsprop")
    for k in ("num_envs", "alpha", "epochs", "minibatches"):
        assert type(p[k]) is int and p[k] > 0, k
    for k in ("lr_decay", "clip_value_loss", "norm_adv", "norm_obs", "norm_reward"):
        assert type(p[k]) is bool, k
    for k in (
        "lr",
        "optim_eps",
        "rmsprop_alpha",
        "gamma",
        "gae_lambda",
        "ent_coef",
        "vf_coef",
        "max_grad_norm",
        "clip_coef",
        "norm_clip",
    ):
        assert isinstance(p[k], float) and not isinstance(p[k], bool), k
    # Valid with the default layout (2 executors) and, for PPO, whole minibatches.
    assert p["num_envs"] % 2 == 0
    assert (p["num_envs"] * p["alpha"]) % p["minibatches"] == 0


def test_every_preset_has_a_source_and_every_source_a_preset():
    assert set(PRESET_SOURCES) == set(PRESETS) == set(SOURCES)
    for name, text in PRESET_SOURCES.items():
        assert isinstance(text, str) and len(text.strip()) > 40, name
        assert "github.com/" in text and (".py" in text or ".yml" in text or ".sh" in text or ".md" in text), name


@pytest.mark.parametrize("name,i", [(n, i) for n in sorted(SOURCES) for i in range(len(SOURCES[n]))])
def test_preset_equals_its_source(name, i):
    source = SOURCES[name][i]
    preset = PRESETS[name]
    diff = {k: (preset[k], v) for k, v in source.items() if preset[k] != v or type(preset[k]) is not type(v)}
    assert not diff, f"{name} differs from its source (preset, source): {diff}"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_fields_missing_from_the_source_are_stated(name):
    primary = SOURCES[name][0]
    for k in FIELDS:
        if k in primary:
            continue
        assert (name, k) in NOT_IN_SOURCE, f"{name}.{k} is neither in its source nor stated in NOT_IN_SOURCE"
        value, _why = NOT_IN_SOURCE[(name, k)]
        assert PRESETS[name][k] == value


def test_mujoco_ppo_keeps_cleanrls_batch():
    p = PRESETS["mujoco-ppo"]
    assert p["num_envs"] * p["alpha"] == CLEANRL_PPO_CONTINUOUS_BATCH
    assert p["num_envs"] * p["alpha"] // p["minibatches"] == 64  # CleanRL's minibatch size 2048 / 32


def test_a2c_presets_do_not_decay_the_learning_rate():
    # Kostrikov's A2C decays only with --use-linear-lr-decay; SB3's A2C only with a schedule.
    assert PRESETS["atari-a2c"]["lr_decay"] is False
    assert PRESETS["classic-a2c"]["lr_decay"] is False


def test_football_ppo_keeps_the_grf_numbers_and_states_where_hts_rl_differs():
    p = PRESETS["football-ppo"]
    for k, v in GRF_REPRO_CHECKPOINT_EASY.items():
        if k in ("alpha", "lr_decay"):  # HTS-RL's choice, which the preset follows
            assert p[k] == HTSRL_AUTHORS_FOOTBALL_PPO[k] != v
        else:
            assert p[k] == v, k
    assert p["ent_coef"] == HTSRL_AUTHORS_ENTROPY_COEF == GRF_REPRO_CHECKPOINT_EASY["ent_coef"]


def test_football_entropy_term_of_the_authors_code_is_a_tiny_penalty():
    """The authors' ``loss -= coef * mean(p * log p)`` over 19 actions equals htsrl's
    ``loss -= ent_coef * mean(H)`` with ent_coef = -coef / 19, a penalty: the preset does not copy it."""
    torch.manual_seed(0)
    logits = torch.randn(64, FOOTBALL_ACTIONS, dtype=torch.float64)
    logp = torch.log_softmax(logits, -1)
    p = logp.exp()
    authors_term = -(torch.mean(p * logp)) * HTSRL_AUTHORS_ENTROPY_COEF  # model.py line 60, ppo_aug.py line 86
    entropy = -(p * logp).sum(-1).mean()  # htsrl's entropy
    equivalent = -HTSRL_AUTHORS_ENTROPY_COEF / FOOTBALL_ACTIONS
    assert torch.allclose(authors_term, -equivalent * entropy)
    assert equivalent < 0 < PRESETS["football-ppo"]["ent_coef"]
    # The module text tells a user how to run the authors' term instead.
    assert f"{equivalent:.8f}"[:11] in inspect.getsource(htsrl.presets)  # "-0.00015789"


@pytest.mark.parametrize(
    "algo,env,expected",
    [
        ("ppo", "ALE/Breakout-v5", "atari-ppo"),
        ("ppo", "BreakoutNoFrameskip-v4", "atari-ppo"),
        ("ppo", "football/academy_empty_goal_close", "football-ppo"),
        ("ppo", "CartPole-v1", "classic-ppo"),
        ("ppo", "htsrl/Counter-v0", "classic-ppo"),
        ("ppo", "HalfCheetah-v5", "mujoco-ppo"),
        ("ppo", "Walker2d-v4", "mujoco-ppo"),
        ("ppo", "Pendulum-v1", "pendulum-ppo"),
        ("ppo", "MountainCarContinuous-v0", "classic-ppo"),
        ("a2c", "Hopper-v5", "classic-a2c"),
        ("a2c", "ALE/Breakout-v5", "atari-a2c"),
        ("a2c", "PongNoFrameskip-v4", "atari-a2c"),
        ("a2c", "football/academy_empty_goal_close", "atari-a2c"),  # no football A2C source: FOOTBALL_A2C_PRESET
        ("a2c", "CartPole-v1", "classic-a2c"),
        ("a2c", "htsrl/Counter-v0", "classic-a2c"),
        ("impala", "ALE/Breakout-v5", "atari-impala"),
        ("impala", "PongNoFrameskip-v4", "atari-impala"),
        ("impala", "football/academy_empty_goal_close", "football-impala"),
        ("impala", "CartPole-v1", "classic-a2c"),  # no classic IMPALA source: CLASSIC_IMPALA_PRESET
        ("impala", "htsrl/Counter-v0", "classic-a2c"),
    ],
)
def test_default_preset(algo, env, expected):
    got = default_preset(algo, env)
    assert got == expected
    assert got in PRESETS
    # the algorithm's own kind of preset, except the stated fallbacks: football A2C (also an A2C preset)
    # and classic-control IMPALA (the A2C setting, V-trace's on-policy limit)
    assert got.endswith("-" + algo) or (algo, got) == ("impala", htsrl.env_families.CLASSIC_IMPALA_PRESET)


def test_impala_sum_form_equals_htsrl_mean_form_with_eps_and_clip_scaled():
    """The paper's loss is a sum over the batch, htsrl's a mean: RMSprop with clip 40 and epsilon 0.01 on
    the sum takes the same steps as with both divided by the batch on the mean, so atari-impala is the
    paper's update."""
    batch = 64
    torch.manual_seed(0)
    x, y = torch.randn(batch, 5), torch.randn(batch)
    params = []
    for form, eps, clip in (("sum", 0.01, 40.0), ("mean", 0.01 / batch, 40.0 / batch)):
        torch.manual_seed(1)
        model = torch.nn.Linear(5, 1)
        opt = torch.optim.RMSprop(model.parameters(), lr=6e-4, alpha=0.99, eps=eps)
        for i in range(20):
            loss = ((model(x).squeeze(-1) - y * (1 + 100 * (i % 3 == 0))) ** 2).sum()  # large targets: the clip acts
            loss = loss / batch if form == "mean" else loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
        params.append(torch.nn.utils.parameters_to_vector(model.parameters()).detach())
    torch.testing.assert_close(params[0], params[1], rtol=1e-4, atol=1e-6)
    p = PRESETS["atari-impala"]
    assert (p["optim_eps"], p["max_grad_norm"]) == (0.01 / IMPALA_SUM_FORM_BATCH, 40.0 / IMPALA_SUM_FORM_BATCH)
    assert IMPALA_SUM_FORM_BATCH == p["num_envs"] * p["alpha"] == htsrl.presets.IMPALA_ATARI_BATCH


def test_default_preset_rejects_an_unknown_algo():
    with pytest.raises(ValueError):
        default_preset("dqn", "CartPole-v1")


def test_presets_module_imports_nothing_from_htsrl():
    tree = ast.parse(inspect.getsource(htsrl.presets))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in names if m == "htsrl" or m.startswith("htsrl.")]
