"""bench.loader: both paths train on the same real data in the same number of batches.

No timing is asserted (the machine's load decides that); only that the comparison is fair.
"""

import re

import pytest
import torch

from bench import loader as bench
from course_utils.data import load_fashion_mnist


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory):
    """The uncompressed IDX files that torchvision's FashionMNIST reads, written once."""
    root = tmp_path_factory.mktemp("fashion")
    bench.raw_idx_folder(root)
    return root


def test_torchvision_reads_the_same_images(raw_root):
    from torchvision import datasets

    for train, split in ((True, "train"), (False, "test")):
        ds = datasets.FashionMNIST(raw_root, train=train, download=False)
        x, y = load_fashion_mnist(split, download=False)
        assert torch.equal(ds.data, x) and torch.equal(ds.targets, y)


def test_both_paths_yield_the_same_epoch(raw_root):
    n = 1000  # not a multiple of the batch size: the last, short batch must be there in both
    a = list(bench.torchvision_path(raw_root, n))
    b = list(bench.in_memory_path(raw_root, n))
    assert len(a) == len(b) == -(-n // bench.BATCH_SIZE)
    assert [len(y) for _, y in a] == [len(y) for _, y in b]
    xa, ya = torch.cat([x for x, _ in a]), torch.cat([y for _, y in a])
    xb, yb = torch.cat([x for x, _ in b]), torch.cat([y for _, y in b])
    assert xa.shape == xb.shape == (n, 1, 28, 28)
    # Shuffled differently, but the same images normalised the same way: sort both by an exact
    # integer key computed from the recovered uint8 pixels, then compare.
    weights = torch.randint(1, 1000, (784,), generator=torch.Generator().manual_seed(0))

    def key(x, y):
        u8 = (x.flatten(1) * bench.STD[0] + bench.MEAN[0]).mul(255).round().long()
        return (u8 * weights).sum(1) * 10 + y

    order_a, order_b = torch.argsort(key(xa, ya)), torch.argsort(key(xb, yb))
    torch.testing.assert_close(xa[order_a], xb[order_b], atol=1e-5, rtol=1e-5)
    assert torch.equal(ya[order_a], yb[order_b])
    assert abs(float(xb.mean())) < 0.2 and abs(float(xb.std()) - 1) < 0.2  # standardised


def test_main_prints_the_ratio_last(capsys):
    ratio = bench.main(["--limit", "512"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"loader_speedup \d+\.\d\d", lines[-1])
    assert float(lines[-1].split()[1]) == round(ratio, 2) and ratio > 0
    assert sum("batches" in line for line in lines) == 2  # (a) and (b), both trained
