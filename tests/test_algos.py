"""A2C and PPO updates on hand-built windows: how many rows the model sees, and the numbers against a
frozen copy of the former code (every value recomputed, optimizer step written out inline)."""

import copy
import threading

import pytest
import torch
import torch.nn.functional as F

from htsrl.algos import a2c_update, make_optimizer, optimizer_step, ppo_update
from htsrl.algos.guards import check_finite
from htsrl.algos.returns import Window, gae
from htsrl.config import PRESETS, Config
from htsrl.distributed import SingleProcess
from htsrl.nn import build_model

T, N, ACTIONS = 8, 4, 3
LOCAL = SingleProcess()


def _cfg(preset: str, **kw) -> Config:
    return Config(
        **{
            **PRESETS[preset],
            "algo": preset.split("-")[1],
            "lr": 1e-3,
            "mode": "hts",
            "proximal": "behaviour",
            "max_is_weight": 2.0,
            **kw,
        }
    )


def _model(obs_shape=(6,), seed=0):
    torch.manual_seed(seed)
    return build_model(obs_shape, ACTIONS)


def _window(model=None, obs_shape=(6,), seed=1, T=T, N=N) -> Window:
    """Random window with episode ends: truncated (bootstrapped), terminated, and both at once."""
    g = torch.Generator().manual_seed(seed)
    if len(obs_shape) == 3:
        obs = torch.randint(0, 256, (T + 1, N, *obs_shape), generator=g, dtype=torch.uint8)
        final_obs = torch.randint(0, 256, (T, N, *obs_shape), generator=g, dtype=torch.uint8)
    else:
        obs, final_obs = torch.randn(T + 1, N, *obs_shape, generator=g), torch.randn(T, N, *obs_shape, generator=g)
    terminated = torch.zeros(T, N, dtype=torch.bool)
    truncated = torch.zeros(T, N, dtype=torch.bool)
    truncated[2, 0] = truncated[5, 1] = truncated[T - 1, 3] = True
    terminated[3, 2] = terminated[6, 0] = True
    truncated[1, 1] = terminated[1, 1] = True  # a time limit hit on a terminal state: no bootstrap
    w = Window(
        obs=obs,
        final_obs=final_obs,
        actions=torch.randint(0, ACTIONS, (T, N), generator=g),
        logp=torch.log(torch.rand(T, N, generator=g) * 0.5 + 0.25),
        reward=torch.randn(T, N, generator=g),
        terminated=terminated,
        truncated=truncated,
        value=torch.zeros(T, N),
    )
    with torch.no_grad():  # the behaviour values, as the actors store them (here: the same parameters)
        w.value = model(obs[:T].flatten(0, 1))[1].view(T, N)
    return w


NUM_TRUNCATED = 3  # truncated and not terminated, in every _window


def _clone(model, cfg):
    m = copy.deepcopy(model)
    return m, make_optimizer(cfg, m)


def _params(model) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()


# ---- the former code, frozen (htsrl/algos/{a2c,ppo}.py at 03654c2) --------------------------------


def truncation_values(model, w: Window) -> torch.Tensor:
    """(Former code) V(final_obs) where an episode was truncated, 0 elsewhere; (T, N)."""
    out = torch.zeros(w.reward.shape, dtype=torch.float32, device=w.reward.device)
    idx = (w.truncated & ~w.terminated).nonzero(as_tuple=True)
    if idx[0].numel():
        with torch.no_grad():
            _, v = model(w.final_obs[idx])
        out[idx] = v
    return out


