"""course_utils.hooks: what the recorder records is what autograd computes, and no hook outlives it."""

import math

import matplotlib
import pytest
import torch
from torch import nn

from course_utils import plots
from course_utils.data import STATS, Batches, to_float
from course_utils.hooks import (
    SATURATED,
    dead_fraction,
    dead_units,
    diagnose,
    record,
    saturation,
    track_updates,
)
from course_utils.models import mlp
from course_utils.train import fit

matplotlib.use("Agg")


@pytest.fixture
def batches(fashion):
    x, y = fashion
    mean, std = STATS["fashion-mnist"]
    return Batches(to_float(x[:512], mean, std), y[:512], batch_size=64)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return mlp([784, 32, 32, 32, 10], activation=nn.Sigmoid)


def no_hooks_left(model, optimizer=None) -> bool:
    modules = all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks
                  for m in model.modules())
    params = all(not p._backward_hooks for p in model.parameters())
    opt = optimizer is None or (not optimizer._optimizer_step_pre_hooks
                                and not optimizer._optimizer_step_post_hooks)
    return modules and params and opt


def manual_pass(net, x, y):
    """Run the layers one by one, keeping every sigmoid output and its gradient (the reference)."""
    outs, h = {}, x
    for name, layer in net.named_children():
        h = layer(h)
        if isinstance(layer, nn.Sigmoid):
            h.retain_grad()
            outs[name] = h
    nn.functional.cross_entropy(h, y).backward()
    return outs


def test_records_the_same_activations_and_gradients_as_autograd(net, batches):
    x, y = next(iter(batches))
    with record(net, max_values=10**9) as rec:
        nn.functional.cross_entropy(net(x), y).backward()
    recorded_weight_grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad()
    ref = manual_pass(net, x, y)
    assert list(rec.layers) == list(ref) == ["2", "4", "6"]
    for name, h in ref.items():
        torch.testing.assert_close(rec.acts[name][0], h.detach().flatten())
        torch.testing.assert_close(rec.grads[name][0], h.grad.flatten())
    assert set(rec.weights) == {"1.weight", "3.weight", "5.weight", "7.weight"}  # no biases
    for name, p in net.named_parameters():
        if name in rec.weights:
            torch.testing.assert_close(rec.weight_grads[name][0], recorded_weight_grads[name].flatten())
            assert rec.grad_data[name][0] == pytest.approx((p.grad.std() / p.std()).item(), rel=1e-5)


def test_hooks_are_removed_on_exit(net, batches):
    x, y = next(iter(batches))
    with record(net) as rec:
        assert not no_hooks_left(net)
        nn.functional.cross_entropy(net(x), y).backward()
    assert no_hooks_left(net)
    nn.functional.cross_entropy(net(x), y).backward()  # after the block: nothing more recorded
    assert all(len(v) == 1 for v in rec.acts.values())
    assert all(len(v) == 1 for v in rec.grads.values())


def test_hooks_are_removed_when_the_block_raises(net, batches):
    x, _ = next(iter(batches))
    with pytest.raises(RuntimeError):  # a forward pass that fails halfway: wrong input size
        with record(net, layers=nn.Linear):
            net(x[:, :, :20])
    assert no_hooks_left(net)
    with pytest.raises(KeyboardInterrupt):  # the student stops a long run
        with record(net):
            net(x)
            raise KeyboardInterrupt
    assert no_hooks_left(net)


def test_statistics_pool_several_batches(net, batches):
    rec = diagnose(net, batches, n_batches=3)
    assert all(len(v) == 3 for v in rec.acts.values()) and all(len(v) == 3 for v in rec.grads.values())
    assert no_hooks_left(net) and all(p.grad is None for p in net.parameters())
    stats = rec.summary()
    for name in rec.layers:
        pooled = torch.cat(rec.acts[name])
        assert stats[name]["mean"] == pytest.approx(pooled.mean().item())
        assert stats[name]["std"] == pytest.approx(pooled.std().item())
        assert stats[name]["grad_std"] == pytest.approx(torch.cat(rec.grads[name]).std().item())
    for name, s in rec.weight_summary().items():
        assert s["grad_data"] == pytest.approx(sum(rec.grad_data[name]) / 3)


