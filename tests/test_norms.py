"""Every normalization layer in course_utils.norms against PyTorch's own."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as torch_weight_norm
from torch.testing import assert_close

from course_utils import norms

SHAPES = [(16, 5), (8, 4, 7), (6, 3, 5, 5)]


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _paired_batchnorm(c, ndim, **kw):
    ref = (nn.BatchNorm1d if ndim < 4 else nn.BatchNorm2d)(c, **kw)
    mine = norms.BatchNorm(c, **kw)
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
    bn = norms.BatchNorm(1, momentum=1.0, eps=0.5, affine=False)
    x = torch.tensor([[1.0], [3.0]])
    out = bn(x)
    assert_close(bn.running_var, torch.tensor([2.0]))  # unbiased: ((1-2)^2 + (3-2)^2) / (2 - 1)
    assert_close(out, torch.tensor([[-1.0], [1.0]]) / (1.0 + 0.5) ** 0.5)  # biased var 1, plus eps


def test_batchnorm_bad_input():
    with pytest.raises(ValueError, match="channels"):
        norms.BatchNorm(3)(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="more than 1 value"):
        norms.BatchNorm(3)(torch.zeros(1, 3))
    norms.BatchNorm(3).eval()(torch.zeros(1, 3))  # fine at evaluation


# ----------------------------------------------------------------------------- other norms


def test_normalize_divides_by_sqrt_of_var_plus_eps():
    x = randn(3, 10)
    expected = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 0.1)
    assert_close(norms.normalize(x, [1], eps=0.1), expected)


@pytest.mark.parametrize("normalized_shape", [(5,), (4, 5), (3, 4, 5)])
def test_layernorm(normalized_shape):
    ref, mine = nn.LayerNorm(normalized_shape), norms.LayerNorm(normalized_shape)
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
    ref, mine = nn.InstanceNorm2d(3, affine=affine), norms.InstanceNorm(3, affine=affine)
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
    ref, mine = nn.GroupNorm(groups, 6), norms.GroupNorm(groups, 6)
    with torch.no_grad():
        ref.weight.copy_(randn(6, seed=1))
        ref.bias.copy_(randn(6, seed=2))
    mine.load_state_dict(ref.state_dict())
    x = randn(3, 6, 5, 5) * 2 + 1
    assert_close(mine(x), ref(x), rtol=1e-5, atol=1e-6)


def test_groupnorm_extremes_are_layernorm_and_instancenorm():
    x = randn(3, 6, 4, 4)
    gn1, gn6 = norms.GroupNorm(1, 6, affine=False), norms.GroupNorm(6, 6, affine=False)
    assert_close(gn1(x), norms.LayerNorm((6, 4, 4), elementwise_affine=False)(x))
    assert_close(gn6(x), norms.InstanceNorm(6)(x))
    with pytest.raises(ValueError, match="divisible"):
        norms.GroupNorm(4, 6)


@pytest.mark.parametrize("make", [lambda: nn.Linear(5, 3), lambda: nn.Conv2d(2, 4, 3)])
def test_weight_norm_matches_parametrizations(make):
    torch.manual_seed(0)
    module = torch_weight_norm(make())
    g = module.parametrizations.weight.original0
    v = module.parametrizations.weight.original1
    mine = norms.weight_norm(v, g)
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
    layer = norms.WeightNormLinear(5, 3)
    assert_close(layer.weight, base.weight)  # g = ||v|| at the start: the same initial weight
    with torch.no_grad():
        layer.g.mul_(2)
    x = randn(4, 5)
    assert_close(layer(x), F.linear(x, 2 * base.weight, base.bias))  # g scales, v sets the direction
    assert {n for n, _ in layer.named_parameters()} == {"g", "v", "bias"}
