"""course_utils.losses against nn.CrossEntropyLoss (probability targets, label_smoothing=)."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from course_utils import losses


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3, 1.0])
def test_label_smoothing_matches_cross_entropy_loss(smoothing):
    logits, y = randn(8, 5) * 3, torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(1))
    expected = nn.CrossEntropyLoss(label_smoothing=smoothing)(logits, y)
    assert_close(losses.label_smoothing_cross_entropy(logits, y, smoothing), expected)
    assert_close(losses.LabelSmoothingCrossEntropy(smoothing)(logits, y), expected)
    assert_close(losses.smooth_targets(y, 5, smoothing).sum(1), torch.ones(8))


def test_soft_cross_entropy_with_one_hot_targets_is_the_usual_one():
    logits, y = randn(7, 4), torch.tensor([0, 1, 2, 3, 0, 1, 2])
    assert_close(losses.soft_cross_entropy(logits, nn.functional.one_hot(y, 4).float()),
                 nn.functional.cross_entropy(logits, y))
    with pytest.raises(ValueError, match="same shape"):
        losses.soft_cross_entropy(logits, torch.ones(7, 5) / 5)
