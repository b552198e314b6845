"""The lag of one update (issue 13): the decoupled-PPO / importance-weighted corrections, the
diagnostics, and that every invariant holds with each --proximal setting."""

import csv
import math

import pytest
import torch

from htsrl.algos import a2c_update, make_optimizer, ppo_update
from htsrl.algos.ppo import clipped_surrogate
from htsrl.algos.returns import Window
from htsrl.config import Config
from htsrl.nn import build_model
from htsrl.presets import PRESETS

T, N, ACTIONS = 8, 4, 3


def test_clipped_surrogate_by_hand():
    ratio = torch.tensor([1.2, 1.2, 0.7, 0.7, 1.05])
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0, 2.0])
    # clip 0.1: r 1.2 -> 1.1, 0.7 -> 0.9, 1.05 stays
    plain = clipped_surrogate(ratio, adv, 0.1)
    assert plain.tolist() == pytest.approx([-1.1, 1.2, -0.7, 0.9, -2.1])
    weight = torch.tensor([1.5, 2.0, 0.5, 1.0, 0.25])
    assert clipped_surrogate(ratio, adv, 0.1, weight).tolist() == pytest.approx([-1.65, 2.4, -0.35, 0.9, -0.525])


def _cfg(algo="ppo", **kw):
    preset = "atari-ppo" if algo == "ppo" else "atari-a2c"
    return Config(
        **{
            **PRESETS[preset],
            "algo": algo,
            "lr": 1e-3,
            "mode": "hts",
            "proximal": "current",
            "max_is_weight": 2.0,
            **kw,
        }
    )


