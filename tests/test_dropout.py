"""course_utils.dropout against nn.Dropout: the same mask from the same seed, bit for bit."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from course_utils import dropout

SHAPES = [(16, 5), (8, 4, 7), (6, 3, 5, 5)]


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("shape", SHAPES)
def test_dropout_matches_nn_dropout_with_the_same_seed(p, shape):
    x = randn(*shape)
    torch.manual_seed(123)
    expected = nn.Dropout(p)(x)
    torch.manual_seed(123)
    actual = dropout.Dropout(p)(x)
    assert torch.equal(actual, expected)  # same mask, same arithmetic: bit for bit


def test_dropout_mask_read_from_the_output():
    """Device-independent check: the zeros are the dropped units, the rest is x / (1 - p)."""
    x, p = randn(2000).abs() + 0.1, 0.3  # no exact zeros in x
    out = dropout.Dropout(p)(x)
    kept = out != 0
    assert_close(out[kept], x[kept] / (1 - p))
    assert abs(kept.float().mean().item() - (1 - p)) < 0.05


def test_dropout_eval_and_edge_cases():
    x = randn(4, 6)
    assert torch.equal(dropout.Dropout(0.5).eval()(x), x)
    assert torch.equal(dropout.Dropout(0.0)(x), x)
    assert torch.equal(dropout.Dropout(1.0)(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="probability"):
        dropout.Dropout(1.5)


def test_dropout_keeps_the_expectation_naive_scales_at_eval():
    x = randn(50)
    torch.manual_seed(0)
    inverted = torch.stack([dropout.Dropout(0.5)(x) for _ in range(4000)]).mean(0)
    naive = torch.stack([dropout.NaiveDropout(0.5)(x) for _ in range(4000)]).mean(0)
    assert_close(inverted, x, atol=0.1, rtol=0)  # E[out] = x in training
    assert_close(naive, 0.5 * x, atol=0.06, rtol=0)  # naive: E[out] = (1 - p) x in training...
    assert_close(dropout.NaiveDropout(0.5).eval()(x), 0.5 * x)  # ...and exactly that at eval


def test_dropconnect_masks_weights():
    torch.manual_seed(0)
    layer, x = dropout.DropConnectLinear(6, 3, p=0.4), randn(5, 6)
    assert_close(layer.eval()(x), F.linear(x, layer.weight, layer.bias))
    layer.train()
    torch.manual_seed(7)
    out = layer(x)
    torch.manual_seed(7)
    mask = dropout.keep_mask(layer.weight, 0.4)
    assert_close(out, F.linear(x, layer.weight * mask / 0.6, layer.bias))
    out.sum().backward()
    assert torch.all(layer.weight.grad[mask == 0] == 0)  # a dropped weight gets no gradient
    mean = torch.stack([layer(x) for _ in range(3000)]).mean(0).detach()
    assert_close(mean, F.linear(x, layer.weight, layer.bias).detach(), atol=0.05, rtol=0)
    with pytest.raises(ValueError):
        dropout.DropConnectLinear(2, 2, p=1.0)


def test_check_probability_names_the_argument():
    assert dropout.check_probability(0) == 0.0 and isinstance(dropout.check_probability(1), float)
    with pytest.raises(ValueError, match="flip_p is a probability"):
        dropout.check_probability(-0.1, "flip_p")
