"""Packaging as students meet it: pip into an environment that has torch, and conda.

- Colab already has torch, torchvision and numpy, built for its GPU. Installing
  ``course_utils`` there must not replace them: ``pip install --dry-run --report`` in this
  environment (which has torch) must plan to install none of them. Offline: ``--no-index``
  (everything it needs is installed, so pip never has to ask an index) and
  ``--no-build-isolation`` (so building the project's metadata needs no setuptools download).
- ``environment.yml`` (conda) and ``pyproject.toml`` (pip) declare the same dependencies
  with the same lower bounds and the same Python bound, so the two never drift.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
COLAB_HAS = {"torch", "torchvision", "numpy"}
CONDA_TO_PIP = {"pytorch": "torch"}


def project_copy(dest: Path) -> Path:
    """The files pip needs to build the project, copied (a build writes *.egg-info beside them)."""
    dest.mkdir()
    shutil.copy(ROOT / "pyproject.toml", dest)
    for name in ("README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, dest)
    shutil.copytree(ROOT / "course_utils", dest / "course_utils",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest


def dry_run(spec: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    """What ``pip install spec`` would install here, by distribution name (no network)."""
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--report", str(report),
           "--no-index", "--no-build-isolation", "--quiet", spec]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                         env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
    if run.returncode != 0:
        return run, []
    names = [item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]]
    return run, names


@pytest.mark.parametrize("extra", ["", "[lessons]"])
def test_pip_install_keeps_the_torch_already_there(extra, tmp_path):
    project = project_copy(tmp_path / "project")
    run, names = dry_run(f"{project}{extra}", tmp_path)
    assert run.returncode == 0, f"pip could not resolve the project offline:\n{run.stderr[-3000:]}"
    assert names and names[0].replace("-", "_") == "course_utils", names
    assert not COLAB_HAS & set(names), f"installing course_utils would replace {COLAB_HAS & set(names)}"


def test_dry_run_notices_a_bound_the_environment_does_not_meet(tmp_path):
    """The check above can fail: a numpy bound above the installed numpy cannot be met."""
    project = project_copy(tmp_path / "project")
    toml = project / "pyproject.toml"
    text, n = re.subn(r'"numpy>=[^"]*"', '"numpy>=999"', toml.read_text())
    assert n == 1
    toml.write_text(text)
    run, names = dry_run(str(project), tmp_path)
    assert run.returncode != 0 and "numpy" in run.stderr, (run.returncode, names)


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def conda_env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def conda_spec(entry: str) -> tuple[str, SpecifierSet]:
    """``"pytorch>=2.2"`` -> ``("torch", SpecifierSet(">=2.2"))`` (pip's name and bound)."""
    m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*(.*?)\s*", entry)
    assert m, f"cannot read the environment.yml entry {entry!r}"
    name = m.group(1).lower()
    return CONDA_TO_PIP.get(name, name), SpecifierSet(m.group(2).replace(" ", ""))


def test_environment_yml_matches_pyproject():
    project = pyproject()
    wanted = project["dependencies"] + project["optional-dependencies"]["lessons"]
    pip_side = {Requirement(r).name.lower(): Requirement(r).specifier for r in wanted}
    entries = [e for e in conda_env()["dependencies"] if isinstance(e, str)]
    conda_side = dict(conda_spec(e) for e in entries)
    python = conda_side.pop("python", None)
    conda_side.pop("pip", None)
    assert sorted(conda_side) == sorted(pip_side), (
        f"only in environment.yml: {sorted(set(conda_side) - set(pip_side))}; "
        f"only in pyproject.toml: {sorted(set(pip_side) - set(conda_side))}")
    for name, spec in pip_side.items():
        assert conda_side[name] == spec, f"{name}: pyproject says {spec}, environment.yml {conda_side[name]}"
    assert python == SpecifierSet(project["requires-python"]), (
        f"python: pyproject says {project['requires-python']}, environment.yml {python}")


def test_environment_yml_installs_the_course_package():
    env = conda_env()
    assert "conda-forge" in env.get("channels", []), "pytorch and the rest come from conda-forge"
    pip_lists = [e["pip"] for e in env["dependencies"] if isinstance(e, dict) and "pip" in e]
    assert pip_lists and any(re.fullmatch(r"(-e\s+)?\.", x.strip()) for x in pip_lists[0]), (
        "environment.yml must pip-install this folder (`- pip: [-e .]`) to get course_utils")
