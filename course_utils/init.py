"""Weight initializations written from their formulas (lesson 03).

Each ``*_`` function fills the weight ``w`` in place, like ``torch.nn.init``, and
returns it. Given the same ``generator`` it draws exactly the numbers
``torch.nn.init`` draws, so the tests compare them value for value, and also
statistically (bound, standard deviation, orthogonality).

A weight of shape ``[n_out, n_in, *kernel]`` (Linear: ``[n_out, n_in]``) takes
``fan_in = n_in * prod(kernel)`` inputs per output and sends each input to
``fan_out = n_out * prod(kernel)`` outputs.

Why the formulas: a unit computes ``y = sum_i w_i x_i`` over ``fan_in`` inputs, so
with independent zero-mean weights ``Var(y) = fan_in * Var(w) * E[x^2]``. Keeping the
signal's scale from layer to layer asks for ``Var(w) = 1 / fan_in`` forward and
``1 / fan_out`` backward: Glorot and Bengio (2010) take the compromise
``2 / (fan_in + fan_out)``. A ReLU zeroes half of a symmetric input, so
``E[relu(y)^2] = Var(y) / 2``: He et al. (2015) double the variance to ``2 / fan_in``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

GAINS = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "conv_transpose1d": 1.0,
         "conv_transpose2d": 1.0, "conv_transpose3d": 1.0, "sigmoid": 1.0, "tanh": 5 / 3,
         "relu": math.sqrt(2.0), "selu": 3 / 4}


def _check_weight(w) -> None:
    if not torch.is_tensor(w) or w.ndim < 2:
        shape = tuple(w.shape) if torch.is_tensor(w) else type(w).__name__
        raise ValueError(f"Initializers need a weight with at least 2 dimensions "
                         f"([n_out, n_in, ...]), got {shape}. Biases are usually set to zero instead.")


def fans(w: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight ``[n_out, n_in, *kernel]``."""
    _check_weight(w)
    receptive_field = math.prod(w.shape[2:])  # 1 for a Linear weight
    return w.shape[1] * receptive_field, w.shape[0] * receptive_field


def calculate_gain(nonlinearity: str, negative_slope: float = 0.01) -> float:
    """The factor by which to scale the weights' std for ``nonlinearity`` (torch's values).

    ReLU: sqrt(2) undoes the halving of E[x^2]; leaky ReLU with slope a keeps the fraction
    (1 + a^2) / 2 of it, so sqrt(2 / (1 + a^2)). Tanh: 5/3 and SELU: 3/4 are empirical
    choices. Sigmoid: PyTorch says 1, although its slope at 0 is 1/4, which argues for 4
    in its near-linear range (lesson 03 measures both).
    """
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1 + negative_slope**2))
    if nonlinearity not in GAINS:
        raise ValueError(f"Unknown nonlinearity {nonlinearity!r}; use one of "
                         f"{sorted(GAINS) + ['leaky_relu']}.")
    return GAINS[nonlinearity]


def xavier_uniform_(w: torch.Tensor, gain: float = 1.0, generator=None) -> torch.Tensor:
    """Glorot/Xavier uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).

    U(-a, a) has variance a^2 / 3, so this gives Var(w) = gain^2 * 2 / (fan_in + fan_out).
    The square root covers the whole fraction.
    """
    fan_in, fan_out = fans(w)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return w.uniform_(-bound, bound, generator=generator)


def xavier_normal_(w: torch.Tensor, gain: float = 1.0, generator=None) -> torch.Tensor:
    """Glorot/Xavier normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(w)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    with torch.no_grad():
        return w.normal_(0.0, std, generator=generator)


def _kaiming_std(w, mode: str, nonlinearity: str, negative_slope: float) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' (keeps the forward signal) or 'fan_out' "
                         f"(keeps the backward gradient), got {mode!r}.")
    fan_in, fan_out = fans(w)
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, negative_slope) / math.sqrt(fan)


def kaiming_normal_(w: torch.Tensor, mode: str = "fan_in", nonlinearity: str = "relu",
                    negative_slope: float = 0.0, generator=None) -> torch.Tensor:
    """He/Kaiming normal: N(0, std^2) with std = gain / sqrt(fan); for ReLU, Var(w) = 2 / fan_in.

    ``negative_slope`` is used for ``nonlinearity="leaky_relu"`` (torch calls it ``a``).
    """
    std = _kaiming_std(w, mode, nonlinearity, negative_slope)
    with torch.no_grad():
        return w.normal_(0.0, std, generator=generator)


def kaiming_uniform_(w: torch.Tensor, mode: str = "fan_in", nonlinearity: str = "relu",
                     negative_slope: float = 0.0, generator=None) -> torch.Tensor:
    """He/Kaiming uniform: U(-a, a) with a = sqrt(3) * gain / sqrt(fan), the same variance."""
    bound = math.sqrt(3.0) * _kaiming_std(w, mode, nonlinearity, negative_slope)
    with torch.no_grad():
        return w.uniform_(-bound, bound, generator=generator)


def orthogonal_(w: torch.Tensor, gain: float = 1.0, generator=None) -> torch.Tensor:
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al., 2013).

    An orthogonal matrix keeps every vector's length, so a deep linear stack neither
    shrinks nor blows up the signal, in any direction. Recipe: take a Gaussian matrix
    [rows, cols] (rows = n_out, cols = the rest flattened), QR-factorize its taller
    orientation, and flip each column of Q by the sign of R's diagonal, which makes Q
    uniformly distributed over orthogonal matrices (QR alone would favour some). The
    result has orthonormal rows (rows <= cols) or orthonormal columns (rows > cols).
    """
    _check_weight(w)
    rows, cols = w.shape[0], w.numel() // w.shape[0]
    a = w.new_empty((rows, cols)).normal_(0.0, 1.0, generator=generator)
    if rows < cols:
        a = a.T  # QR wants a tall matrix
    q, r = torch.linalg.qr(a)
    q = q * torch.diagonal(r).sign()  # column j times sign(R[j, j])
    if rows < cols:
        q = q.T
    with torch.no_grad():
        return w.copy_(q.reshape(w.shape)).mul_(gain)


def shrink_last_layer_(model: nn.Module, factor: float = 0.01) -> nn.Linear:
    """Scale the last ``nn.Linear`` of ``model`` by ``factor`` and zero its bias, in place; return it.

    At initialization a classifier knows nothing, so it should give every one of its C classes
    about the same probability: a cross-entropy of ln C (2.30 for 10 classes). Large logits
    start it higher, with confident wrong answers that the first steps only undo. Shrinking the
    last layer (not to 0: ``factor`` must be > 0) makes the logits small and the start honest.
    """
    if not factor > 0:
        raise ValueError(f"factor must be > 0 (a smaller last layer, not a zero one), got {factor}.")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"shrink_last_layer_ found no nn.Linear in {type(model).__name__}.")
    last = linears[-1]
    with torch.no_grad():
        last.weight.mul_(factor)
        if last.bias is not None:
            last.bias.zero_()
    return last
