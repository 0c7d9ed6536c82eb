import pytest
import torch

from course_utils.checks import check_close, check_true, show_source


def test_check_close_passes_and_prints(capsys):
    check_close(torch.ones(3), torch.ones(3), name="ones")
    assert "✓ ones matches" in capsys.readouterr().out


def test_check_close_explains_differences():
    with pytest.raises(AssertionError, match=r"largest difference 0\.5.*Hint: look at eps"):
        check_close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]), hint="look at eps")
    with pytest.raises(AssertionError, match=r"shape \(2,\), expected \(3,\)"):
        check_close(torch.zeros(2), torch.zeros(3))


def test_check_true(capsys):
    check_true(True, "accuracy above chance")
    assert "✓ accuracy above chance" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="Not yet: loss went down. Hint: lr"):
        check_true(False, "loss went down", hint="lr")


def test_show_source(capsys):
    show_source(check_true)
    assert "def check_true" in capsys.readouterr().out
