"""GAE with time-limit bootstrapping, by hand."""

import torch

from htsrl.algos.returns import Window, gae


def _window(reward, terminated, truncated):
    T, N = len(reward), 1
    t = lambda x, dt=torch.float32: torch.tensor(x, dtype=dt).view(T, N)
    return Window(obs=torch.zeros(T + 1, N, 1), final_obs=torch.zeros(T, N, 1), actions=torch.zeros(T, N, dtype=torch.long),
                  logp=torch.zeros(T, N), reward=t(reward), terminated=t(terminated, torch.bool),
                  truncated=t(truncated, torch.bool))


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
