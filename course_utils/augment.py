"""Data augmentation on whole batches: mixup and random flips and shifts (taught in lesson 04).

Mixup lives here, beside the flips and shifts, because it makes new training
examples from old ones; its loss (``mixup_loss``) and soft targets
(``mixup_targets``) stay with it, as they only make sense together.
Both kinds plug into training the same way: ``Batches(..., transform=RandomFlipCrop())``
or ``Mixup(batches)``, then ``fit`` as usual. ``tests/test_augment.py`` checks
them against torchvision and by hand.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from course_utils.dropout import check_probability

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


# ----------------------------------------------------------------------------- flips and shifts


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
        self.pad, self.flip_p = pad, check_probability(flip_p, "flip_p")
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
