"""The LR range test: exponential sweep, smoothing, divergence stop, and an exact restore."""

import copy
import math

import matplotlib
import pytest
import torch
from torch import nn

from course_utils import optim
from course_utils.data import Batches, to_float
from course_utils.lr_finder import LRFinderResult, lr_range_test, plot_lr_finder, suggest_lr


@pytest.fixture
def data(fashion):
    x, y = fashion
    return Batches(to_float(x[:2048], (0.286,), (0.353,)), y[:2048], batch_size=64, shuffle=True)


def net_with_buffers(seed=0):
    """A small net with BatchNorm, so there are buffers (running stats) to restore."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


def warmed_up(model, optimizer, data, steps=5):
    """A few real steps first, so the optimizer has state and the params have .grad."""
    for (x, y), _ in zip(data, range(steps)):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()  # the test must also restore the train/eval flag
    return model, optimizer


def snapshot(model, optimizer):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [None if p.grad is None else p.grad.clone() for p in model.parameters()],
            copy.deepcopy(optimizer.state_dict()), [id(p) for p in model.parameters()], model.training)


def assert_same(before, model, optimizer):
    state, grads, opt_state, ids, training = before
    now = model.state_dict()
    assert state.keys() == now.keys()
    for k in state:  # parameters AND buffers (running_mean, running_var, num_batches_tracked)
        assert torch.equal(state[k], now[k]), f"{k} changed"
    for g, p in zip(grads, model.parameters()):
        assert (g is None and p.grad is None) or torch.equal(g, p.grad)
    assert [id(p) for p in model.parameters()] == ids
    assert model.training == training
    torch.testing.assert_close(optimizer.state_dict(), opt_state, rtol=0, atol=0)
    # the optimizer still updates the model's own parameters (not detached copies)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == set(ids)


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
    lambda ps: torch.optim.Adam(ps, lr=1e-3),
    lambda ps: optim.AdamW(ps, lr=1e-3),
], ids=["torch-sgd-momentum", "torch-adam", "our-adamw"])
def test_restores_model_and_optimizer_exactly(make_opt, data):
    model = net_with_buffers()
    model, opt = warmed_up(model, make_opt(model.parameters()), data)
    before = snapshot(model, opt)
    result = lr_range_test(model, data, opt, num_steps=30, progress=False)
    assert len(result.lrs) > 10
    assert_same(before, model, opt)


def test_restores_when_it_fails_midway(data):
    model = net_with_buffers()
    model, opt = warmed_up(model, torch.optim.Adam(model.parameters(), lr=1e-3), data)
    before = snapshot(model, opt)
    calls = []

    def failing_loss(out, y):
        calls.append(1)
        if len(calls) == 7:
            raise RuntimeError("boom")
        return nn.functional.cross_entropy(out, y)

    with pytest.raises(RuntimeError, match="boom"):
        lr_range_test(model, data, opt, loss_fn=failing_loss, num_steps=50, progress=False)
    assert len(calls) == 7  # it really trained 6 steps before failing
    assert_same(before, model, opt)


def test_sweep_is_exponential_smoothed_and_stops_on_divergence(data):
    model = net_with_buffers()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    r = lr_range_test(model, data, opt, start_lr=1e-5, end_lr=1e4, num_steps=300, progress=False)
    assert r.lrs[0] == pytest.approx(1e-5)
    ratios = torch.tensor(r.lrs[1:]) / torch.tensor(r.lrs[:-1])
    assert torch.allclose(ratios, torch.full_like(ratios, (1e9) ** (1 / 299)))
    assert r.losses[0] == pytest.approx(r.raw_losses[0])  # bias correction: no pull towards 0
    beta, avg = 0.98, 0.0
    for i, raw in enumerate(r.raw_losses):
        avg = beta * avg + (1 - beta) * raw
        assert r.losses[i] == pytest.approx(avg / (1 - beta ** (i + 1)))
    # an LR of 1e4 must blow up SGD: the test stops early, on the rule it documents
    assert r.diverged and len(r.lrs) < 300
    assert not math.isfinite(r.losses[-1]) or r.losses[-1] > 4 * min(r.losses[:-1])
    assert all(s <= 4 * min(r.losses[: i + 1]) for i, s in enumerate(r.losses[:-1]))
    # the suggestion is the documented one, and sensible for SGD on this data
    i_min = min(range(len(r.losses)), key=r.losses.__getitem__)
    assert r.min_loss_lr == r.lrs[i_min] and r.suggested_lr == pytest.approx(r.lrs[i_min] / 10)
    assert 1e-3 < r.suggested_lr < 1.0
    assert r.steepest_lr <= r.min_loss_lr


def test_suggest_lr_on_a_known_curve():
    lrs = [10 ** (k / 10) for k in range(-40, 11)]  # 1e-4 .. 10
    # flat, falling fastest around 1e-2, lowest at 1e-1, then rising
    losses = [2 - math.tanh(3 * (math.log10(lr) + 2)) + max(0.0, math.log10(lr) + 1) ** 2 * 5
              for lr in lrs]
    suggested, at_min, steepest = suggest_lr(lrs, losses)
    assert at_min == pytest.approx(0.1, rel=0.3)
    assert suggested == pytest.approx(at_min / 10)
    assert steepest == pytest.approx(1e-2, rel=0.3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(start_lr=1.0, end_lr=0.1), "start_lr < end_lr"),
    (dict(start_lr=0.0), "start_lr < end_lr"),
    (dict(num_steps=3), "num_steps"),
    (dict(smoothing=1.0), "smoothing"),
    (dict(diverge_factor=1.0), "diverge_factor"),
])
def test_bad_arguments_raise(kwargs, match, data):
    model = net_with_buffers()
    with pytest.raises(ValueError, match=match):
        lr_range_test(model, data, torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)


def test_empty_data_raises_and_restores():
    model = net_with_buffers()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = snapshot(model, opt)
    with pytest.raises(ValueError, match="empty"):
        lr_range_test(model, [], opt, progress=False)
    assert_same(before, model, opt)


def test_plot(data):
    matplotlib.use("Agg")
    model = net_with_buffers()
    r = lr_range_test(model, data, torch.optim.SGD(model.parameters(), lr=0.1), num_steps=40,
                      end_lr=1.0, progress=False)
    assert isinstance(r, LRFinderResult)
    fig = plot_lr_finder(r)
    assert fig.axes[0].get_xscale() == "log" and len(fig.axes[0].lines) == 5
