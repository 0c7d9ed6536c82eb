"""Losses against soft targets: cross-entropy on a target distribution and label smoothing
(taught in lesson 04; the homework's soft pseudo-labels are the same idea).

``tests/test_losses.py`` checks them against ``F.cross_entropy`` (which accepts
probability targets and ``label_smoothing=``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.dropout import check_probability


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
    check_probability(smoothing, "smoothing")
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
        self.smoothing = check_probability(smoothing, "smoothing")

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return label_smoothing_cross_entropy(logits, y, self.smoothing)
