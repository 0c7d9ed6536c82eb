"""Self-checks for exercises: a short success line, or an AssertionError that helps.

A failed check says what differs and where to look, never the expected value itself (it is
the answer). Also ``needs``, which makes a cell that depends on an earlier exercise say
what to run first, and ``show_source``, which prints a ``course_utils`` function so a
notebook can walk through the code it runs instead of keeping a second copy of it.
"""

from __future__ import annotations

import inspect
import math
import sys

import torch


def _as_tensor(value, name: str) -> torch.Tensor:
    """``value`` as a tensor, or an AssertionError a student can act on."""
    if value is None:
        raise AssertionError(f"{name} is None: does your function end with a `return`?")
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise AssertionError(f"{name} is a {type(value).__name__}, which is not a number or a tensor "
                             f"({e}).") from None


def _where(diff: torch.Tensor) -> str:
    """How many elements differ and where the largest difference is (never an expected value)."""
    if diff.numel() == 1:
        return ""  # the direction is added by check_close
    index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    return (f" in {int((diff > 0).sum())} of {diff.numel()} elements; the largest difference, "
            f"{_magnitude(diff.max().item())}, is at index {index}")


def _direction(actual: torch.Tensor, expected: torch.Tensor) -> str:
    """For a single number: whether it is smaller or larger than expected (a hint, not the value)."""
    if actual.numel() != 1 or actual.isnan().any() or expected.isnan().any():
        return ""
    return f" (yours is {'smaller' if actual.item() < expected.item() else 'larger'})"


def _magnitude(x: float) -> str:
    """``x`` as a power of ten ("about 1e-03"): tells precision from formula errors, hides the value."""
    return "infinite or NaN" if not math.isfinite(x) else f"about 1e{round(math.log10(x)):+03d}"


def check_close(actual, expected, name: str = "your result", hint: str | None = None,
                rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Compare with PyTorch's own result; print ✓ or raise an AssertionError that says what differs.

    The message names the shape, or how many elements differ and where, never the expected values.
    """
    actual_t, expected_t = _as_tensor(actual, name), _as_tensor(expected, "the reference")
    tip = f" Hint: {hint}" if hint else ""
    if actual_t.shape != expected_t.shape:
        shapes = f"shape {tuple(actual_t.shape)}, expected {tuple(expected_t.shape)}"
        raise AssertionError(f"{name}: {shapes}.{tip}")
    a, e = actual_t.detach().cpu().double(), expected_t.detach().cpu().double()
    bad = ~torch.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if bad.any():
        diff = torch.where(bad, (a - e).abs().nan_to_num(nan=float("inf")), torch.zeros_like(a))
        raise AssertionError(f"{name} differs from the reference{_where(diff)}{_direction(a, e)}.{tip}")
    print(f"✓ {name} matches the reference.")


def check_true(condition: bool, message: str, hint: str | None = None) -> None:
    """Print ✓ ``message`` when ``condition`` holds, otherwise raise with the hint."""
    if not condition:
        raise AssertionError(f"Not yet: {message}." + (f" Hint: {hint}" if hint else ""))
    print(f"✓ {message}.")


def needs(*names: str, first: str) -> None:
    """Raise a NameError saying what to run ``first`` if one of ``names`` is not defined yet.

    Put it at the top of a cell that uses an exercise's result, e.g.
    ``needs("model_hard", first="run the training cell of task 2")``: a student who skipped
    that exercise reads what to do instead of a bare ``NameError``.
    """
    defined = sys._getframe(1).f_globals  # the notebook's namespace when called from a cell
    missing = [n for n in names if n not in defined]
    if missing:
        raise NameError(f"{', '.join(missing)} not defined yet: {first}.")


def show_source(obj) -> None:
    """Print the source of a function or class (to read the package from a notebook)."""
    print(inspect.getsource(obj))
