"""--algo impala (issue 15): V-trace against hand-computed values and its on-policy limit, the IMPALA
update, the flags, and training runs with the policy-lag statistics and the determinism invariant."""

import csv
import json
import math

import numpy as np
import pytest
import torch

from htsrl import Config
from htsrl.algos import a2c_update, make_optimizer
from htsrl.algos.impala import impala_update
from htsrl.algos.returns import Window, gae
from htsrl.algos.vtrace import vtrace
from htsrl.cli import main
from htsrl.config import resolve
from htsrl.engine.policy_lag import PolicyLag
from htsrl.errors import ConfigError
from htsrl.nn import build_model
from htsrl.presets import PRESETS


def _window(reward, terminated=None, truncated=None, logp=None, obs=None, actions=None) -> Window:
    reward = torch.as_tensor(reward, dtype=torch.float32)
    T, N = reward.shape
    no = torch.zeros(T, N, dtype=torch.bool)
    return Window(
        obs=obs if obs is not None else torch.zeros(T + 1, N, 1),
        final_obs=torch.zeros(T, N, *(obs.shape[2:] if obs is not None else (1,))),
        actions=actions if actions is not None else torch.zeros(T, N, dtype=torch.int64),
        logp=logp if logp is not None else torch.full((T, N), math.log(0.25)),
        reward=reward,
        terminated=terminated if terminated is not None else no,
        truncated=truncated if truncated is not None else no,
        value=torch.zeros(T, N),
    )


def test_vtrace_by_hand_with_truncated_weights_episode_ends_and_the_bootstrap():
    """T=4, N=2, gamma 0.5, rho_bar 1.5, c_bar 0.8. Env 0 runs through the window (bootstrap V=10);
    env 1 terminates at t=1 and is truncated at t=2 (V(final obs) = 6); each value below is worked
    out by hand from the recursion in the module docstring."""
    rho = torch.tensor([[2.0, 3.0], [0.5, 1.0], [1.0, 0.25], [4.0, 1.0]])
    terminated = torch.tensor([[0, 0], [0, 1], [0, 0], [0, 0]], dtype=torch.bool)
    truncated = torch.tensor([[0, 0], [0, 0], [0, 1], [0, 0]], dtype=torch.bool)
    w = _window([[1.0, 1.0], [0.0, 5.0], [2.0, 1.0], [1.0, 0.0]], terminated, truncated)
    values = torch.tensor([[1.0, 2.0], [2.0, 1.0], [3.0, 4.0], [4.0, 2.0], [10.0, 8.0]])  # row 4: bootstrap
    trunc_values = torch.zeros(4, 2)
    trunc_values[2, 1] = 6.0
    out = vtrace(w, w.logp + rho.log(), values, trunc_values, gamma=0.5, rho_bar=1.5, c_bar=0.8)
    # env 0: clipped rho [1.5, .5, 1, 1.5], c [.8, .5, .8, .8]
    #   deltas: 1.5*(1+.5*2-1)=1.5, .5*(0+.5*3-2)=-.25, 1*(2+.5*4-3)=1, 1.5*(1+.5*10-4)=3
    #   vs3 = 4+3 = 7; vs2 = 3+1+.5*.8*3 = 5.2; vs1 = 2-.25+.5*.5*2.2 = 2.3; vs0 = 1+1.5+.5*.8*.3 = 2.62
    #   adv: 1.5*(1+.5*2.3-1)=1.725, .5*(0+.5*5.2-2)=.3, 1*(2+.5*7-3)=2.5, 1.5*(1+.5*10-4)=3 (bootstrap)
    # env 1: clipped rho [1.5, 1, .25, 1], c [.8, .8, .25, .8]; discounts [.5, 0, 0, .5]; the truncated
    #   reward is 1+.5*6 = 4. deltas: 1.5*(1+.5*1-2)=-.75, 1*(5-1)=4, .25*(4-4)=0, 1*(0+.5*8-2)=2
    #   vs3 = 2+2 = 4; vs2 = 4+0 (cut) = 4; vs1 = 1+4 (cut) = 5; vs0 = 2-.75+.5*.8*4 = 2.85
    #   adv: 1.5*(1+.5*5-2)=2.25, 1*(5-1)=4, .25*(4-4)=0, 1*(0+.5*8-2)=2
    vs = [[2.62, 2.85], [2.3, 5.0], [5.2, 4.0], [7.0, 4.0]]
    adv = [[1.725, 2.25], [0.3, 4.0], [2.5, 0.0], [3.0, 2.0]]
    torch.testing.assert_close(out.vs, torch.tensor(vs), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.pg_adv, torch.tensor(adv), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.rho, rho, rtol=1e-6, atol=0)


