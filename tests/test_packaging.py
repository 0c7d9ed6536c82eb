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


def extra_requirements(project: dict, extra: str) -> list[str]:
    """The requirements of ``extra``, following ``course_utils[other]`` entries into other extras."""
    out = []
    for text in project["optional-dependencies"][extra]:
        req = Requirement(text)
        if req.name == "course_utils":
            out += [r for other in sorted(req.extras) for r in extra_requirements(project, other)]
        else:
            out.append(text)
    return out


def test_environment_yml_matches_pyproject():
    project = pyproject()
    wanted = project["dependencies"] + extra_requirements(project, "lessons")
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


# --------------------------------------------------------- one public address, everywhere
REPO_REFERENCES = [  # (what, pattern whose first group is owner/name)
    ("Colab badge or link", re.compile(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/")),
    ("pip install from git", re.compile(r"git\+https?://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?(?=[@\"'\s)\\#]|$)")),
    ("git clone", re.compile(r"git clone https?://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?(?=[\s\"'`)]|$)")),
    ("GitHub Actions badge", re.compile(r"github\.com/([\w.-]+/[\w.-]+)/actions/workflows/")),
]
COLAB_PATH = re.compile(r"colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/([\w.-]+)/([^\s)\"'\\]+)")


def repository_slug() -> str:
    """``owner/name`` from ``[project.urls] Repository``: the one place the address is written."""
    url = pyproject()["urls"]["Repository"]
    m = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)/?", url)
    assert m, f"[project.urls] Repository should be https://github.com/OWNER/NAME, not {url!r}"
    return m.group(1)


def repo_references(text: str) -> list[tuple[str, str]]:
    """Every (kind, owner/name) that a badge, Colab link or install line in ``text`` names."""
    return [(kind, m.group(1)) for kind, pattern in REPO_REFERENCES for m in pattern.finditer(text)]


def published_texts() -> dict[str, str]:
    """The README, environment.yml and every notebook (raw JSON: links, badges, install cells)."""
    paths = [ROOT / "README.md", ROOT / "environment.yml", *sorted((ROOT / "notebooks").rglob("*.ipynb"))]
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in paths
            if p.is_file() and ".ipynb_checkpoints" not in p.parts}


def test_every_badge_and_install_line_names_the_repository():
    slug = repository_slug()
    texts = published_texts()
    wrong = [(name, kind, found) for name, text in texts.items()
             for kind, found in repo_references(text) if found != slug]
    assert not wrong, f"these name another repository than pyproject's {slug}: {wrong[:5]}"
    for name, text in texts.items():
        if name.endswith(".ipynb"):  # each notebook has its Colab badge and its Colab install line
            kinds = {kind for kind, _ in repo_references(text)}
            assert {"Colab badge or link", "pip install from git"} <= kinds, f"{name}: {sorted(kinds)}"


def test_colab_links_open_files_that_exist_on_main():
    for name, text in published_texts().items():
        for branch, path in COLAB_PATH.findall(text):
            assert branch == "main", f"{name}: a Colab link opens branch {branch!r}"
            assert (ROOT / path).is_file(), f"{name}: a Colab link opens {path}, which does not exist"


def test_the_address_check_can_fail():
    """The scanner really reads each kind of line (so the test above is not vacuous)."""
    text = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            "(https://colab.research.google.com/github/someone/fork/blob/main/notebooks/01_tensors.ipynb)\n"
            '"course_utils[colab] @ git+https://github.com/someone/fork"\n'
            "git clone https://github.com/someone/fork.git\n"
            "![ci](https://github.com/someone/fork/actions/workflows/ci.yml/badge.svg)")
    assert sorted(repo_references(text)) == sorted(
        [(kind, "someone/fork") for kind, _ in REPO_REFERENCES])


# ----------------------------------------------------------------- what Colab installs
def closure(dist: str, extras: set[str], seen: set[str]) -> set[str]:
    """Every distribution that installing ``dist[extras]`` brings in, from the installed metadata."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.utils import canonicalize_name

    name = canonicalize_name(dist)
    key = f"{name}[{','.join(sorted(extras))}]"
    if key in seen:
        return set()
    seen.add(key)
    found = {name}
    try:
        reqs = [Requirement(r) for r in requires(name) or []]
    except PackageNotFoundError:
        return found
    for req in reqs:
        envs = [{"extra": e} for e in extras] or [{"extra": ""}]
        if req.marker is None or any(req.marker.evaluate(e) for e in envs):
            found |= closure(req.name, set(req.extras), seen)
    return found


def notebook_imports() -> set[str]:
    """Top-level modules the notebooks import, less the standard library."""
    import ast

    import nbformat

    mods = set()
    for path in (ROOT / "notebooks").rglob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            code = "\n".join(ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.Import):
                    mods |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    mods.add(node.module.split(".")[0])
    return {m for m in mods if m not in sys.stdlib_module_names}


def test_colab_spec_installs_everything_the_notebooks_import():
    """The Colab cell's ``course_utils[colab]`` brings every module a notebook imports."""
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    from course_utils.check_env import COLAB_EXTRA

    installed = closure("course_utils", {COLAB_EXTRA}, set())
    owners = packages_distributions()
    imports = notebook_imports()
    assert {"torch", "course_utils", "skimage"} <= imports, imports
    uncovered = {m: owners.get(m) for m in imports
                 if not {canonicalize_name(d) for d in owners.get(m, [])} & installed}
    assert not uncovered, f"notebooks import these, not installed by course_utils[{COLAB_EXTRA}]: {uncovered}"