def _window(model, behaviour_shift=0.0, seed=1) -> Window:
    """A window whose stored log-probs and values are the model's own (``behaviour_shift`` = 0), or
    log-probs of a policy whose logits differ by ``behaviour_shift`` on action 0 (a stale behaviour)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(T + 1, N, 6, generator=g)
    actions = torch.randint(0, ACTIONS, (T, N), generator=g)
    with torch.no_grad():
        logits, v = model(obs[:T].flatten(0, 1))
        logits = logits.clone()
        logits[:, 0] += behaviour_shift
        logp = torch.log_softmax(logits, -1).gather(-1, actions.reshape(-1, 1)).view(T, N)
    terminated = torch.zeros(T, N, dtype=torch.bool)
    terminated[3, 1] = True
    return Window(
        obs=obs,
        final_obs=torch.zeros(T, N, 6),
        actions=actions,
        logp=logp,
        reward=torch.randn(T, N, generator=g),
        terminated=terminated,
        truncated=torch.zeros(T, N, dtype=torch.bool),
        value=v.view(T, N),
    )


def _update(algo, cfg, w, seed=0):
    torch.manual_seed(seed)
    model = build_model((6,), ACTIONS)
    opt = make_optimizer(cfg, model)
    if algo == "ppo":
        metrics = ppo_update(cfg, model, opt, w, torch.Generator().manual_seed(3))
    else:
        metrics = a2c_update(cfg, model, opt, w)
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach(), metrics


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model((6,), ACTIONS)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_lockstep_takes_plain_ppo_and_a2c_whatever_the_setting(algo):
    """In lock-step mode the behaviour policy is the learner's: both settings are the plain update,
    bitwise (no recomputation, weight 1), and no lag diagnostics are reported."""
    w = _window(_model(), behaviour_shift=0.3)
    a, ma = _update(algo, _cfg(algo, mode="sync", proximal="current"), w)
    b, mb = _update(algo, _cfg(algo, mode="sync", proximal="behaviour"), w)
    assert torch.equal(a, b) and ma == mb
    assert not any(k.startswith("lag/") for k in ma)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_current_equals_behaviour_when_the_behaviour_is_current(algo):
    """A window collected by the learner's own parameters: the weights are 1 and the proximal policy is
    the behaviour policy, so the corrected update is the plain one (to floating-point grouping)."""
    w = _window(_model())
    a, ma = _update(algo, _cfg(algo, proximal="current"), w)
    b, mb = _update(algo, _cfg(algo, proximal="behaviour"), w)
    assert (a - b).abs().max().item() < 1e-5
    assert ma["lag/ratio_current_behaviour"] == pytest.approx(1.0, abs=1e-5)
    assert ma["lag/kl_behaviour_current"] == pytest.approx(0.0, abs=1e-6)
    assert ma["lag/weight_clamped"] == 0.0


def test_ppo_current_by_hand_at_the_first_minibatch():
    """One epoch, one minibatch: at theta_w the ratio to the proximal policy is 1, so the policy loss is
    -mean(min(pi_w/pi_b, 2) * normalized advantage); the lag metrics are those of pi_w against pi_b."""
    model = _model()
    w = _window(model, behaviour_shift=1.5)
    cfg = _cfg("ppo", epochs=1, minibatches=1)
    _, metrics = _update("ppo", cfg, w)
    with torch.no_grad():
        logits, v = model(w.obs.flatten(0, 1))
        logp_w = torch.log_softmax(logits[: T * N], -1).gather(-1, w.actions.reshape(-1, 1)).view(T, N)
        values = v.view(T + 1, N)
    r = (logp_w - w.logp).exp()
    weight = r.clamp(max=2.0)
    not_end = 1.0 - w.terminated.float()
    adv, last = torch.zeros(T, N), torch.zeros(N)
    for t in reversed(range(T)):  # GAE with theta_w's values
        delta = w.reward[t] + cfg.gamma * values[t + 1] * not_end[t] - values[t]
        last = delta + cfg.gamma * cfg.gae_lambda * not_end[t] * last
        adv[t] = last
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    assert metrics["losses/policy"] == pytest.approx(-(weight * adv).mean().item(), rel=1e-4, abs=1e-6)
    assert metrics["lag/ratio_current_behaviour"] == pytest.approx(r.mean().item(), rel=1e-5)
    assert metrics["lag/kl_behaviour_current"] == pytest.approx(((r - 1) - r.log()).mean().item(), rel=1e-4)
    assert metrics["lag/clipfrac_at_start"] == pytest.approx(((r - 1).abs() > cfg.clip_coef).float().mean().item())
    assert metrics["lag/weight_clamped"] == pytest.approx((r > 2.0).float().mean().item())
    assert 0 < metrics["lag/weight_clamped"] < 1  # the shift makes some weights exceed the clamp


def test_a2c_current_weights_the_policy_gradient():
    """A2C with a stale behaviour: the policy loss is -mean(min(pi_w/pi_b, c) * A * log pi_w)."""
    model = _model()
    w = _window(model, behaviour_shift=1.0)
    cfg = _cfg("a2c", max_is_weight=1.5)
    _, metrics = _update("a2c", cfg, w)
    _, plain = _update("a2c", _cfg("a2c", proximal="behaviour"), w)
    with torch.no_grad():
        logits, v = model(w.obs.flatten(0, 1))
        logp_w = torch.log_softmax(logits[: T * N], -1).gather(-1, w.actions.reshape(-1, 1)).view(T, N)
        values = v.view(T + 1, N)
    not_end = 1.0 - w.terminated.float()
    ret, last = torch.zeros(T, N), values[T]
    for t in reversed(range(T)):
        last = w.reward[t] + cfg.gamma * not_end[t] * last
        ret[t] = last
    adv = ret - values[:T]
    weight = (logp_w - w.logp).exp().clamp(max=1.5)
    assert metrics["losses/policy"] == pytest.approx(-(weight * adv * logp_w).mean().item(), rel=1e-4)
    assert plain["losses/policy"] == pytest.approx(-(adv * logp_w).mean().item(), rel=1e-4)
    assert "lag/clipfrac_at_start" not in metrics and 0 < metrics["lag/weight_clamped"] < 1


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_lag_diagnostics_in_tensorboard_and_csv(run, tmp_path, algo):
    """A tiny HTS run logs the lag diagnostics every update (values in range); lock-step logs none."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    alpha = 32 if algo == "ppo" else 5
    common = dict(env="CartPole-v1", algo=algo, num_envs=4, alpha=alpha, total_steps=4 * alpha * 6, seed=2)
    run(**common, run_dir=str(tmp_path / "hts"))
    names = ["lag/ratio_current_behaviour", "lag/kl_behaviour_current", "lag/weight_clamped"]
    names += ["lag/clipfrac_at_start"] if algo == "ppo" else []
    with open(tmp_path / "hts" / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    for row in rows:
        ratio, kl, clamped = (float(row[n]) for n in names[:3])
        assert 0 < ratio < 10 and kl >= 0 and 0 <= clamped <= 1
        if algo == "ppo":
            assert 0 <= float(row["lag/clipfrac_at_start"]) <= 1
    assert float(rows[0]["lag/kl_behaviour_current"]) == 0.0  # update 0: theta_0 collected window 0
    assert any(float(r["lag/kl_behaviour_current"]) > 0 for r in rows[1:])  # later: one update old
    acc = EventAccumulator(str(tmp_path / "hts" / "tb"))
    acc.Reload()
    assert set(names) <= set(acc.Tags()["scalars"])
    run(**common, mode="sync", run_dir=str(tmp_path / "sync"))
    with open(tmp_path / "sync" / "progress.csv") as f:
        assert not any(k.startswith("lag/") for k in next(csv.DictReader(f)))


FIELDS = ("params_sha256", "rollout_sha256", "episodes", "updates")


@pytest.mark.parametrize(
    "algo,proximal", [("ppo", "behaviour"), ("ppo", "current"), ("a2c", "behaviour"), ("a2c", "current")]
)
def test_each_setting_keeps_the_determinism_matrix(run, algo, proximal):
    alpha = 32 if algo == "ppo" else 5
    cfg = dict(
        env="CartPole-v1", algo=algo, proximal=proximal, num_envs=8, alpha=alpha, total_steps=8 * alpha * 5, seed=6
    )
    ref = run(**cfg, serial=True)
    for executors, actors in [(1, 2), (4, 3)]:
        got = run(**cfg, num_executors=executors, num_actors=actors)
        assert {k: got[k] for k in FIELDS} == {k: ref[k] for k in FIELDS}, (executors, actors)


def test_settings_differ_in_hts_mode(run):
    cfg = dict(env="CartPole-v1", num_envs=8, alpha=32, total_steps=8 * 32 * 4, seed=6)
    a, b = run(**cfg, proximal="behaviour"), run(**cfg, proximal="current")
    assert a["params_sha256"] != b["params_sha256"]
    assert math.isfinite(a["sps"]) and math.isfinite(b["sps"])