def test_vtrace_lambda_scales_the_traces_and_a_terminal_truncation_is_not_topped_up():
    """lambda = 0 leaves one-step targets vs_t = V(x_t) + delta_t; a step both terminated and truncated
    is terminal (no V(final obs)), as in gae."""
    both = torch.tensor([[False], [True]])
    w = _window([[1.0], [2.0]], terminated=both, truncated=both)
    values = torch.tensor([[0.5], [1.0], [3.0]])
    out = vtrace(w, w.logp, values, torch.full((2, 1), 100.0), gamma=0.9, lam=0.0)
    assert out.vs.flatten().tolist() == pytest.approx([1.0 + 0.9 * 1.0, 2.0])
    assert out.pg_adv.flatten().tolist() == pytest.approx([1.0 + 0.9 * 2.0 - 0.5, 2.0 - 1.0])


@pytest.mark.parametrize("lam", [1.0, 0.95])
def test_on_policy_vtrace_is_gae(lam):
    """rho = 1: vs is GAE(lambda)'s return (bitwise), and with lambda = 1 the policy-gradient advantage is
    GAE(1)'s, the n-step advantage htsrl's A2C uses; episode ends of both kinds inside the window."""
    g = torch.Generator().manual_seed(0)
    T, N = 16, 6
    terminated = torch.rand(T, N, generator=g) < 0.1
    truncated = torch.rand(T, N, generator=g) < 0.1
    w = _window(torch.randn(T, N, generator=g), terminated, truncated, logp=-torch.rand(T, N, generator=g))
    values, trunc_values = torch.randn(T + 1, N, generator=g), torch.randn(T, N, generator=g)
    adv, returns = gae(w, values, trunc_values, 0.99, lam)
    out = vtrace(w, w.logp.clone(), values, trunc_values, 0.99, lam, rho_bar=1.0, c_bar=1.0)
    assert torch.equal(out.vs, returns)
    if lam == 1.0:
        torch.testing.assert_close(out.pg_adv, adv, rtol=0, atol=1e-5)
    assert (terminated & ~truncated).any() and (truncated & ~terminated).any()


# --- the update

T, N, ACTIONS = 8, 4, 3


def _cfg(**kw):
    base = {**PRESETS["classic-a2c"], "algo": "impala", "lr": 1e-3, "mode": "hts", "proximal": "current"}
    return Config(**{**base, "max_is_weight": 2.0, "vtrace_rho_bar": 1.0, "vtrace_c_bar": 1.0, **kw})


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model((6,), ACTIONS)


