import pytest
import torch

from course_utils import homework


def test_labeled_split_is_balanced_seeded_and_disjoint():
    _, y = homework.load_split("mnist-5k", "train")
    lab, unlab = homework.labeled_split(y)
    assert len(lab) == 100 and len(unlab) == len(y) - 100
    assert torch.equal(torch.bincount(y[lab]), torch.full((10,), 10))  # >= 8 per class
    assert not set(lab.tolist()) & set(unlab.tolist())
    lab2, _ = homework.labeled_split(y)
    assert torch.equal(lab, lab2)
    assert not torch.equal(homework.labeled_split(y, seed=1)[0], lab)
    with pytest.raises(ValueError, match="multiple of 10"):
        homework.labeled_split(y, 95)


def test_prepare_and_model_contract():
    x, _ = homework.load_split("mnist-5k", "test")
    xf = homework.prepare(x)
    assert xf.shape == (1000, 1, 28, 28) and abs(xf.mean().item()) < 0.1
    model = homework.new_model()
    assert model(xf[:4]).shape == (4, 10)
    with pytest.raises(ValueError, match="dataset must be one of"):
        homework.load_split("cifar10")
