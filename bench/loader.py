"""One training epoch on Fashion-MNIST: torchvision ``DataLoader`` vs ``course_utils.data.Batches``.

    python -m bench.loader            # the full 60,000-image training split
    python -m bench.loader --quick    # the first 6,000 images (a few seconds)

Both paths train the same small model, a fully connected net 784-256-10
(``course_utils.models.mlp``), with the same batch size, the same SGD optimizer
and the same seed, for one epoch on 2 CPU threads:

(a) what a student writes first: ``torchvision.datasets.FashionMNIST`` with
    ``transforms.Compose([ToTensor(), Normalize(...)])`` applied to each item,
    batched by ``DataLoader(num_workers=0)``. Every image goes through the real
    torchvision code: uint8 tensor -> PIL image -> float tensor -> normalized,
    one at a time in Python, then ``default_collate`` stacks them.
(b) the course's in-memory path: ``load_fashion_mnist`` + ``to_float`` (the
    whole split normalized in one vectorized call) + ``Batches(shuffle=True)``,
    which slices each batch out of one tensor with a permutation of indices.

The model is deliberately small (a realistic first model, ~200k parameters)
because the model's compute is the same in both paths: a bigger model would
hide the data-loading cost that this benchmark is about. ``--model cnn`` runs
``SmallCNN(width=16)`` instead, where the ratio is smaller for that reason.

Each path's time includes its data preparation (reading the files and building
the dataset; or reading them, ``to_float`` and ``Batches``) and one full epoch;
the load part is also printed separately.
torchvision needs the raw, uncompressed IDX files under ``root/FashionMNIST/raw``:
they are written into a temporary folder from the real files first (not timed).
The last line is ``loader_speedup <wall time (a) / wall time (b)>``; CPU times are
printed too. Measure on an idle machine: when other programs keep the cores busy,
PyTorch's 2-thread tensor ops wait for each other (seen here: 8 ms instead of
0.1 ms per batch gather), which slows path (b) far more than the single-threaded
per-item path (a) and shrinks the ratio (idle, 2 cores: ~10; busy: 1-3).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from course_utils.data import STATS, Batches, load_fashion_mnist, to_float
from course_utils.models import SmallCNN, mlp

BATCH_SIZE = 128
LR = 0.05
MEAN, STD = STATS["fashion-mnist"]


def make_model(kind: str) -> nn.Module:
    """The small model both paths train, freshly seeded so both start from the same weights."""
    torch.manual_seed(0)
    return mlp([784, 256, 10]) if kind == "mlp" else SmallCNN(width=16)


def train_one_epoch(model: nn.Module, batches) -> tuple[int, float]:
    """Plain SGD over ``batches``; returns (number of batches, mean training loss)."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    n, total = 0, 0.0
    for x, y in batches:
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n, total = n + 1, total + loss.item()
    return n, total / max(n, 1)


def write_idx(path: Path, t: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file (the format of the original distribution)."""
    header = bytes([0, 0, 0x08, t.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in t.shape)
    path.write_bytes(header + t.contiguous().numpy().tobytes())


def raw_idx_folder(root: Path) -> Path:
    """Write the real Fashion-MNIST files, uncompressed, to ``root/FashionMNIST/raw``.

    torchvision's ``FashionMNIST`` reads only uncompressed IDX files from that
    folder; these are byte for byte what decompressing the distributed .gz
    files gives (``course_utils.data.read_idx`` checks their headers on load).
    """
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = load_fashion_mnist(split, download=False)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y.to(torch.uint8))
    return raw


def torchvision_path(root: Path, n: int | None, num_workers: int = 0):
    """(a) The per-item path: a torchvision dataset with PIL transforms and a DataLoader."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    ds = datasets.FashionMNIST(root, train=True, transform=tf, download=False)
    if n is not None:
        ds = Subset(ds, range(n))
    gen = torch.Generator().manual_seed(0)
    return DataLoader(ds, batch_size=BATCH_SIZE, shuffle=True, num_workers=num_workers, generator=gen)


def in_memory_path(root: Path, n: int | None) -> Batches:
    """(b) The course's path: whole tensors in memory, normalized once, sliced per batch.

    It reads the same uncompressed files as (a) from ``root``, so both pay for parsing them.
    """
    x, y = load_fashion_mnist("train", root=root, download=False)
    if n is not None:
        x, y = x[:n], y[:n]
    return Batches(to_float(x, MEAN, STD), y, batch_size=BATCH_SIZE, shuffle=True, seed=0)


def timed(label: str, make_data, model_kind: str) -> tuple[float, float]:
    """Build the data (timed as 'load'), train one epoch, print the times.

    Returns (wall seconds, CPU seconds of this process). The CPU time is printed too
    because on a shared, overloaded machine the wall time mostly measures the others.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    data = make_data()
    loaded = time.perf_counter()
    n_batches, loss = train_one_epoch(make_model(model_kind), data)
    end, cpu = time.perf_counter(), time.process_time() - cpu_start
    print(f"{label:46s} load {loaded - start:6.2f} s  epoch {end - loaded:6.2f} s  "
          f"total {end - start:6.2f} s  (cpu {cpu:6.2f} s; {n_batches} batches, mean loss {loss:.3f})",
          flush=True)
    return end - start, cpu


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="first 6,000 training images only")
    parser.add_argument("--limit", type=int, default=None, help="first LIMIT training images only")
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--workers", action="store_true",
                        help="also time (a) with num_workers=2 (an extra line, not in the ratio)")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))  # OMP_NUM_THREADS=1 on a shared machine
    n = args.limit or (6000 if args.quick else None)
    print(f"Fashion-MNIST train, {n or 60000} images, batch {BATCH_SIZE}, model {args.model}, "
          f"SGD(lr={LR}, momentum=0.9), {torch.get_num_threads()} threads, one epoch")
    with tempfile.TemporaryDirectory() as tmp:
        raw_idx_folder(Path(tmp))
        root = Path(tmp)
        t_a, cpu_a = timed("(a) torchvision + PIL transforms, workers=0", lambda: torchvision_path(root, n),
                    args.model)
        if args.workers:
            timed("    same with num_workers=2 (extra)", lambda: torchvision_path(root, n, 2), args.model)
        t_b, cpu_b = timed("(b) load_fashion_mnist + to_float + Batches", lambda: in_memory_path(root, n),
                    args.model)
    ratio = t_a / t_b
    print(f"(b) is {ratio:.1f}x faster than (a) for one epoch including data preparation "
          f"(CPU time ratio {cpu_a / cpu_b:.1f}x)")
    print(f"loader_speedup {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