def _rollout(model, behaviour_shift=0.0, seed=1) -> Window:
    """A window whose behaviour log-probs are the model's own (shift 0) or another policy's."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(T + 1, N, 6, generator=g)
    actions = torch.randint(0, ACTIONS, (T, N), generator=g)
    with torch.no_grad():
        logits, _ = model(obs[:T].flatten(0, 1))
        logits = logits.clone()
        logits[:, 0] += behaviour_shift
        logp = torch.log_softmax(logits, -1).gather(-1, actions.reshape(-1, 1)).view(T, N)
    terminated = torch.zeros(T, N, dtype=torch.bool)
    terminated[3, 1] = True
    return _window(torch.randn(T, N, generator=g), terminated, logp=logp, obs=obs, actions=actions)


def _step(update, cfg, w):
    model = _model()
    metrics = update(cfg, model, make_optimizer(cfg, model), w)
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach(), metrics


def test_impala_update_steps_and_reports():
    before = torch.nn.utils.parameters_to_vector(_model().parameters()).detach()
    w = _rollout(_model(), behaviour_shift=1.0)
    after, metrics = _step(impala_update, _cfg(), w)
    assert not torch.equal(before, after)
    for key in ("policy", "value", "entropy", "approx_kl", "grad_norm"):
        assert math.isfinite(metrics[f"losses/{key}"]), key
    assert 0 < metrics["lag/weight_clamped"] < 1  # the shift puts some rho above rho_bar = 1
    _, sync = _step(impala_update, _cfg(mode="sync"), w)
    assert not any(k.startswith("lag/") for k in sync)


def test_impala_reads_neither_proximal_nor_max_is_weight():
    w = _rollout(_model(), behaviour_shift=1.0)
    a, _ = _step(impala_update, _cfg(proximal="current", max_is_weight=2.0), w)
    b, _ = _step(impala_update, _cfg(proximal="behaviour", max_is_weight=5.0), w)
    assert torch.equal(a, b)
    c, _ = _step(impala_update, _cfg(vtrace_rho_bar=0.5), w)
    assert not torch.equal(a, c)


def test_on_policy_impala_is_a2c_with_half_the_value_loss():
    """A window of the model's own policy (rho = 1), lambda = 1: IMPALA's targets are A2C's n-step returns;
    only the value loss differs, IMPALA's 0.5 * (vs - V)^2 against A2C's (R - V)^2."""
    w = _rollout(_model())
    a, ma = _step(impala_update, _cfg(mode="sync", gae_lambda=1.0, vf_coef=0.5), w)
    b, mb = _step(a2c_update, _cfg(algo="a2c", mode="sync", gae_lambda=1.0, vf_coef=0.25), w)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert ma["losses/policy"] == pytest.approx(mb["losses/policy"], rel=1e-5)
    assert ma["losses/value"] == pytest.approx(0.5 * mb["losses/value"], rel=1e-5)


# --- settings


@pytest.mark.parametrize("name", ["vtrace_rho_bar", "vtrace_c_bar"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), True, "1"])
def test_vtrace_bars_must_be_positive_numbers(name, value):
    with pytest.raises(ConfigError, match=f"--{name.replace('_', '-')} must be a positive number"):
        resolve(Config(env="CartPole-v1", algo="impala", **{name: value}))


def test_bad_vtrace_flag_is_refused_before_start(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", "--run-dir", str(run_dir), "--no-progress", "--env", "CartPole-v1", "--algo", "impala"]
    assert main([*args, "--vtrace-c-bar", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--vtrace-c-bar must be a positive number" in err
    assert not run_dir.exists()


def test_impala_presets_by_env():
    assert resolve(Config(env="ALE/Breakout-v5", algo="impala")).preset == "atari-impala"
    assert resolve(Config(env="CartPole-v1", algo="impala")).preset == "classic-a2c"


# --- policy lag


def test_policy_lag_counts_and_totals():
    lag = PolicyLag()
    assert lag.summary() is None
    assert lag.add(0, np.zeros((2, 3), dtype=np.int64)) == {"policy_lag/mean": 0.0, "policy_lag/max": 0.0}
    assert lag.add(3, np.array([[2, 2, 1]])) == {"policy_lag/mean": pytest.approx(4 / 3), "policy_lag/max": 2.0}
    again = PolicyLag()
    again.load_state_dict(lag.state_dict())
    assert again.summary() == {"mean": 4 / 9, "max": 2, "samples": 9, "histogram": {"0": 6, "1": 2, "2": 1}}


# --- training runs

CARTPOLE = dict(env="CartPole-v1", algo="impala", num_envs=8, alpha=5, total_steps=8 * 5 * 6, seed=3)
FIELDS = ("params_sha256", "rollout_sha256", "episodes", "updates", "policy_lag")


@pytest.mark.parametrize("mode", ["hts", "sync"])
def test_impala_trains_deterministically_and_reports_the_policy_lag(run, tmp_path, mode):
    """Same seed: bitwise-equal results for 1 and 2 executors. The lag is 0 in lock-step mode; in HTS mode
    0 on window 0 (the initial weights collected and learn it) and exactly 1 on every later window."""
    one = run(**CARTPOLE, mode=mode, num_executors=1, run_dir=str(tmp_path / "one"))
    two = run(**CARTPOLE, mode=mode, num_executors=2)
    assert one["finished"] and one["updates"] == 6
    assert {k: one[k] for k in FIELDS} == {k: two[k] for k in FIELDS}
    window = CARTPOLE["num_envs"] * CARTPOLE["alpha"]
    if mode == "hts":
        assert one["policy_lag"] == {
            "mean": 5 / 6,
            "max": 1,
            "samples": 6 * window,
            "histogram": {"0": window, "1": 5 * window},
        }
    else:
        assert one["policy_lag"] == {"mean": 0.0, "max": 0, "samples": 6 * window, "histogram": {"0": 6 * window}}
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["policy_lag"] == one["policy_lag"]
    with open(tmp_path / "one" / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    expected = [0.0] + [1.0 if mode == "hts" else 0.0] * 5
    assert [float(r["policy_lag/mean"]) for r in rows] == expected
    assert [float(r["policy_lag/max"]) for r in rows] == expected


def test_policy_lag_in_tensorboard(run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(**CARTPOLE, run_dir=str(tmp_path / "tb"))
    acc = EventAccumulator(str(tmp_path / "tb" / "tb"))
    acc.Reload()
    assert {"policy_lag/mean", "policy_lag/max"} <= set(acc.Tags()["scalars"])
    assert "policy_lag" in acc.Tags()["histograms"]
    last = acc.Histograms("policy_lag")[-1].histogram_value
    assert (last.min, last.max, last.num) == (1.0, 1.0, CARTPOLE["num_envs"] * CARTPOLE["alpha"])