def test_diagnose_does_not_change_the_weights(net, batches):
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    diagnose(net, batches, n_batches=2)
    for n, p in net.named_parameters():
        assert torch.equal(p, before[n])


def test_deep_sigmoid_gradients_shrink_towards_the_input(batches):
    """The lesson's finding, as a test: default init, 6 sigmoid layers, real images."""
    torch.manual_seed(0)
    deep = mlp([784] + [64] * 6 + [10], activation=nn.Sigmoid)
    stats = diagnose(deep, batches, n_batches=4).summary()
    grad_stds = [s["grad_std"] for s in stats.values()]  # first to last layer
    assert all(a < b for a, b in zip(grad_stds, grad_stds[1:]))
    assert grad_stds[0] / grad_stds[-1] < 1e-3


def test_max_values_subsamples_each_batch(net, batches):
    x, y = next(iter(batches))  # 64 x 32 = 2048 values per layer
    with record(net, max_values=500) as rec:
        nn.functional.cross_entropy(net(x), y).backward()
    assert all(t.numel() == 500 for v in rec.acts.values() for t in v)
    sizes = {n: rec.weight_grads[n][0].numel() for n in rec.weights}
    assert sizes == {"1.weight": 500, "3.weight": 500, "5.weight": 500, "7.weight": 320}  # 10 x 32


def test_choosing_layers(net):
    assert list(record(net, layers=nn.Linear).layers) == ["1", "3", "5", "7"]
    assert list(record(net, layers=["3", "4"]).layers) == ["3", "4"]
    with pytest.raises(ValueError, match="No layer named"):
        record(net, layers=["9"])
    with pytest.raises(ValueError, match="found no layer"):
        record(net, layers=nn.Conv2d)
    with pytest.raises(TypeError, match="nn.Module"):
        record("not a model")


def test_saturation_definitions():
    v = torch.tensor([0.0, 0.01, 0.5, 0.98, 1.0])
    assert saturation(v, "Sigmoid") == pytest.approx(4 / 5)
    assert saturation(torch.tensor([-0.99, -0.5, 0.0, 0.96, 0.98]), "Tanh") == pytest.approx(2 / 5)
    assert saturation(torch.tensor([0.0, 0.0, 0.3, 2.0]), "ReLU") == pytest.approx(1 / 2)
    assert math.isnan(saturation(v, "GELU"))
    assert set(SATURATED) == {"Sigmoid", "Tanh", "ReLU"}


def test_update_ratio_is_the_sgd_step(net, batches):
    """Plain SGD moves each weight by lr * grad: the tracker must see exactly that."""
    lr = 0.1
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    x, y = next(iter(batches))
    nn.functional.cross_entropy(net(x), y).backward()
    expected = {n: math.log10((lr * p.grad).std().item() / p.std().item())
                for n, p in net.named_parameters() if p.ndim == 2}
    with track_updates(net, opt) as upd:
        opt.step()
    assert no_hooks_left(net, opt)
    assert upd.steps == [1]
    for n, e in expected.items():
        assert upd.ratios[n][0] == pytest.approx(e, abs=1e-4)


def test_update_tracker_during_fit_every_k_steps(net, batches):
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    with track_updates(net, opt, every=3) as upd:
        fit(net, batches, opt, epochs=1, progress=False)  # 8 steps
    assert upd.steps == [1, 4, 7]
    assert all(len(r) == 3 and all(math.isfinite(v) for v in r) for r in upd.ratios.values())
    assert no_hooks_left(net, opt)


def test_update_tracker_removes_hooks_when_fit_raises(net, batches):
    opt = torch.optim.SGD(net.parameters(), lr=1e-2)
    with pytest.raises(ValueError, match="epochs"):
        with track_updates(net, opt):
            fit(net, batches, opt, epochs=0)
    assert no_hooks_left(net, opt)
    with pytest.raises(TypeError, match="optimizer"):
        track_updates(net, "sgd")


