"""course_utils.models: shapes, parameter counts, and the ResNet's skip connections."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from course_utils.models import ResidualBlock, SmallCNN, count_parameters, mlp, resnet


def test_mlp_layers_and_raw_logits():
    net = mlp([784, 64, 32, 10], activation=nn.Tanh, dropout=0.1)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Flatten", "Linear", "Tanh", "Dropout", "Linear", "Tanh", "Dropout", "Linear"]
    assert net(torch.randn(5, 1, 28, 28)).shape == (5, 10)
    assert count_parameters(net) == 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10
    with pytest.raises(ValueError, match="at least"):
        mlp([10])


def test_small_cnn_shapes_and_parameter_count():
    net = SmallCNN()
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    expected = (1 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 7 * 7 * 128 + 128) + (128 * 10 + 10)
    assert count_parameters(net) == expected
    rgb = SmallCNN(in_channels=3, num_classes=2, width=16, image_size=32)
    assert rgb(torch.randn(2, 3, 32, 32)).shape == (2, 2)
    assert not any(isinstance(m, (nn.Dropout2d, nn.ReLU)) for m in list(net.classifier)[-1:])
    with pytest.raises(ValueError, match="divisible by 4"):
        SmallCNN(image_size=30)


def test_count_parameters_counts_shared_weights_once():
    block = nn.Linear(4, 4)
    shared = nn.Sequential(*(3 * [block]))
    assert count_parameters(shared) == 20
    assert count_parameters(nn.Sequential(*[nn.Linear(4, 4) for _ in range(3)])) == 60


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
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    assert_close(block(x), (x + plain.body(x)).relu())
    assert_close(plain(x), plain.body(x).relu())
