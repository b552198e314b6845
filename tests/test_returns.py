"""GAE with time-limit bootstrapping, by hand."""

import torch

from htsrl.algos.returns import Window, gae


def _window(reward, terminated, truncated):
    T, N = len(reward), 1

    def t(x, dt=torch.float32):
        return torch.tensor(x, dtype=dt).view(T, N)

    return Window(
        obs=torch.zeros(T + 1, N, 1),
        final_obs=torch.zeros(T, N, 1),
        actions=torch.zeros(T, N, dtype=torch.long),
        logp=torch.zeros(T, N),
        reward=t(reward),
        terminated=t(terminated, torch.bool),
        truncated=t(truncated, torch.bool),
        value=torch.zeros(T, N),
    )


def test_gae_cuts_at_episode_ends_and_bootstraps_truncation_only():
    values = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    trunc_v = torch.tensor([[10.0], [0.0], [0.0]])
    g = 0.5
    # step 0 truncated (bootstrapped with V(final)=10), step 1 terminal, step 2 continues into V(s3)=4
    w = _window([1.0, 1.0, 1.0], [False, True, False], [True, False, False])
    adv, ret = gae(w, values, trunc_v, gamma=g, lam=1.0)
    assert ret[:, 0].tolist() == [1.0 + g * 10.0, 1.0, 1.0 + g * 4.0]
    # terminated and truncated at the same step (a time limit hit on a terminal state): no bootstrap
    w = _window([1.0, 1.0, 1.0], [True, True, False], [True, False, False])
    _, ret = gae(w, values, trunc_v, gamma=g, lam=1.0)
    assert ret[0, 0].item() == 1.0


def test_gae_lambda_matches_the_recursion():
    values = torch.tensor([[0.5], [0.25], [1.0]])
    w = _window([1.0, 2.0], [False, False], [False, False])
    g, lam = 0.9, 0.8
    adv, _ = gae(w, values, torch.zeros(2, 1), gamma=g, lam=lam)
    d1 = 2.0 + g * 1.0 - 0.25
    d0 = 1.0 + g * 0.25 - 0.5
    assert torch.allclose(adv[:, 0], torch.tensor([d0 + g * lam * d1, d1]))


def test_bootstrap_values_are_the_next_observation_and_the_truncated_final_observations():
    from htsrl.algos.returns import bootstrap_values, update_start
    from htsrl.nn import build_model

    torch.manual_seed(0)
    model = build_model((3,), 2)
    T, N = 4, 3
    truncated = torch.zeros(T, N, dtype=torch.bool)
    terminated = torch.zeros(T, N, dtype=torch.bool)
    truncated[0, 1] = truncated[2, 2] = truncated[3, 0] = terminated[3, 0] = True
    w = Window(
        obs=torch.randn(T + 1, N, 3),
        final_obs=torch.randn(T, N, 3),
        actions=torch.zeros(T, N, dtype=torch.long),
        logp=torch.zeros(T, N),
        reward=torch.zeros(T, N),
        terminated=terminated,
        truncated=truncated,
        value=torch.randn(T, N),
    )
    last, trunc = bootstrap_values(model, w)
    with torch.no_grad():
        assert torch.allclose(last, model(w.obs[T])[1], atol=1e-6)
        expected = torch.zeros(T, N)
        for t, i in ((0, 1), (2, 2)):  # truncated and not terminated
            expected[t, i] = model(w.final_obs[t, i : i + 1])[1][0]
        assert torch.allclose(trunc, expected, atol=1e-6)
        assert trunc[3, 0] == 0 and (trunc != 0).sum() == 2  # terminated wins over truncated
        pre = update_start(model, w, proximal_current=False, max_weight=2.0)
        assert pre.logp is w.logp and torch.equal(pre.values[:T], w.value) and torch.equal(pre.values[T], last)
        assert pre.weight is None and torch.equal(pre.trunc, trunc)
        # proximal = current: every log-prob and value from the current parameters, in one forward
        pre = update_start(model, w, proximal_current=True, max_weight=2.0)
        logits, v = model(w.obs.flatten(0, 1))
        logp = torch.log_softmax(logits, -1)[: T * N].gather(-1, w.actions.reshape(-1, 1)).view(T, N)
        assert torch.allclose(pre.values, v.view(T + 1, N), atol=1e-6)
        assert torch.allclose(pre.logp, logp, atol=1e-6) and torch.allclose(pre.trunc, trunc, atol=1e-6)
        assert torch.allclose(pre.weight, (logp - w.logp).exp().clamp(max=2.0), atol=1e-6)
