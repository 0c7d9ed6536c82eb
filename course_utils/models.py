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


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, plus a skip connection: ``relu(x + body(x))``.

    Channels and image size stay the same, so blocks can be stacked. The skip
    gives the gradient a path around every block, which is what lets a deep
    stack of them train; ``residual=False`` drops it (a "plain" block, to compare).
    """

    def __init__(self, channels: int, residual: bool = True):
        super().__init__()
        self.residual = residual
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, x):
        out = self.body(x)
        return (x + out).relu() if self.residual else out.relu()


def resnet(n_blocks: int = 8, width: int = 16, in_channels: int = 1, num_classes: int = 10,
           residual: bool = True) -> nn.Sequential:
    """A deep ResNet for small images (28x28 Fashion-MNIST/MNIST; any size works).

    A stem (conv, batch norm, ReLU, a 4x4 max-pooling: 28x28 -> 7x7 keeps it
    cheap on a CPU), ``n_blocks`` *distinct* residual blocks (``2 * n_blocks`` conv
    layers), global average pooling and one linear layer giving logits.
    Each block is built by its own call, never as ``n_blocks * [ResidualBlock(width)]``,
    which repeats one block (one set of weights) ``n_blocks`` times.
    """
    if n_blocks < 0 or width < 1:
        raise ValueError(f"n_blocks must be >= 0 and width >= 1, got {n_blocks} and {width}.")
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.MaxPool2d(4),
        *[ResidualBlock(width, residual) for _ in range(n_blocks)],
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes),
    )
