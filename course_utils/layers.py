"""Regularizers and normalization layers written from scratch (lesson 04).

Each class or function here is the plain version of something PyTorch has
built in, kept short so it can be read next to the maths. ``tests/test_layers.py``
checks every one against PyTorch's own: the point of writing them is to see
there is no magic inside ``nn.Dropout`` or ``nn.BatchNorm2d``.

Layout of the tensors: ``[N, C]`` for fully connected features and
``[N, C, H, W]`` (or ``[N, C, L]``) for images; ``N`` is the batch, ``C`` the
channels (features).
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------- dropout


def _check_p(p: float, name: str = "p") -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} is a probability and must be in [0, 1], got {p}.")
    return float(p)


def keep_mask(like: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A 0/1 mask shaped like ``like``: each entry is 1 (kept) with probability ``1 - p``.

    Drawn exactly as PyTorch's CPU dropout draws it (``bernoulli_(1 - p)`` on an
    empty tensor), so after the same ``torch.manual_seed`` both drop the same units.
    """
    return torch.empty_like(like).bernoulli_(1 - p, generator=generator)


class NaiveDropout(nn.Module):
    """Dropout as first described: zero each unit with probability ``p`` while training,
    and multiply everything by ``1 - p`` at evaluation time.

    The scaling at evaluation keeps the expected activation the same in both modes
    (in training a unit is on ``1 - p`` of the time). It works, but every deployed
    model must remember to scale; inverted dropout (``Dropout``) moves the scaling
    into training instead.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _check_p(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x * (1 - self.p)
        return x * keep_mask(x, self.p)


class Dropout(nn.Module):
    """Inverted dropout, what ``nn.Dropout`` does.

    Training: zero each unit with probability ``p`` and divide the survivors by
    ``1 - p`` (so the expected value is unchanged). Evaluation: the identity, so
    inference code needs no scaling at all.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _check_p(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.p == 1:  # everything dropped; avoid 0 / 0
            return x * 0
        return x * keep_mask(x, self.p).div_(1 - self.p)  # same order of operations as torch

    def extra_repr(self) -> str:
        return f"p={self.p}"


class DropConnectLinear(nn.Linear):
    """A linear layer that drops *weights* instead of activations (DropConnect).

    Training: each entry of the weight matrix is zeroed with probability ``p``
    (a new mask every forward pass) and the survivors are divided by ``1 - p``,
    as in inverted dropout; the bias is kept. Evaluation: the plain layer.
    Dropout removes a whole unit for one example; DropConnect removes single
    connections, so each example sees a different sparse layer.
    """

    def __init__(self, in_features: int, out_features: int, p: float = 0.5, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.p = _check_p(p)
        if self.p == 1:
            raise ValueError("DropConnectLinear with p=1 drops every weight; use p < 1.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return F.linear(x, self.weight, self.bias)
        w = self.weight * keep_mask(self.weight, self.p).div_(1 - self.p)
        return F.linear(x, w, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", p={self.p}"


# ----------------------------------------------------------------------------- normalization


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


# ----------------------------------------------------------------------------- losses


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a target *distribution* per example, averaged over the batch:
    ``mean_i( -sum_k q_ik log softmax(logits)_ik )``. With one-hot targets it is the usual CE."""
    if logits.shape != target_probs.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target probabilities "
                         f"{tuple(target_probs.shape)} must have the same shape [N, K].")
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def smooth_targets(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """Label smoothing's targets: ``(1 - smoothing)`` on the true class plus ``smoothing / K``
    spread over all ``K`` classes (the true class included, as PyTorch does)."""
    _check_p(smoothing, "smoothing")
    return F.one_hot(y, num_classes).float() * (1 - smoothing) + smoothing / num_classes


def label_smoothing_cross_entropy(logits: torch.Tensor, y: torch.Tensor,
                                  smoothing: float = 0.1) -> torch.Tensor:
    """Cross-entropy with smoothed one-hot targets; equals
    ``nn.CrossEntropyLoss(label_smoothing=smoothing)``. It stops the model from pushing
    logits to infinity to reach probability exactly 1, which tends to make it overconfident."""
    return soft_cross_entropy(logits, smooth_targets(y, logits.shape[1], smoothing))


class LabelSmoothingCrossEntropy(nn.Module):
    """``label_smoothing_cross_entropy`` as a loss module, e.g. for ``fit(loss_fn=...)``."""

    def __init__(self, smoothing: float = 0.1):
        super().__init__()
        self.smoothing = _check_p(smoothing, "smoothing")

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return label_smoothing_cross_entropy(logits, y, self.smoothing)


# ----------------------------------------------------------------------------- mixup


def mixup(x: torch.Tensor, y: torch.Tensor, lam: float, perm: torch.Tensor):
    """Mix each example with a partner: ``x_mix = lam * x + (1 - lam) * x[perm]``.

    Returns ``(x_mix, y, y[perm])``: the targets are mixed with the *same*
    permutation and the *same* ``lam`` as the inputs, through the loss
    (``mixup_loss``) or as soft targets (``mixup_targets``); both give the same number.
    """
    if len(perm) != len(x) or len(y) != len(x):
        raise ValueError(f"x ({len(x)}), y ({len(y)}) and perm ({len(perm)}) must have the same length.")
    return lam * x + (1 - lam) * x[perm], y, y[perm]


def mixup_loss(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float) -> torch.Tensor:
    """``lam * CE(logits, y_a) + (1 - lam) * CE(logits, y_b)``: the mixup loss."""
    return lam * F.cross_entropy(logits, y_a) + (1 - lam) * F.cross_entropy(logits, y_b)


def mixup_targets(y_a: torch.Tensor, y_b: torch.Tensor, lam: float, num_classes: int) -> torch.Tensor:
    """Mixed one-hot targets ``lam * onehot(y_a) + (1 - lam) * onehot(y_b)``."""
    return lam * F.one_hot(y_a, num_classes).float() + (1 - lam) * F.one_hot(y_b, num_classes).float()


class Mixup:
    """Wrap a batch iterable (``Batches`` or a ``DataLoader``) so it yields mixup batches:
    ``(x_mix, soft targets [N, K])``.

    ``lam ~ Beta(alpha, alpha)`` once per batch, ``perm`` a random permutation of
    the batch; both from this object's own seeded generators. ``nn.CrossEntropyLoss``
    accepts probability targets, so ``fit(model, Mixup(train), ...)`` needs no other change
    (its training accuracy is then not defined and shows as None).
    """

    def __init__(self, batches, num_classes: int, alpha: float = 0.2, seed: int = 0):
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0 (Beta(alpha, alpha)), got {alpha}.")
        self.batches, self.num_classes, self.alpha = batches, num_classes, alpha
        self.rng = random.Random(seed)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for x, y in self.batches:
            lam = self.rng.betavariate(self.alpha, self.alpha)
            perm = torch.randperm(len(x), generator=self.generator).to(x.device)
            x_mix, y_a, y_b = mixup(x, y, lam, perm)
            yield x_mix, mixup_targets(y_a, y_b, lam, self.num_classes)


# ----------------------------------------------------------------------------- augmentation


def shift_crop(x: torch.Tensor, pad: int, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Pad ``[N, C, H, W]`` images by ``pad`` (repeating the edge pixels), then cut an
    ``H x W`` window from each at its own offset ``(top[i], left[i])``, each in ``[0, 2 * pad]``.

    Offset ``(pad, pad)`` gives the original image back; others shift it.
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    rows = (top.view(n, 1) + torch.arange(h, device=x.device)).view(n, h, 1)
    cols = (left.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # indexing puts C last


class RandomFlipCrop:
    """Batch-level augmentation for ``Batches(transform=...)``: a random horizontal flip
    (probability ``flip_p``) and a random shift of up to ``pad`` pixels, drawn per image.

    A class, not a lambda, so it pickles (``DataLoader`` workers on Windows) and
    keeps its own seeded generator (reproducible, independent of the global seed).
    """

    def __init__(self, pad: int = 2, flip_p: float = 0.5, seed: int = 0):
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}.")
        self.pad, self.flip_p = pad, _check_p(flip_p, "flip_p")
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"RandomFlipCrop expects float images [N, C, H, W], got "
                             f"{x.dtype} {tuple(x.shape)}; convert with data.to_float first.")
        n = len(x)
        flip = (torch.rand(n, generator=self.generator) < self.flip_p).to(x.device)
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
        if self.pad == 0:
            return x
        top, left = torch.randint(0, 2 * self.pad + 1, (2, n), generator=self.generator).to(x.device)
        return shift_crop(x, self.pad, top, left)
