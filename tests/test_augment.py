"""course_utils.augment: mixup by hand and against soft-target cross-entropy; flips and shifts
against torchvision's pad and crop."""

import random

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torch import nn
from torch.testing import assert_close

from course_utils import augment, losses
from course_utils.data import to_float


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_mixup_loss_equals_soft_target_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    x, y = randn(6, 1, 4, 4), torch.randint(0, 4, (6,), generator=gen)
    perm, lam = torch.randperm(6, generator=gen), 0.3
    x_mix, y_a, y_b = augment.mixup(x, y, lam, perm)
    assert_close(x_mix, 0.3 * x + 0.7 * x[perm])
    assert torch.equal(y_a, y) and torch.equal(y_b, y[perm])  # targets from labels, same perm
    logits = randn(6, 4, seed=3)
    soft = augment.mixup_targets(y_a, y_b, lam, 4)
    assert_close(augment.mixup_loss(logits, y_a, y_b, lam), losses.soft_cross_entropy(logits, soft))
    assert_close(augment.mixup_loss(logits, y_a, y_b, lam), nn.CrossEntropyLoss()(logits, soft))


def test_mixup_batches_are_mixed_consistently(fashion):
    images, labels = fashion
    x, y = to_float(images[:32]), labels[:32]
    xb, tb = next(iter(augment.Mixup([(x, y)], num_classes=10, alpha=0.4, seed=0)))
    again = next(iter(augment.Mixup([(x, y)], num_classes=10, alpha=0.4, seed=0)))
    assert torch.equal(xb, again[0]) and torch.equal(tb, again[1])  # seeded
    assert_close(tb.sum(1), torch.ones(32))
    # The same draws by hand: lam from Beta(alpha, alpha), one permutation for inputs AND targets.
    lam = random.Random(0).betavariate(0.4, 0.4)
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    assert_close(xb, lam * x + (1 - lam) * x[perm])
    assert_close(tb, lam * F.one_hot(y, 10).float() + (1 - lam) * F.one_hot(y[perm], 10).float())
    assert not torch.allclose(tb, F.one_hot(y, 10).float())  # really mixed

def test_shift_crop_matches_torchvision_pad_and_crop(fashion):
    x = to_float(fashion[0][:5])
    top, left = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([4, 2, 0, 1, 3])
    out = augment.shift_crop(x, 2, top, left)
    padded = TF.pad(x, [2, 2, 2, 2], padding_mode="edge")
    for i in range(5):
        assert_close(out[i], TF.crop(padded[i], int(top[i]), int(left[i]), 28, 28))
    assert_close(augment.shift_crop(x, 2, torch.full((5,), 2), torch.full((5,), 2)), x)  # centre = identity


def test_random_flip_crop(fashion):
    x = to_float(fashion[0][:20])
    assert torch.equal(augment.RandomFlipCrop(pad=0, flip_p=0.0)(x), x)
    assert torch.equal(augment.RandomFlipCrop(pad=0, flip_p=1.0)(x), x.flip(-1))
    out = augment.RandomFlipCrop(pad=2, seed=1)(x)
    assert not torch.equal(out, x)
    for i in range(20):  # each output is a flip and/or shift of its own input
        candidates = [augment.shift_crop(src[i:i + 1], 2, torch.tensor([t]), torch.tensor([s]))[0]
                      for src in (x, x.flip(-1)) for t in range(5) for s in range(5)]
        assert any(torch.equal(out[i], c) for c in candidates)
    with pytest.raises(ValueError, match="float images"):
        augment.RandomFlipCrop()(fashion[0][:2])
