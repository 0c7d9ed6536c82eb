"""Small networks that several lessons (and the homework grader) build."""

from __future__ import annotations

from torch import nn


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU, dropout: float = 0.0) -> nn.Sequential:
    """A fully connected net ``sizes[0] -> ... -> sizes[-1]`` on flattened images.

    ``activation`` goes between layers (never after the last one: the output
    stays raw logits for ``CrossEntropyLoss``).
    """
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least an input and an output size, got {sizes}.")
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Two conv blocks and a classifier: ~90%+ on Fashion-MNIST in a few CPU minutes.

    conv(3x3, padding 1) keeps the size, max-pooling halves it:
    ``[N, C, 28, 28] -> [N, w, 14, 14] -> [N, 2w, 7, 7] -> [N, num_classes]``.
    ``Dropout`` (not ``Dropout2d``) acts on the flat features, and the output is
    raw logits (no ReLU on them).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32,
                 image_size: int = 28, dropout: float = 0.25):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two 2x2 poolings), got {image_size}.")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * side * side, 128), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def count_parameters(model: nn.Module) -> int:
    """Number of distinct trainable parameters (a weight shared by two layers counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def projection(in_channels: int, out_channels: int, stride: int = 1, batch_norm: bool = True) -> nn.Module:
    """The shortcut of a residual block: the identity when the shape stays, else a 1x1 projection.

    He et al. (2015, option B): a block that halves the image (``stride=2``) or changes the
    number of channels cannot add ``x`` to its output as is, so the skip path applies a 1x1
    convolution with the same stride (plus batch norm in the original block; none in the
    pre-activation block, whose input is already normalized).
    """
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    return nn.Sequential(*layers)


def _check_block_args(channels: int, out_channels: int, stride: int) -> None:
    if channels < 1 or out_channels < 1 or stride not in (1, 2):
        raise ValueError(f"a residual block needs channels >= 1 and stride 1 or 2, got channels={channels}, "
                         f"out_channels={out_channels}, stride={stride}.")


def conv_body(channels: int, out_channels: int, stride: int, last_bn: bool) -> nn.Sequential:
    """The body both residual blocks share: conv3x3 (stride) -> BN -> ReLU -> conv3x3 (-> BN).

    ``last_bn=False`` is the pre-activation body, whose output is added to the skip before any
    normalization (the next block normalizes it).
    """
    layers = [nn.Conv2d(channels, out_channels, 3, stride=stride, padding=1, bias=False),
              nn.BatchNorm2d(out_channels), nn.ReLU(),
              nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)]
    return nn.Sequential(*layers, *([nn.BatchNorm2d(out_channels)] if last_bn else []))


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, plus a skip connection: ``relu(shortcut(x) + body(x))``.

    The original block of He et al. (2015). With the defaults, channels and image size stay the
    same and the shortcut is the identity, so blocks can be stacked. ``stride=2`` (in the first
    convolution) halves the image and ``out_channels`` changes the width; the shortcut is then
    a 1x1 projection (``projection``). The skip gives the gradient a path around every block,
    which is what lets a deep stack of them train; ``residual=False`` drops it (a "plain"
    block, to compare).
    """

    def __init__(self, channels: int, residual: bool = True, out_channels: int | None = None,
                 stride: int = 1):
        super().__init__()
        out_channels = out_channels or channels
        _check_block_args(channels, out_channels, stride)
        self.residual = residual
        self.body = conv_body(channels, out_channels, stride, last_bn=True)
        self.shortcut = projection(channels, out_channels, stride) if residual else None

    def forward(self, x):
        out = self.body(x)
        return (self.shortcut(x) + out).relu() if self.residual else out.relu()


class PreActBlock(nn.Module):
    """The pre-activation block of He et al. (2016): ``x + conv(relu(bn(conv(relu(bn(x))))))``.

    Batch norm and ReLU come *before* each convolution and nothing follows the addition, so
    the skip path is a clean identity from block to block (the original block puts a ReLU
    after the sum). When the block changes the shape, the 1x1 projection is applied to the
    normalized and activated input ``relu(bn(x))``, as in the authors' code. A network of
    these blocks needs one more batch norm and ReLU before its head (``resnet`` adds them).
    """

    def __init__(self, channels: int, residual: bool = True, out_channels: int | None = None,
                 stride: int = 1):
        super().__init__()
        out_channels = out_channels or channels
        _check_block_args(channels, out_channels, stride)
        self.residual = residual
        self.pre = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())
        self.body = conv_body(channels, out_channels, stride, last_bn=False)
        reshapes = stride != 1 or channels != out_channels
        self.shortcut = projection(channels, out_channels, stride, batch_norm=False) if reshapes else None

    def forward(self, x):
        activated = self.pre(x)
        out = self.body(activated)
        if not self.residual:
            return out
        return out + (self.shortcut(activated) if self.shortcut is not None else x)


def resnet(n_blocks: int = 8, width: int = 16, in_channels: int = 1, num_classes: int = 10,
           residual: bool = True, stages: int = 1, preact: bool = False, stem_pool: int = 4) -> nn.Sequential:
    """A deep ResNet for small images (28x28 Fashion-MNIST/MNIST; any size works).

    A stem (conv, batch norm, ReLU, a ``stem_pool`` x ``stem_pool`` max-pooling: 28x28 -> 7x7
    by default keeps it cheap on a CPU), ``n_blocks`` *distinct* residual blocks (``2 * n_blocks``
    conv layers) split as evenly as possible over ``stages`` stages, global average pooling and one
    linear layer giving logits. Each stage after the first starts with a downsampling block
    (stride 2, twice the channels, a 1x1 projection shortcut), as in He et al. (2015).
    ``preact=True`` uses ``PreActBlock`` (and adds the final batch norm and ReLU it needs);
    ``residual=False`` gives the plain network of the same layers.
    Each block is built by its own call, never as ``n_blocks * [ResidualBlock(width)]``,
    which repeats one block (one set of weights) ``n_blocks`` times.
    """
    if n_blocks < 0 or width < 1:
        raise ValueError(f"n_blocks must be >= 0 and width >= 1, got {n_blocks} and {width}.")
    if not 1 <= stages <= max(n_blocks, 1) or stem_pool < 1:
        raise ValueError(f"stages must be between 1 and n_blocks ({n_blocks}) and stem_pool >= 1, "
                         f"got stages={stages}, stem_pool={stem_pool}.")
    block = PreActBlock if preact else ResidualBlock
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                               nn.ReLU()]
    if stem_pool > 1:
        layers.append(nn.MaxPool2d(stem_pool))
    channels = width
    for stage in range(stages):
        for i in range(n_blocks // stages + (stage < n_blocks % stages)):
            down = stage > 0 and i == 0
            out_channels = 2 * channels if down else channels
            layers.append(block(channels, residual, out_channels=out_channels, stride=2 if down else 1))
            channels = out_channels
    if preact:
        layers += [nn.BatchNorm2d(channels), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
