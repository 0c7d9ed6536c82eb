"""The from-scratch optimizers match torch.optim step for step, on a real model and real data."""

import copy

import pytest
import torch
from torch import nn

from course_utils import optim
from course_utils.data import Batches, to_float
from course_utils.models import mlp
from course_utils.train import evaluate, fit

STEPS = 100
# name: (our class, torch class, hyperparameters) — lrs in each optimizer's usual range
CASES = {
    "sgd": (optim.SGD, torch.optim.SGD, dict(lr=0.1)),
    "momentum": (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    "nesterov": (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    "adagrad": (optim.Adagrad, torch.optim.Adagrad, dict(lr=0.05)),
    "rmsprop": (optim.RMSprop, torch.optim.RMSprop, dict(lr=1e-3)),
    "adam": (optim.Adam, torch.optim.Adam, dict(lr=1e-3)),
    "adamw": (optim.AdamW, torch.optim.AdamW, dict(lr=1e-3)),
}


@pytest.fixture
def stream(fashion):
    """A stream of 32-image batches of real Fashion-MNIST (standardized), float64."""
    x, y = fashion
    return Batches(to_float(x[:STEPS * 32], (0.286,), (0.353,)).double(), y[:STEPS * 32], batch_size=32)


def small_mlp(seed=0):
    torch.manual_seed(seed)
    return mlp([784, 32, 10]).double()


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("weight_decay", [0.0, 0.05], ids=["no-wd", "wd"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_step_for_step(name, weight_decay, stream):
    mine_cls, torch_cls, hp = CASES[name]
    a, b = small_mlp(), small_mlp()
    opt_a = mine_cls(a.parameters(), weight_decay=weight_decay, **hp)
    opt_b = torch_cls(b.parameters(), weight_decay=weight_decay, **hp)
    start = flat(a)
    for step, (x, y) in enumerate(stream, 1):
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        diff = (flat(a) - flat(b)).abs().max().item()
        assert diff < 1e-12, f"{name}: parameters differ by {diff:.3g} after step {step}"

    assert step == STEPS
    assert (flat(a) - start).abs().max() > 1e-2, "the parameters barely moved: the test proves nothing"


def test_train_side_by_side_agrees_and_detects_a_difference(stream):
    torch.manual_seed(0)
    model = mlp([784, 32, 10])
    start = flat(model).clone()
    a, b, worst = optim.train_side_by_side(model, lambda ps: optim.Adam(ps, lr=1e-3),
                                          lambda ps: torch.optim.Adam(ps, lr=1e-3), stream, steps=30)
    assert worst < 1e-12 and torch.allclose(a, b, rtol=0, atol=1e-12)
    a, b, worst = optim.train_side_by_side(model, lambda ps: optim.Adam(ps, lr=1e-3),
                                          lambda ps: torch.optim.Adam(ps, lr=1.1e-3), stream, steps=30)
    assert worst > 1e-6 and not torch.allclose(a, b)
    assert torch.equal(flat(model), start) and start.dtype == torch.float32  # trains copies only


def test_torch_schedulers_drive_our_optimizers(stream):
    """OneCycleLR rewrites lr AND beta1 in param_groups; our Adam must follow both."""
    a, b = small_mlp(), small_mlp()
    opt_a, opt_b = optim.Adam(a.parameters(), lr=1e-3), torch.optim.Adam(b.parameters(), lr=1e-3)
    sched_a = torch.optim.lr_scheduler.OneCycleLR(opt_a, max_lr=1e-2, total_steps=STEPS)
    sched_b = torch.optim.lr_scheduler.OneCycleLR(opt_b, max_lr=1e-2, total_steps=STEPS)
    betas_seen = set()
    for x, y in stream:
        for net, opt, sched in ((a, opt_a, sched_a), (b, opt_b, sched_b)):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            sched.step()
        betas_seen.add(round(opt_a.param_groups[0]["betas"][0], 4))
    assert len(betas_seen) > 10, "OneCycleLR should have cycled beta1"
    torch.testing.assert_close(flat(a), flat(b), rtol=1e-10, atol=1e-12)


def test_param_groups_and_state_dict_round_trip(stream):
    """Two groups with their own lr; a state_dict saved mid-run resumes exactly."""
    def groups(net):
        return [{"params": net[1].parameters(), "lr": 0.02}, {"params": net[3].parameters()}]

    a, b = small_mlp(), small_mlp()
    opt_a = optim.SGD(groups(a), lr=0.1, momentum=0.9)
    opt_b = torch.optim.SGD(groups(b), lr=0.1, momentum=0.9)
    batches = list(stream)[:40]
    for i, (x, y) in enumerate(batches):
        if i == 20:  # resume ours from a checkpoint of itself
            net_state, opt_state = copy.deepcopy(a.state_dict()), copy.deepcopy(opt_a.state_dict())
            a = small_mlp(seed=1)
            a.load_state_dict(net_state)
            opt_a = optim.SGD(groups(a), lr=0.1, momentum=0.9)
            opt_a.load_state_dict(opt_state)
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    torch.testing.assert_close(flat(a), flat(b), rtol=1e-10, atol=1e-12)


def test_step_with_closure_returns_its_loss(stream):
    net = small_mlp()
    x, y = next(iter(stream))
    opt = optim.Adam(net.parameters(), lr=1e-3)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return loss

    first = opt.step(closure)
    assert isinstance(first, torch.Tensor) and first.detach() > 0
    assert opt.step(closure).detach() < first.detach()


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=-0.1),
    lambda ps: optim.SGD(ps, lr=0.1, nesterov=True),
    lambda ps: optim.Adagrad(ps, weight_decay=-1),
    lambda ps: optim.RMSprop(ps, alpha=1.0),
    lambda ps: optim.Adam(ps, betas=(0.9, 1.0)),
    lambda ps: optim.AdamW(ps, eps=-1e-8),
], ids=["neg-lr", "nesterov-no-momentum", "neg-wd", "alpha-1", "beta2-1", "neg-eps"])
def test_bad_hyperparameters_raise(make):
    with pytest.raises(ValueError, match="must|needs"):
        make(small_mlp().parameters())


def test_ours_trains_a_real_model_with_fit(fashion):
    x, y = fashion
    x = to_float(x, (0.286,), (0.353,))
    train, val = Batches(x[:3000], y[:3000], 64, shuffle=True), Batches(x[9000:], y[9000:], 500)
    torch.manual_seed(0)
    model = mlp([784, 64, 10])
    fit(model, train, optim.AdamW(model.parameters(), lr=3e-3), epochs=2, progress=False)
    assert evaluate(model, val)["acc"] > 0.7  # chance is 0.1


# --- the Adam self-check ---------------------------------------------------------------

def test_check_adam_step_passes_the_reference(capsys):
    optim.check_adam_step(optim.adam_step)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("mistakes", optim._candidate_mistakes(), ids=" + ".join)
def test_check_adam_step_names_each_mistake(mistakes):
    with pytest.raises(AssertionError) as info:
        optim.check_adam_step(optim._wrong_adam(*mistakes))
    message = str(info.value)
    assert all(f"'{m}'" in message for m in mistakes)
    assert all(f"'{m}'" not in message for m in optim.ADAM_MISTAKES if m not in mistakes)


def test_the_source_materials_adam_is_diagnosed():
    """The seed stores the corrected moments back and puts eps inside the square root."""
    def seed_adam(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        b1, b2 = betas
        m = (b1 * m + (1 - b1) * grad) / (1 - b1**t)
        v = (b2 * v + (1 - b2) * grad**2) / (1 - b2**t)
        return param - lr * m / (v + eps).sqrt(), m, v

    with pytest.raises(AssertionError, match="'eps inside the square root' and 'corrected moments"):
        optim.check_adam_step(seed_adam)


def test_check_adam_step_explains_a_wrong_return_value():
    with pytest.raises(AssertionError, match="must return three tensors"):
        optim.check_adam_step(lambda param, grad, m, v, t, **hp: param)


def test_the_mistakes_are_all_distinguishable():
    runs = [optim._run_adam(optim.adam_step, **optim.CHECK_HP)]
    runs += [optim._run_adam(optim._wrong_adam(*m), **optim.CHECK_HP) for m in optim._candidate_mistakes()]
    for i in range(len(runs)):
        for j in range(i):
            assert (runs[i] - runs[j]).abs().max() > 1e-6, (i, j)


def test_check_adam_step_locates_an_unknown_mistake():
    def sign_flipped(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        new_p, m, v = optim.adam_step(param, grad, m, v, t, lr, betas, eps)
        return 2 * param - new_p, m, v

    with pytest.raises(AssertionError, match="first differs at step t=1, in the returned param"):
        optim.check_adam_step(sign_flipped)


def _gradient_stream(steps=30, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(steps, 5, generator=gen, dtype=torch.float64)


def test_ema_is_sgds_momentum_buffer_times_one_minus_beta():
    grads, mu = _gradient_stream(), 0.9
    p = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    sgd = torch.optim.SGD([p], lr=0.01, momentum=mu)
    averages = optim.ema(grads, mu)
    for t, g in enumerate(grads):
        p.grad = g.clone()
        sgd.step()
        buffer = sgd.state[p]["momentum_buffer"]
        torch.testing.assert_close(buffer * (1 - mu), averages[t], rtol=0, atol=1e-12)


def test_ema_is_adams_first_moment_raw_and_corrected():
    grads, beta1 = _gradient_stream(seed=1), 0.8
    p = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([p], lr=0.01, betas=(beta1, 0.999))
    raw, corrected = optim.ema(grads, beta1), optim.ema(grads, beta1, bias_correction=True)
    for t, g in enumerate(grads, 1):
        p.grad = g.clone()
        adam.step()
        torch.testing.assert_close(adam.state[p]["exp_avg"], raw[t - 1], rtol=0, atol=1e-12)
        torch.testing.assert_close(adam.state[p]["exp_avg"] / (1 - beta1**t), corrected[t - 1],
                                   rtol=0, atol=1e-12)


def test_ema_of_a_constant_is_biased_low_until_corrected():
    values = torch.full((50,), 3.0, dtype=torch.float64)
    raw, corrected = optim.ema(values, 0.9), optim.ema(values, 0.9, bias_correction=True)
    torch.testing.assert_close(raw, 3.0 * (1 - 0.9 ** torch.arange(1, 51, dtype=torch.float64)))
    torch.testing.assert_close(corrected, values)
    assert raw[0] == pytest.approx(0.3)


def test_ema_beta_zero_is_the_values_and_integers_are_accepted():
    values = torch.arange(6)
    torch.testing.assert_close(optim.ema(values, 0.0), values.double())


@pytest.mark.parametrize("beta", [1.0, -0.1, 1.5])
def test_ema_rejects_beta_outside_0_1(beta):
    with pytest.raises(ValueError, match="beta must be in"):
        optim.ema(torch.ones(3), beta)


def test_ema_rejects_an_empty_sequence():
    with pytest.raises(ValueError, match="at least one value"):
        optim.ema(torch.ones(0), 0.5)
