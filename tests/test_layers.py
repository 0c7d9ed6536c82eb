"""Every from-scratch layer in course_utils.layers against PyTorch's own."""

import random

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as torch_weight_norm
from torch.testing import assert_close

from course_utils import layers as L
from course_utils.data import to_float
from course_utils.models import ResidualBlock, count_parameters, resnet

SHAPES = [(16, 5), (8, 4, 7), (6, 3, 5, 5)]


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("shape", SHAPES)
def test_dropout_matches_nn_dropout_with_the_same_seed(p, shape):
    x = randn(*shape)
    torch.manual_seed(123)
    expected = nn.Dropout(p)(x)
    torch.manual_seed(123)
    actual = L.Dropout(p)(x)
    assert torch.equal(actual, expected)  # same mask, same arithmetic: bit for bit


def test_dropout_mask_read_from_the_output():
    """Device-independent check: the zeros are the dropped units, the rest is x / (1 - p)."""
    x, p = randn(2000).abs() + 0.1, 0.3  # no exact zeros in x
    out = L.Dropout(p)(x)
    kept = out != 0
    assert_close(out[kept], x[kept] / (1 - p))
    assert abs(kept.float().mean().item() - (1 - p)) < 0.05


def test_dropout_eval_and_edge_cases():
    x = randn(4, 6)
    assert torch.equal(L.Dropout(0.5).eval()(x), x)
    assert torch.equal(L.Dropout(0.0)(x), x)
    assert torch.equal(L.Dropout(1.0)(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="probability"):
        L.Dropout(1.5)


def test_dropout_keeps_the_expectation_naive_scales_at_eval():
    x = randn(50)
    torch.manual_seed(0)
    inverted = torch.stack([L.Dropout(0.5)(x) for _ in range(4000)]).mean(0)
    naive = torch.stack([L.NaiveDropout(0.5)(x) for _ in range(4000)]).mean(0)
    assert_close(inverted, x, atol=0.1, rtol=0)  # E[out] = x in training
    assert_close(naive, 0.5 * x, atol=0.06, rtol=0)  # naive: E[out] = (1 - p) x in training...
    assert_close(L.NaiveDropout(0.5).eval()(x), 0.5 * x)  # ...and exactly that at eval


def test_dropconnect_masks_weights():
    torch.manual_seed(0)
    layer, x = L.DropConnectLinear(6, 3, p=0.4), randn(5, 6)
    assert_close(layer.eval()(x), F.linear(x, layer.weight, layer.bias))
    layer.train()
    torch.manual_seed(7)
    out = layer(x)
    torch.manual_seed(7)
    mask = L.keep_mask(layer.weight, 0.4)
    assert_close(out, F.linear(x, layer.weight * mask / 0.6, layer.bias))
    out.sum().backward()
    assert torch.all(layer.weight.grad[mask == 0] == 0)  # a dropped weight gets no gradient
    mean = torch.stack([layer(x) for _ in range(3000)]).mean(0).detach()
    assert_close(mean, F.linear(x, layer.weight, layer.bias).detach(), atol=0.05, rtol=0)
    with pytest.raises(ValueError):
        L.DropConnectLinear(2, 2, p=1.0)


# ----------------------------------------------------------------------------- batch norm


def _paired_batchnorm(c, ndim, **kw):
    ref = (nn.BatchNorm1d if ndim < 4 else nn.BatchNorm2d)(c, **kw)
    mine = L.BatchNorm(c, **kw)
    with torch.no_grad():
        ref.weight.copy_(randn(c, seed=1))
        ref.bias.copy_(randn(c, seed=2))
    mine.load_state_dict(ref.state_dict())  # same names: checkpoints are interchangeable
    return ref, mine


@pytest.mark.parametrize("momentum", [0.1, 0.5])
@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_matches_torch_over_several_steps(shape, momentum):
    ref, mine = _paired_batchnorm(shape[1], len(shape), momentum=momentum)
    for step in range(4):
        x = randn(*shape, seed=10 + step) * (step + 1) + step  # statistics change every step
        x_ref, x_mine = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_ref, out_mine = ref(x_ref), mine(x_mine)
        assert_close(out_mine, out_ref, rtol=1e-5, atol=1e-6)
        for name in ("running_mean", "running_var"):
            assert_close(getattr(mine, name), getattr(ref, name), rtol=1e-6, atol=1e-7)
        assert mine.num_batches_tracked.item() == ref.num_batches_tracked.item() == step + 1
        grad = randn(*shape, seed=99)
        out_ref.backward(grad)
        out_mine.backward(grad)
        assert_close(x_mine.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
        assert_close(mine.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-5)
        assert_close(mine.bias.grad, ref.bias.grad, rtol=1e-5, atol=1e-6)
        ref.zero_grad()
        mine.zero_grad()
    ref.eval()
    mine.eval()
    x = randn(*shape, seed=50)
    assert_close(mine(x), ref(x), rtol=1e-5, atol=1e-6)
    assert mine.num_batches_tracked.item() == 4  # evaluation does not count


def test_batchnorm_running_var_is_unbiased_and_eps_inside_the_sqrt():
    bn = L.BatchNorm(1, momentum=1.0, eps=0.5, affine=False)
    x = torch.tensor([[1.0], [3.0]])
    out = bn(x)
    assert_close(bn.running_var, torch.tensor([2.0]))  # unbiased: ((1-2)^2 + (3-2)^2) / (2 - 1)
    assert_close(out, torch.tensor([[-1.0], [1.0]]) / (1.0 + 0.5) ** 0.5)  # biased var 1, plus eps


def test_batchnorm_bad_input():
    with pytest.raises(ValueError, match="channels"):
        L.BatchNorm(3)(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="more than 1 value"):
        L.BatchNorm(3)(torch.zeros(1, 3))
    L.BatchNorm(3).eval()(torch.zeros(1, 3))  # fine at evaluation


# ----------------------------------------------------------------------------- other norms


def test_normalize_divides_by_sqrt_of_var_plus_eps():
    x = randn(3, 10)
    expected = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 0.1)
    assert_close(L.normalize(x, [1], eps=0.1), expected)


@pytest.mark.parametrize("normalized_shape", [(5,), (4, 5), (3, 4, 5)])
def test_layernorm(normalized_shape):
    ref, mine = nn.LayerNorm(normalized_shape), L.LayerNorm(normalized_shape)
    with torch.no_grad():
        ref.weight.copy_(randn(*normalized_shape, seed=1))
        ref.bias.copy_(randn(*normalized_shape, seed=2))
    mine.load_state_dict(ref.state_dict())
    x = randn(2, 3, 4, 5) * 3 + 1
    assert_close(mine(x), ref(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="expects inputs ending"):
        mine(randn(2, 6))


@pytest.mark.parametrize("affine", [False, True])
def test_instancenorm(affine):
    ref, mine = nn.InstanceNorm2d(3, affine=affine), L.InstanceNorm(3, affine=affine)
    if affine:
        with torch.no_grad():
            ref.weight.copy_(randn(3, seed=1))
            ref.bias.copy_(randn(3, seed=2))
        mine.load_state_dict(ref.state_dict())
    x = randn(4, 3, 6, 6) * 2 - 1
    assert_close(mine(x), ref(x), rtol=1e-5, atol=1e-6)
    assert_close(mine.eval()(x), ref.eval()(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("groups", [1, 2, 3, 6])
def test_groupnorm(groups):
    ref, mine = nn.GroupNorm(groups, 6), L.GroupNorm(groups, 6)
    with torch.no_grad():
        ref.weight.copy_(randn(6, seed=1))
        ref.bias.copy_(randn(6, seed=2))
    mine.load_state_dict(ref.state_dict())
    x = randn(3, 6, 5, 5) * 2 + 1
    assert_close(mine(x), ref(x), rtol=1e-5, atol=1e-6)


def test_groupnorm_extremes_are_layernorm_and_instancenorm():
    x = randn(3, 6, 4, 4)
    gn1, gn6 = L.GroupNorm(1, 6, affine=False), L.GroupNorm(6, 6, affine=False)
    assert_close(gn1(x), L.LayerNorm((6, 4, 4), elementwise_affine=False)(x))
    assert_close(gn6(x), L.InstanceNorm(6)(x))
    with pytest.raises(ValueError, match="divisible"):
        L.GroupNorm(4, 6)


@pytest.mark.parametrize("make", [lambda: nn.Linear(5, 3), lambda: nn.Conv2d(2, 4, 3)])
def test_weight_norm_matches_parametrizations(make):
    torch.manual_seed(0)
    module = torch_weight_norm(make())
    g = module.parametrizations.weight.original0
    v = module.parametrizations.weight.original1
    mine = L.weight_norm(v, g)
    assert_close(mine, module.weight)
    mine.pow(2).sum().backward()
    g_grad, v_grad = g.grad.clone(), v.grad.clone()
    g.grad, v.grad = None, None
    module.weight.pow(2).sum().backward()
    assert_close(g_grad, g.grad)
    assert_close(v_grad, v.grad)


def test_weight_norm_linear():
    torch.manual_seed(0)
    base = nn.Linear(5, 3)
    torch.manual_seed(0)
    layer = L.WeightNormLinear(5, 3)
    assert_close(layer.weight, base.weight)  # g = ||v|| at the start: the same initial weight
    with torch.no_grad():
        layer.g.mul_(2)
    x = randn(4, 5)
    assert_close(layer(x), F.linear(x, 2 * base.weight, base.bias))  # g scales, v sets the direction
    assert {n for n, _ in layer.named_parameters()} == {"g", "v", "bias"}


# ----------------------------------------------------------------------------- losses, mixup


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3, 1.0])
def test_label_smoothing_matches_cross_entropy_loss(smoothing):
    logits, y = randn(8, 5) * 3, torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(1))
    expected = nn.CrossEntropyLoss(label_smoothing=smoothing)(logits, y)
    assert_close(L.label_smoothing_cross_entropy(logits, y, smoothing), expected)
    assert_close(L.LabelSmoothingCrossEntropy(smoothing)(logits, y), expected)
    assert_close(L.smooth_targets(y, 5, smoothing).sum(1), torch.ones(8))


def test_mixup_loss_equals_soft_target_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    x, y = randn(6, 1, 4, 4), torch.randint(0, 4, (6,), generator=gen)
    perm, lam = torch.randperm(6, generator=gen), 0.3
    x_mix, y_a, y_b = L.mixup(x, y, lam, perm)
    assert_close(x_mix, 0.3 * x + 0.7 * x[perm])
    assert torch.equal(y_a, y) and torch.equal(y_b, y[perm])  # targets from labels, same perm
    logits = randn(6, 4, seed=3)
    soft = L.mixup_targets(y_a, y_b, lam, 4)
    assert_close(L.mixup_loss(logits, y_a, y_b, lam), L.soft_cross_entropy(logits, soft))
    assert_close(L.mixup_loss(logits, y_a, y_b, lam), nn.CrossEntropyLoss()(logits, soft))


def test_mixup_batches_are_mixed_consistently(fashion):
    images, labels = fashion
    x, y = to_float(images[:32]), labels[:32]
    xb, tb = next(iter(L.Mixup([(x, y)], num_classes=10, alpha=0.4, seed=0)))
    again = next(iter(L.Mixup([(x, y)], num_classes=10, alpha=0.4, seed=0)))
    assert torch.equal(xb, again[0]) and torch.equal(tb, again[1])  # seeded
    assert_close(tb.sum(1), torch.ones(32))
    # The same draws by hand: lam from Beta(alpha, alpha), one permutation for inputs AND targets.
    lam = random.Random(0).betavariate(0.4, 0.4)
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    assert_close(xb, lam * x + (1 - lam) * x[perm])
    assert_close(tb, lam * F.one_hot(y, 10).float() + (1 - lam) * F.one_hot(y[perm], 10).float())
    assert not torch.allclose(tb, F.one_hot(y, 10).float())  # really mixed


# ----------------------------------------------------------------------------- augmentation


def test_shift_crop_matches_torchvision_pad_and_crop(fashion):
    x = to_float(fashion[0][:5])
    top, left = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([4, 2, 0, 1, 3])
    out = L.shift_crop(x, 2, top, left)
    padded = TF.pad(x, [2, 2, 2, 2], padding_mode="edge")
    for i in range(5):
        assert_close(out[i], TF.crop(padded[i], int(top[i]), int(left[i]), 28, 28))
    assert_close(L.shift_crop(x, 2, torch.full((5,), 2), torch.full((5,), 2)), x)  # centre = identity


def test_random_flip_crop(fashion):
    x = to_float(fashion[0][:20])
    assert torch.equal(L.RandomFlipCrop(pad=0, flip_p=0.0)(x), x)
    assert torch.equal(L.RandomFlipCrop(pad=0, flip_p=1.0)(x), x.flip(-1))
    out = L.RandomFlipCrop(pad=2, seed=1)(x)
    assert not torch.equal(out, x)
    for i in range(20):  # each output is a flip and/or shift of its own input
        candidates = [L.shift_crop(src[i:i + 1], 2, torch.tensor([t]), torch.tensor([s]))[0]
                      for src in (x, x.flip(-1)) for t in range(5) for s in range(5)]
        assert any(torch.equal(out[i], c) for c in candidates)
    with pytest.raises(ValueError, match="float images"):
        L.RandomFlipCrop()(fashion[0][:2])


# ----------------------------------------------------------------------------- resnet


def test_resnet_blocks_are_distinct_and_the_trap_shares_them():
    net = resnet(n_blocks=3, width=4)
    blocks = [m for m in net if isinstance(m, ResidualBlock)]
    assert len({id(b) for b in blocks}) == 3
    one = count_parameters(ResidualBlock(4))
    stem, head = 4 * 9 + 2 * 4, 4 * 10 + 10
    assert count_parameters(net) == stem + 3 * one + head
    shared = nn.Sequential(*(3 * [ResidualBlock(4)]))  # the trap: one block, three times
    assert len({id(b) for b in shared}) == 1 and count_parameters(shared) == one
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_plain_block_has_no_skip():
    torch.manual_seed(0)
    block = ResidualBlock(3, residual=True).eval()
    plain = ResidualBlock(3, residual=False).eval()
    plain.load_state_dict(block.state_dict())
    x = randn(2, 3, 5, 5)
    assert_close(block(x), (x + plain.body(x)).relu())
    assert_close(plain(x), plain.body(x).relu())