def test_diagnostic_plots_draw_one_line_per_layer(net, batches):
    rec = diagnose(net, batches, n_batches=2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with track_updates(net, opt) as upd:
        fit(net, batches, opt, epochs=1, progress=False)
    for fn, arg, n_lines in [(plots.plot_activation_histograms, rec, 3),
                             (plots.plot_gradient_histograms, rec, 3),
                             (plots.plot_update_ratios, upd, 4 + 1)]:  # + the 1e-3 guide line
        fig = fn(arg, title="t")
        assert len(fig.axes[0].lines) == n_lines, fn.__name__
        matplotlib.pyplot.close(fig)
    fig = plots.plot_grad_data_ratios(rec)
    assert len(fig.axes[0].patches) == 4
    matplotlib.pyplot.close(fig)


def relu_outputs(net, x):
    """Every ReLU's output for the batch ``x``, computed layer by layer (the reference)."""
    outs, h = {}, x
    with torch.no_grad():
        for name, layer in net.named_children():
            h = layer(h)
            if isinstance(layer, nn.ReLU):
                outs[name] = h
    return outs


@pytest.fixture
def relu_net():
    """A ReLU net with 10 of the 32 first-layer units killed by a large negative bias."""
    torch.manual_seed(0)
    model = mlp([784, 32, 32, 32, 10], activation=nn.ReLU)
    with torch.no_grad():
        model[1].bias[:10] = -1e4
    return model


def test_dead_fraction_counts_units_not_values():
    h = torch.tensor([[0.0, 1.0, 0.0, 2.0],
                      [0.0, 0.0, 0.0, 3.0],
                      [0.0, 0.0, 5.0, 0.0]])
    assert dead_fraction(h) == pytest.approx(1 / 4)  # only column 0 is 0 in every row
    assert (h == 0).float().mean().item() == pytest.approx(8 / 12)  # the share of zero values differs
    assert dead_fraction(torch.zeros(5, 2, 3)) == 1.0
    with pytest.raises(ValueError, match="batch"):
        dead_fraction(torch.zeros(4))


def test_dead_units_match_a_direct_computation(relu_net, batches):
    x, _ = next(iter(batches))
    ref = relu_outputs(relu_net, x)
    got = dead_units(relu_net, batches, n_batches=1)
    assert list(got) == list(ref) == ["2", "4", "6"]
    for name, h in ref.items():
        dead = ((h == 0).all(dim=0)).float().mean().item()  # column by column, written out
        assert got[name] == pytest.approx(dead)
    assert got["2"] >= 10 / 32  # the units killed by the bias are counted
    assert no_hooks_left(relu_net)


def test_dead_units_pool_batches_and_restore_the_mode(relu_net, batches):
    data = list(batches)[:3]
    x = torch.cat([xb for xb, _ in data])
    ref = relu_outputs(relu_net, x)
    relu_net.train()
    got = dead_units(relu_net, data, n_batches=3)
    assert relu_net.training and no_hooks_left(relu_net)
    for name, h in ref.items():
        assert got[name] == pytest.approx(dead_fraction(h))
    one = dead_units(relu_net, data, n_batches=1)
    assert all(one[n] >= got[n] for n in got)  # more inputs can only revive units
    assert dead_units(relu_net, data, layers=["4"]).keys() == {"4"}
    with pytest.raises(ValueError, match="n_batches"):
        dead_units(relu_net, data, n_batches=0)
    with pytest.raises(ValueError, match="no batch"):
        dead_units(relu_net, [], n_batches=1)


def test_a_large_negative_bias_kills_every_unit_and_stops_the_gradient(batches):
    """The lesson's dead-ReLU finding, as a test: bias -1 on He weights, 8 layers, real images."""
    torch.manual_seed(0)
    deep = mlp([784] + [64] * 8 + [10], activation=nn.ReLU)
    for layer in deep:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight)
            nn.init.constant_(layer.bias, -1.0)
    dead = list(dead_units(deep, batches, n_batches=2).values())
    assert dead[0] < 0.5 and dead[-1] == 1.0
    grads = diagnose(deep, batches, n_batches=2).weight_summary()
    assert grads["1.weight"]["grad_std"] == 0.0
