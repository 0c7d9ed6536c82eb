"""Device choice, seeding and the smoke/full switch.

Every notebook starts with ``setup()``: it seeds everything, picks a device and
prints the versions, so a run can be reproduced from its first output.
"""

from __future__ import annotations

import os
import platform
import random
import warnings

import numpy as np
import torch

import course_utils

SMOKE_ENV = "COURSE_SMOKE"


def is_smoke() -> bool:
    """True when ``COURSE_SMOKE=1``: CI's tiny settings (still real data)."""
    value = os.environ.get(SMOKE_ENV, "0").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"{SMOKE_ENV}={value!r} is not understood; use 1 (smoke) or 0 (full).")


def pick(smoke, full):
    """Return ``smoke`` under ``COURSE_SMOKE=1`` and ``full`` otherwise.

    Example: ``epochs = pick(smoke=1, full=15)``.
    """
    return smoke if is_smoke() else full


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA if present, then Apple's MPS, then the CPU.

    ``prefer`` (or the env var ``COURSE_DEVICE``) forces one, e.g. ``"cpu"``;
    asking for a device this machine lacks is an error, never a silent fallback.
    """
    prefer = prefer or os.environ.get("COURSE_DEVICE")
    if prefer:
        device = torch.device(prefer)
        available = {
            "cpu": True,
            "cuda": torch.cuda.is_available(),
            "mps": torch.backends.mps.is_available(),
        }.get(device.type, False)
        if not available:
            raise RuntimeError(
                f"Device {prefer!r} was requested but is not available here. "
                "Unset COURSE_DEVICE (or pass prefer=None) to pick one automatically."
            )
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a seeded CPU generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS
    return torch.Generator().manual_seed(seed)


def setup(seed: int = 0) -> torch.device:
    """The first cell of every notebook: seed, pick the device, print versions."""
    seed_everything(seed)
    if is_smoke():
        strict_warnings()
    device = get_device()
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    print(
        f"torch {torch.__version__} | course_utils {course_utils.__version__} | "
        f"python {platform.python_version()} | device {device} | "
        f"mode {'smoke' if is_smoke() else 'full'} | seed {seed}"
    )
    return device


def strict_warnings() -> None:
    """Turn deprecation and future warnings raised via torch/torchvision into errors.

    ``setup()`` calls this under ``COURSE_SMOKE=1`` (CI), so a lesson never
    teaches an API that is on its way out; students only see the warning.
    """
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("error", category=category, module=r"(torch|torchvision|course_utils)(\.|$)")
        warnings.filterwarnings("error", category=category, module="__main__")