def _old_a2c_update(cfg, model, optimizer, w, dp=LOCAL):
    T, N = w.actions.shape
    B = T * N * dp.world_size
    logits, values = model(w.obs.flatten(0, 1))
    logits, values = logits.view(T + 1, N, -1)[:T], values.view(T + 1, N)
    _, returns = gae(w, values.detach(), truncation_values(model, w), cfg.gamma, cfg.gae_lambda)
    adv = returns - values[:T]
    logp_all = F.log_softmax(logits, -1)
    logp = logp_all.gather(-1, w.actions.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum() / B
    value_loss = adv.pow(2).sum() / B
    policy_loss = -(adv.detach() * logp).sum() / B
    loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
    optimizer.zero_grad(set_to_none=False)
    loss.backward()
    dp.sum_grads(model)
    check_finite(model, policy=policy_loss, value=value_loss, entropy=entropy)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    optimizer.step()
    with torch.no_grad():
        row = dp.sum_(torch.stack([policy_loss, value_loss, entropy, (w.logp - logp).sum() / B]).detach())
    return {
        "losses/policy": row[0].item(),
        "losses/value": row[1].item(),
        "losses/entropy": row[2].item(),
        "losses/approx_kl": row[3].item(),
        "losses/grad_norm": grad_norm.item(),
    }


def _old_ppo_update(cfg, model, optimizer, w, generator, dp=LOCAL):
    T, N = w.actions.shape
    with torch.no_grad():
        _, values = model(w.obs.flatten(0, 1))
        values = values.view(T + 1, N)
    adv, returns = gae(w, values, truncation_values(model, w), cfg.gamma, cfg.gae_lambda)
    obs, actions, old_logp = w.obs[:T].flatten(0, 1), w.actions.flatten(), w.logp.flatten()
    adv, returns, old_values = adv.flatten(), returns.flatten(), values[:T].flatten()
    n_global, col0 = N * dp.world_size, dp.env_offset(N * dp.world_size)
    B = T * n_global
    if cfg.norm_adv:
        moments = dp.sum_(torch.stack([adv.sum(), (adv * adv).sum()]).double())
        mean = moments[0] / B
        std = ((moments[1] - B * mean * mean) / (B - 1)).clamp_min(0).sqrt()
        adv = ((adv - mean) / (std + 1e-8)).float()
    mb_size = B // cfg.minibatches
    stats = {}
    for _ in range(cfg.epochs):
        perm = torch.randperm(B, generator=generator).to(obs.device)
        for start in range(0, B, mb_size):
            g = perm[start : start + mb_size]
            t, env = g // n_global, g % n_global - col0
            idx = (t * N + env)[(env >= 0) & (env < N)]
            logits, v = model(obs[idx])
            logp_all = F.log_softmax(logits, -1)
            logp = logp_all.gather(-1, actions[idx].unsqueeze(-1)).squeeze(-1)
            log_ratio = logp - old_logp[idx]
            ratio = log_ratio.exp()
            a = adv[idx]
            policy_loss = torch.max(-a * ratio, -a * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).sum() / mb_size
            if cfg.clip_value_loss:
                v_clip = old_values[idx] + (v - old_values[idx]).clamp(-cfg.clip_coef, cfg.clip_coef)
                value_loss = 0.5 * torch.max((v - returns[idx]) ** 2, (v_clip - returns[idx]) ** 2).sum() / mb_size
            else:
                value_loss = 0.5 * ((v - returns[idx]) ** 2).sum() / mb_size
            entropy = -(logp_all.exp() * logp_all).sum() / mb_size
            loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
            optimizer.zero_grad(set_to_none=False)
            loss.backward()
            dp.sum_grads(model)
            check_finite(model, policy=policy_loss, value=value_loss, entropy=entropy)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                row = dp.sum_(
                    torch.stack(
                        [
                            policy_loss,
                            value_loss,
                            entropy,
                            ((ratio - 1) - log_ratio).sum() / mb_size,
                            ((ratio - 1).abs() > cfg.clip_coef).float().sum() / mb_size,
                        ]
                    ).detach()
                )
            for k, val in zip(
                ("losses/policy", "losses/value", "losses/entropy", "losses/approx_kl", "losses/clipfrac"), row.tolist()
            ):
                stats.setdefault(k, []).append(val)
            stats.setdefault("losses/grad_norm", []).append(grad_norm.item())
    out = {k: sum(v) / len(v) for k, v in stats.items()}
    var = returns.var()
    out["losses/explained_variance"] = float("nan") if var == 0 else (1 - (returns - old_values).var() / var).item()
    return out


# ---- rows seen by the model -------------------------------------------------------------------------


class RowCounter(torch.nn.Module):
    """Delegates to ``inner``; counts the observations it is given with and without gradients."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.grad_rows, self.nograd_rows = inner, 0, 0

    def forward(self, obs):
        if torch.is_grad_enabled():
            self.grad_rows += obs.shape[0]
        else:
            self.nograd_rows += obs.shape[0]
        return self.inner(obs)


def test_ppo_forwards_each_row_once_per_epoch_plus_the_bootstrap_rows():
    cfg = _cfg("classic-ppo", epochs=3, minibatches=4)
    model = RowCounter(_model())
    w = _window(model.inner)
    ppo_update(cfg, model, make_optimizer(cfg, model), w, torch.Generator().manual_seed(0))
    assert model.grad_rows == cfg.epochs * T * N
    assert model.nograd_rows == N + NUM_TRUNCATED  # V(obs[T]) and V(final_obs); no pass over rows 0..T-1


def test_a2c_forwards_the_bootstrap_row_without_gradient():
    cfg = _cfg("atari-a2c")
    model = RowCounter(_model())
    a2c_update(cfg, model, make_optimizer(cfg, model), _window(model.inner))
    assert model.grad_rows == T * N
    assert model.nograd_rows == N + NUM_TRUNCATED


# ---- numbers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("obs_shape", [(6,), (4, 36, 36)], ids=["mlp", "cnn"])
def test_ppo_on_stored_values_equals_recomputing_them(obs_shape):
    """Stored values from the same parameters (lock-step): only floating-point grouping differs."""
    cfg = _cfg("atari-ppo", epochs=2, minibatches=2)
    model = _model(obs_shape)
    w = _window(model, obs_shape)
    new, new_opt = _clone(model, cfg)
    old, old_opt = _clone(model, cfg)
    got = ppo_update(cfg, new, new_opt, w, torch.Generator().manual_seed(3))
    ref = _old_ppo_update(cfg, old, old_opt, w, torch.Generator().manual_seed(3))
    assert (_params(new) - _params(old)).abs().max().item() < 1e-6
    assert set(ref) <= set(got)  # plus the lag diagnostics
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-4, abs=1e-6), k


def test_ppo_uses_the_stored_values():
    cfg = _cfg("atari-ppo", epochs=1, minibatches=2)
    model = _model()
    w = _window(model)
    w.value = w.value + 1.0  # behaviour values that the current parameters do not reproduce
    a, a_opt = _clone(model, cfg)
    b, b_opt = _clone(model, cfg)
    ppo_update(cfg, a, a_opt, w, torch.Generator().manual_seed(3))
    _old_ppo_update(cfg, b, b_opt, w, torch.Generator().manual_seed(3))  # ignores w.value
    assert (_params(a) - _params(b)).abs().max().item() > 1e-5


@pytest.mark.parametrize("algo", ["a2c", "ppo"])
@pytest.mark.parametrize("obs_shape", [(6,), (4, 36, 36)], ids=["mlp", "cnn"])
def test_shared_optimizer_step_gives_the_parameters_of_the_inline_code(algo, obs_shape):
    """The optimizer step is shared; the numbers are the inline code's up to floating-point grouping
    (PPO's stored values come from a batch of T rows, the former recompute from T+1; A2C's gradient
    forward no longer includes the bootstrap row, which contributes no gradient)."""
    cfg = _cfg("atari-a2c" if algo == "a2c" else "atari-ppo", epochs=2, minibatches=2)
    model = _model(obs_shape)
    w = _window(model, obs_shape)
    new, new_opt = _clone(model, cfg)
    old, old_opt = _clone(model, cfg)
    for _ in range(2):  # two updates: the optimizer state carries over
        if algo == "a2c":
            got, ref = a2c_update(cfg, new, new_opt, w), _old_a2c_update(cfg, old, old_opt, w)
        else:
            with torch.no_grad():  # lock-step: the actors' values come from the learner's parameters
                w.value = new(w.obs[:T].flatten(0, 1))[1].view(T, N)
            got = ppo_update(cfg, new, new_opt, w, torch.Generator().manual_seed(5))
            ref = _old_ppo_update(cfg, old, old_opt, w, torch.Generator().manual_seed(5))
    assert (_params(new) - _params(old)).abs().max().item() < 1e-6
    assert {k: got[k] for k in ref} == pytest.approx(ref, rel=1e-4, abs=1e-6)


def test_optimizer_step_is_the_inline_sequence():
    cfg = _cfg("atari-a2c")
    model = _model()
    x = torch.randn(16, 6)
    a, a_opt = _clone(model, cfg)
    b, b_opt = _clone(model, cfg)
    for _ in range(3):
        la = a(x)[0].pow(2).sum() * 100  # large enough that the gradient is clipped
        norm = optimizer_step(a, a_opt, la, cfg.max_grad_norm, SingleProcess(), loss=la)
        lb = b(x)[0].pow(2).sum() * 100
        b_opt.zero_grad(set_to_none=False)
        lb.backward()
        ref = torch.nn.utils.clip_grad_norm_(b.parameters(), cfg.max_grad_norm)
        b_opt.step()
        assert torch.equal(norm, ref) and norm.item() > cfg.max_grad_norm
        assert torch.equal(_params(a), _params(b))


def test_optimizer_step_refuses_a_non_finite_loss_before_stepping():
    from htsrl.errors import NonFiniteError

    cfg = _cfg("atari-a2c")
    model = _model()
    opt = make_optimizer(cfg, model)
    before = _params(model)
    loss = model(torch.randn(4, 6))[1].sum() * float("nan")
    with pytest.raises(NonFiniteError, match="'value'"):
        optimizer_step(model, opt, loss, cfg.max_grad_norm, SingleProcess(), value=loss)
    assert torch.equal(_params(model), before)


# ---- data parallelism: two ranks in threads -------------------------------------------------------


class ThreadDP(SingleProcess):
    """Two ranks as two threads of one process; sums in rank order, like an all-reduce of two."""

    def __init__(self, rank, world_size, slots, barrier):
        self.rank, self.world_size, self.slots, self.barrier = rank, world_size, slots, barrier

    def env_offset(self, num_envs):
        return self.rank * (num_envs // self.world_size)

    def sum_(self, tensor):
        self.slots[self.rank] = tensor.clone()
        self.barrier.wait()
        total = sum(self.slots[1:], self.slots[0])
        self.barrier.wait()
        tensor.copy_(total)
        return tensor

    def sum_grads(self, model):
        grads = [p.grad for p in model.parameters()]
        flat = self.sum_(torch.cat([g.reshape(-1) for g in grads]))
        torch.nn.utils.vector_to_parameters(flat, grads)


def _columns(w: Window, cols: slice) -> Window:
    return Window(**{k: v if v is None else v[:, cols] for k, v in vars(w).items()})


def _recurrent_window(model, seed=1) -> Window:
    """``_window`` with the episode starts it implies and random carried-in states (zero where an
    episode begins), values from the recurrent model itself."""
    w = _window(_model(), seed=seed)
    T, N = w.reward.shape
    g = torch.Generator().manual_seed(seed + 100)
    w.starts = torch.cat([torch.zeros(1, N, dtype=torch.bool), w.terminated | w.truncated])
    w.starts[0, 1] = True
    w.hidden = torch.randn(T + 1, N, model.state_size, generator=g)
    w.hidden[0][w.starts[0]] = 0.0
    with torch.no_grad():
        w.value = model.sequence(w.obs[:T], w.hidden[0], w.starts[:T])[1]
    return w


@pytest.mark.parametrize("algo,recurrent", [("a2c", "none"), ("ppo", "none"), ("a2c", "gru"), ("ppo", "lstm")])
def test_two_ranks_take_the_one_process_step(algo, recurrent):
    """Each rank holds half the envs, with its stored values and its own bootstrap rows; the loss terms
    are partial sums over the global batch. Both ranks end with the one-process parameters. Recurrent
    PPO's minibatches are env columns, so a rank may own none of a minibatch's envs (here every
    minibatch is one env of the four)."""
    minibatches = 4 if recurrent != "none" else 2
    cfg = _cfg("atari-a2c" if algo == "a2c" else "atari-ppo", epochs=2, minibatches=minibatches)
    if recurrent == "none":
        model = _model()
        w = _window(model)
    else:
        torch.manual_seed(0)
        model = build_model((6,), ACTIONS, recurrent=recurrent)
        w = _recurrent_window(model)
    one, one_opt = _clone(model, cfg)
    if algo == "a2c":
        a2c_update(cfg, one, one_opt, w)
    else:
        ppo_update(cfg, one, one_opt, w, torch.Generator().manual_seed(7))
    slots, barrier, results, errors = [None, None], threading.Barrier(2), [None, None], []

    def rank(r):
        try:
            m, opt = _clone(model, cfg)
            dp, part = ThreadDP(r, 2, slots, barrier), _columns(w, slice(r * N // 2, (r + 1) * N // 2))
            if algo == "a2c":
                a2c_update(cfg, m, opt, part, dp)
            else:
                ppo_update(cfg, m, opt, part, torch.Generator().manual_seed(7), dp)
            results[r] = _params(m)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert torch.equal(results[0], results[1])
    assert (results[0] - _params(one)).abs().max().item() < 1e-6
