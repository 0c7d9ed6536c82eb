import pytest
import torch
from torch import nn

from course_utils.models import SmallCNN, count_parameters, mlp


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
