"""Dropout written from scratch: naive, inverted and DropConnect (taught in lesson 04).

Each piece is the plain version of something PyTorch has built in, kept short
so it can be read next to the maths; ``tests/test_dropout.py`` checks it
against ``nn.Dropout`` bit for bit (same seed, same mask).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def check_probability(p: float, name: str = "p") -> float:
    """``p`` as a float, or a clear error naming ``name`` when it is not in [0, 1]."""
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
        self.p = check_probability(p)

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
        self.p = check_probability(p)

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
        self.p = check_probability(p)
        if self.p == 1:
            raise ValueError("DropConnectLinear with p=1 drops every weight; use p < 1.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return F.linear(x, self.weight, self.bias)
        w = self.weight * keep_mask(self.weight, self.p).div_(1 - self.p)
        return F.linear(x, w, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", p={self.p}"
