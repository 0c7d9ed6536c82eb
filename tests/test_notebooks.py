"""Notebook hygiene: what nbval does not check but a reader on GitHub or Colab would notice.

nbval itself runs every notebook in smoke mode (see pyproject's addopts).
"""

import os
import re
import subprocess
import sys
import tempfile
import types

import nbformat
import pytest

from tools.catalogue import ROOT, all_notebooks, is_student_copy

NOTEBOOKS = all_notebooks()
MAX_BYTES = 6_000_000
SHELL_ESCAPE = re.compile(r"^\s*(!|%%(bash|sh|script)|%sx\b|%system\b)", re.M)
MACHINE_PATHS = [str(ROOT), os.path.expanduser("~") + "/", tempfile.gettempdir() + "/",
                 "/usr/local/lib/python", "/root/", "site-packages"]
REPO = "dl-course/pytorch-course"


def ids(paths):
    return [str(p.relative_to(ROOT / "notebooks")) for p in paths]


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def test_there_are_notebooks():
    assert any(p.name.startswith("01_") for p in NOTEBOOKS), "lesson 01 is missing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_hygiene(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes"
    assert "widgets" not in nb.metadata, "widget state breaks GitHub's renderer: run tools/run_notebooks.py"
    cells = code_cells(nb)
    counts = [c.execution_count for c in cells]
    if is_student_copy(path):  # exercise cells lose their outputs and counts, the others keep them
        kept = [n for n in counts if n is not None]
        assert kept and kept == sorted(set(kept)), f"execution counts out of order: {counts}"
    else:
        assert None not in counts, f"{path.name} has unexecuted cells: run tools/run_notebooks.py"
        assert counts == list(range(1, len(cells) + 1)), f"execution counts out of order: {counts}"
    for cell in cells:
        assert not SHELL_ESCAPE.search(cell.source), f"shell escape in: {cell.source[:80]!r}"
        assert ".cuda()" not in cell.source, "use .to(device), never .cuda()"
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"error output in: {cell.source[:80]!r}"
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {})
            text = str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
            for frag in MACHINE_PATHS:
                assert frag not in text, f"machine path {frag!r} in an output of {cell.source[:60]!r}"
            for warning in ("DeprecationWarning", "FutureWarning"):
                assert warning not in text, f"{warning} in an output of {cell.source[:60]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_standard_first_cells(path):
    """A Colab badge on top, and a first code cell that sets up and prints versions and device."""
    nb = nbformat.read(path, as_version=4)
    first_md = next(c for c in nb.cells if c.cell_type == "markdown")
    rel = path.relative_to(ROOT).as_posix()
    assert f"colab.research.google.com/github/{REPO}/blob/main/{rel}" in first_md.source
    first = code_cells(nb)[0]
    assert 'if "google.colab" in sys.modules' in first.source
    assert "setup(" in first.source
    printed = "".join(o.get("text", "") for o in first.outputs)  # student copies keep it too
    assert "torch " in printed and "course_utils " in printed and "device " in printed


def _colab_part(source: str) -> str:
    """The lines of the first cell up to the course_utils imports: the Colab installer."""
    return source.split("from course_utils")[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_colab_install_only_in_colab(path, monkeypatch):
    source = _colab_part(code_cells(nbformat.read(path, as_version=4))[0].source)
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(source, str(path), "exec"), {})
    assert calls == [], "outside Colab the first cell must install nothing"
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(compile(source, str(path), "exec"), {})
    assert len(calls) == 1, "inside Colab the first cell installs course_utils once"
    cmd = calls[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    spec = cmd[-1]
    assert spec.startswith("course_utils") and f"github.com/{REPO}" in spec
    assert not any(re.match(r"(torch|torchvision|numpy)\b", a) for a in cmd), "pin nothing Colab has"
