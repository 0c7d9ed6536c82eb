"""Normalization layers written from scratch: batch, layer, instance, group and weight norm
(taught in lesson 04).

Each is the plain version of the PyTorch layer it is named after, checked
against it in ``tests/test_norms.py``. Layout: ``[N, C]`` for fully connected
features and ``[N, C, H, W]`` (or ``[N, C, L]``) for images; ``N`` is the batch,
``C`` the channels (features).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def normalize(x: torch.Tensor, dims: list[int] | tuple[int, ...], eps: float = 1e-5) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)`` with mean and *biased* variance taken over ``dims``.

    Every normalization layer below is this one line; they differ only in
    ``dims``, the axes that share one mean and one variance. ``eps`` goes inside
    the square root (not ``/ (sqrt(var) + eps)``): that is what PyTorch does.
    """
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def _channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-channel vector ``[C]`` shaped ``[1, C, 1, ...]`` to broadcast over ``[N, C, ...]``."""
    return t.view(1, -1, *([1] * (ndim - 2)))


def _check_channels(x: torch.Tensor, num_features: int, layer: str) -> None:
    if x.ndim < 2 or x.shape[1] != num_features:
        raise ValueError(f"{layer} expects [N, {num_features}, ...] (channels on axis 1), "
                         f"got {tuple(x.shape)}. For images use [N, C, H, W].")


class BatchNorm(nn.Module):
    """Batch normalization for ``[N, C]``, ``[N, C, L]`` and ``[N, C, H, W]``: one class
    does the work of ``nn.BatchNorm1d`` and ``nn.BatchNorm2d``.

    Each channel is normalized with statistics shared across the batch and the
    spatial positions (every axis but 1), then scaled and shifted by learned
    ``weight`` (gamma) and ``bias`` (beta).

    - Training: use this batch's mean and *biased* variance (divide by n) to
      normalize, and update the running estimates as an exponential moving
      average, ``running = (1 - momentum) * running + momentum * batch_stat``,
      where the variance stored is the *unbiased* one (divide by n - 1).
    - Evaluation: use the running estimates, so an example's output does not
      depend on the rest of its batch.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True):
        super().__init__()
        if not 0 < momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}.")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels(x, self.num_features, "BatchNorm")
        dims = [0, *range(2, x.ndim)]  # every axis except the channels
        if self.training:
            n = x.numel() // x.shape[1]  # values per channel
            if n < 2:
                raise ValueError(f"BatchNorm in training needs more than 1 value per channel, got "
                                 f"input {tuple(x.shape)}; use a bigger batch or call model.eval().")
            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=False)
            with torch.no_grad():
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * n / (n - 1))  # unbiased
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        out = (x - _channel_view(mean, x.ndim)) / torch.sqrt(_channel_view(var, x.ndim) + self.eps)
        if self.weight is not None:
            out = out * _channel_view(self.weight, x.ndim) + _channel_view(self.bias, x.ndim)
        return out

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class LayerNorm(nn.Module):
    """Normalize each example over its last ``len(normalized_shape)`` axes (like ``nn.LayerNorm``).

    Statistics never mix examples, so the layer acts the same in training and
    evaluation and works with a batch of one (hence its use in transformers and RNNs).
    The learned weight and bias are per element of ``normalized_shape``.
    """

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5,
                 elementwise_affine: bool = True):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self.weight = nn.Parameter(torch.ones(shape)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(shape)) if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = len(self.normalized_shape)
        if tuple(x.shape[-k:]) != self.normalized_shape:
            raise ValueError(f"LayerNorm{self.normalized_shape} expects inputs ending in "
                             f"{self.normalized_shape}, got {tuple(x.shape)}.")
        out = normalize(x, list(range(x.ndim - k, x.ndim)), self.eps)
        return out * self.weight + self.bias if self.weight is not None else out


class InstanceNorm(nn.Module):
    """Normalize each channel of each example over its spatial axes (like ``nn.InstanceNorm2d``
    with its defaults: no running statistics, no affine unless asked).

    Used in style transfer: it removes each image's own contrast per channel.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = False):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels(x, self.num_features, "InstanceNorm")
        if x.ndim < 3:
            raise ValueError(f"InstanceNorm needs spatial axes, [N, C, H, W] or [N, C, L]; "
                             f"got {tuple(x.shape)}.")
        out = normalize(x, list(range(2, x.ndim)), self.eps)
        if self.weight is not None:
            out = out * _channel_view(self.weight, x.ndim) + _channel_view(self.bias, x.ndim)
        return out


class GroupNorm(nn.Module):
    """Split the channels into ``num_groups`` groups; normalize each group of each example
    over its channels and spatial axes (like ``nn.GroupNorm``). Weight and bias are per channel.

    ``num_groups=1`` is LayerNorm over ``(C, H, W)``; ``num_groups=C`` is InstanceNorm.
    Like LayerNorm it does not depend on the batch, so it suits small batches.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups}).")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels(x, self.num_channels, "GroupNorm")
        grouped = x.reshape(x.shape[0], self.num_groups, -1)  # [N, G, (C/G)*H*W]
        out = normalize(grouped, [2], self.eps).reshape(x.shape)
        if self.weight is not None:
            out = out * _channel_view(self.weight, x.ndim) + _channel_view(self.bias, x.ndim)
        return out


def weight_norm(v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The weight-norm reparametrization ``w = g * v / ||v||``, the norm taken per output unit
    (over every axis of ``v`` but the first); ``g`` has shape ``[out, 1, ...]``.

    It normalizes a *weight*, not activations: the direction ``v / ||v||`` and the
    length ``g`` of each unit's weight vector are learned separately.
    """
    if g.shape[0] != v.shape[0] or g.numel() != v.shape[0]:
        raise ValueError(f"g needs one entry per output unit ({v.shape[0]}), got shape {tuple(g.shape)}.")
    norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.ndim - 1)))
    return g.view_as(norm) * v / norm


class WeightNormLinear(nn.Module):
    """A linear layer whose weight is ``g * v / ||v||`` (one ``g`` per output unit).

    Starts from an ordinary ``nn.Linear`` initialization, with ``g = ||v||`` so the
    initial weight is unchanged (as ``torch.nn.utils.parametrizations.weight_norm`` does).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        base = nn.Linear(in_features, out_features, bias=bias)
        self.v = nn.Parameter(base.weight.detach().clone())
        self.g = nn.Parameter(self.v.detach().norm(dim=1, keepdim=True))
        self.bias = nn.Parameter(base.bias.detach().clone()) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        return weight_norm(self.v, self.g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)
