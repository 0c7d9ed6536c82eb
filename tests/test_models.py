"""course_utils.models: shapes, parameter counts, and the ResNet's skip connections."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from course_utils.models import (
    PreActBlock,
    ResidualBlock,
    SmallCNN,
    count_parameters,
    mlp,
    projection,
    resnet,
)


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


@pytest.mark.parametrize("block_class", [ResidualBlock, PreActBlock])
@pytest.mark.parametrize(("channels", "out_channels", "stride", "projects"),
                         [(4, None, 1, False), (4, 4, 1, False), (4, 8, 1, True), (4, 4, 2, True),
                          (4, 8, 2, True)])
def test_blocks_project_exactly_when_the_shape_changes(block_class, channels, out_channels, stride, projects):
    block = block_class(channels, out_channels=out_channels, stride=stride)
    out = block(torch.randn(2, channels, 7, 7))
    c_out = out_channels or channels
    assert out.shape == (2, c_out, 4 if stride == 2 else 7, 4 if stride == 2 else 7)
    convs_1x1 = [m for m in block.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(convs_1x1) == int(projects)
    if projects:
        assert convs_1x1[0].stride == (stride, stride) and convs_1x1[0].out_channels == c_out


def test_projection_is_identity_only_for_an_unchanged_shape():
    assert isinstance(projection(4, 4, 1), nn.Identity)
    proj = projection(4, 8, 2)
    assert [type(m) for m in proj] == [nn.Conv2d, nn.BatchNorm2d]
    assert [type(m) for m in projection(4, 8, 2, batch_norm=False)] == [nn.Conv2d]
    with pytest.raises(ValueError, match="stride"):
        ResidualBlock(4, stride=3)


def test_downsampling_block_adds_the_projected_input():
    torch.manual_seed(0)
    block = ResidualBlock(3, out_channels=6, stride=2).eval()
    x = torch.randn(2, 3, 8, 8)
    assert_close(block(x), (block.shortcut(x) + block.body(x)).relu())
    plain = ResidualBlock(3, residual=False, out_channels=6, stride=2).eval()
    assert plain.shortcut is None and plain(x).shape == (2, 6, 4, 4)


def test_preact_block_normalizes_before_each_conv_and_nothing_after_the_sum():
    torch.manual_seed(0)
    block = PreActBlock(3).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so the order shows
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    bn1, conv1, bn2, conv2 = block.pre[0], block.body[0], block.body[1], block.body[3]
    x = torch.randn(2, 3, 6, 6)
    expected = x + conv2(bn2(conv1(bn1(x).relu())).relu())
    assert_close(block(x), expected)
    assert (block(x) < 0).any()  # no ReLU after the addition (the original block ends with one)
    assert (ResidualBlock(3).eval()(x) >= 0).all()
    down = PreActBlock(3, out_channels=6, stride=2).eval()
    activated = down.pre(x)
    assert_close(down(x), down.body(activated) + down.shortcut(activated))


def test_resnet_stages_downsample_and_double_the_width():
    net = resnet(n_blocks=5, width=4, stages=3, stem_pool=2)
    blocks = [m for m in net if isinstance(m, ResidualBlock)]
    assert [b.body[0].stride[0] for b in blocks] == [1, 1, 2, 1, 2]
    assert [b.body[0].out_channels for b in blocks] == [4, 4, 8, 8, 16]
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert net[-1].in_features == 16
    pre = resnet(n_blocks=4, width=4, stages=2, preact=True)
    assert sum(isinstance(m, PreActBlock) for m in pre) == 4
    assert isinstance(pre[-4], nn.ReLU) and isinstance(pre[-5], nn.BatchNorm2d)
    assert pre(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    plain = resnet(n_blocks=4, width=4, stages=2, residual=False)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in plain.modules())
    with pytest.raises(ValueError, match="stages"):
        resnet(n_blocks=2, stages=3)
