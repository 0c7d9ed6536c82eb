"""Shared test set-up: smoke settings everywhere (notebook kernels inherit the env)."""

import os

os.environ["COURSE_SMOKE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, torch.get_num_threads(), os.cpu_count() or 1)))


@pytest.fixture
def fashion():
    """The real Fashion-MNIST test split (10k images), loaded through the real code."""
    from course_utils.data import load_fashion_mnist

    return load_fashion_mnist("test")  # Debian package or COURSE_DATA offline; else downloads once
