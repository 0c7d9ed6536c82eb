"""Self-checks for exercises: a short success line, or an AssertionError that helps.

Also ``show_source``, which prints a ``course_utils`` function so a notebook
can walk through the code it runs instead of keeping a second copy of it.
"""

from __future__ import annotations

import inspect

import torch


def check_close(actual, expected, name: str = "your result", hint: str | None = None,
                rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Compare with PyTorch's own result; print ✓ or raise an AssertionError that says what differs."""
    actual_t, expected_t = torch.as_tensor(actual), torch.as_tensor(expected)
    if actual_t.shape != expected_t.shape:
        raise AssertionError(f"{name}: shape {tuple(actual_t.shape)}, expected "
                             f"{tuple(expected_t.shape)}." + (f" Hint: {hint}" if hint else ""))
    try:
        torch.testing.assert_close(actual_t, expected_t, rtol=rtol, atol=atol,
                                   check_dtype=False, check_device=False)
    except AssertionError as e:
        diff = (actual_t.double() - expected_t.double()).abs().max().item()
        raise AssertionError(f"{name} differs from the reference (largest difference {diff:.3g})."
                             + (f" Hint: {hint}" if hint else "") + f"\n{e}") from None
    print(f"✓ {name} matches the reference.")


def check_true(condition: bool, message: str, hint: str | None = None) -> None:
    """Print ✓ ``message`` when ``condition`` holds, otherwise raise with the hint."""
    if not condition:
        raise AssertionError(f"Not yet: {message}." + (f" Hint: {hint}" if hint else ""))
    print(f"✓ {message}.")


def show_source(obj) -> None:
    """Print the source of a function or class (to read the package from a notebook)."""
    print(inspect.getsource(obj))
