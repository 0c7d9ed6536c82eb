import random
import warnings

import numpy as np
import pytest
import torch

from course_utils import runtime


@pytest.mark.parametrize("value,expected", [("1", True), ("0", False), ("", False), ("true", True)])
def test_is_smoke_and_pick(monkeypatch, value, expected):
    monkeypatch.setenv("COURSE_SMOKE", value)
    assert runtime.is_smoke() is expected
    assert runtime.pick(smoke="s", full="f") == ("s" if expected else "f")


def test_is_smoke_rejects_garbage(monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "maybe")
    with pytest.raises(ValueError, match="COURSE_SMOKE"):
        runtime.is_smoke()


def test_seed_everything_reproduces_all_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3)

    g1 = runtime.seed_everything(7)
    a = draw()
    g2 = runtime.seed_everything(7)
    b = draw()
    assert a[:2] == b[:2] and torch.equal(a[2], b[2])
    assert torch.equal(torch.rand(2, generator=g1), torch.rand(2, generator=g2))


def test_get_device_default_and_forced(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    dev = runtime.get_device()
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert dev.type == expected
    assert runtime.get_device("cpu") == torch.device("cpu")


def test_get_device_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="not available"):
        runtime.get_device("cuda")
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="COURSE_DEVICE"):
        runtime.get_device()


def test_a_bad_device_name_names_the_variable(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "gpu")
    with pytest.raises(ValueError, match=r"^COURSE_DEVICE='gpu' is not a device name; use cpu, cuda"):
        runtime.get_device()
    with pytest.raises(ValueError, match=r"^prefer='GPU0' is not a device name"):
        runtime.get_device("GPU0")


def test_model_device_is_the_first_parameters_device():
    assert runtime.model_device(torch.nn.Linear(2, 2).to("meta")) == torch.device("meta")
    assert runtime.model_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters


def test_setup_prints_versions_and_device(capsys, monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    with warnings.catch_warnings():
        device = runtime.setup(seed=3)
    out = capsys.readouterr().out
    assert f"torch {torch.__version__}" in out and "course_utils " in out and f"device {device}" in out


def test_strict_warnings_turns_torch_deprecations_into_errors():
    with warnings.catch_warnings():
        runtime.strict_warnings()
        with pytest.raises(FutureWarning):
            warnings.warn_explicit("old API", FutureWarning, "x.py", 1, module="torch.nn.modules")
        warnings.warn_explicit("unrelated", DeprecationWarning, "x.py", 1, module="jupyter_client")
