"""Device choice, seeding and the smoke/full switch.

Every notebook starts with ``setup()``: it seeds everything, picks a device and
prints the versions, so a run can be reproduced from its first output.
"""

from __future__ import annotations

import os
import platform
import random
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

import course_utils

SMOKE_ENV = "COURSE_SMOKE"


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def atomic_write(path: str | Path, data: bytes | str, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` all at once: a temp file in the same folder, fsync, rename.

    A reader (or a crash) sees the old file or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
    source = "prefer" if prefer else "COURSE_DEVICE"
    prefer = prefer or os.environ.get("COURSE_DEVICE")
    if prefer:
        try:
            device = torch.device(prefer)
        except RuntimeError:
            raise ValueError(f"{source}={prefer!r} is not a device name; use cpu, cuda, cuda:1 or mps "
                             "(or unset COURSE_DEVICE to pick one automatically).") from None
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
