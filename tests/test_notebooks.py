"""Notebook hygiene: what nbval does not check but a reader on GitHub or Colab would notice.

nbval itself runs every notebook in smoke mode (see pyproject's addopts).
"""

import ast
import inspect
import os
import re
import subprocess
import sys
import tempfile
import types

import nbformat
import pytest

from course_utils.check_env import colab_spec
from tools.catalogue import ROOT, all_notebooks

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
    # Student copies too: exercise cells lose their outputs, never their place in the run.
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
    assert spec == colab_spec(), "the Colab cell installs what the lessons import (check_env.colab_spec)"
    assert not any(re.match(r"(torch|torchvision|numpy)\b", a) for a in cmd), "pin nothing Colab has"


CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not tab, newline or carriage return
FROZEN_BAR = "?it/s]"  # tqdm's first frame ("0%| | 0/200 [00:00<?, ?it/s]"): a bar saved before it moved


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_no_control_characters_in_markdown(path):
    for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type == "markdown":
            found = CONTROL.search(cell.source)
            assert not found, (f"cell {i}: control character {found.group()!r} in "
                               f"{cell.source[max(0, found.start() - 30):found.end() + 10]!r} "
                               "(a backslash escape such as '\\b' in a non-raw string?)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_no_unfinished_progress_bars(path):
    for i, cell in enumerate(code_cells(nbformat.read(path, as_version=4))):
        for out in cell.get("outputs", []):
            text = str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
            assert FROZEN_BAR not in text, (f"code cell {i} shows a progress bar frozen at its start: "
                                            f"{text[:80]!r}; re-run with python -m tools.run_notebooks")


def _show_source_calls(cell) -> list[ast.expr]:
    """The argument of every top-level ``show_source(X)`` call in a cell."""
    calls = [n for n in ast.walk(ast.parse(cell.source)) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name) and n.func.id == "show_source" and n.args]
    return [c.args[0] for c in sorted(calls, key=lambda c: (c.lineno, c.col_offset))]


def _course_imports(nb) -> dict:
    """A namespace holding what the notebook imports from course_utils (to resolve show_source's argument)."""
    namespace: dict = {}
    for cell in code_cells(nb):
        for node in ast.parse(cell.source).body:
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if (module or "").startswith("course_utils"):
                exec(compile(ast.Module(body=[node], type_ignores=[]), "imports", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_show_source_outputs_are_the_current_source(path):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in code_cells(nb) if "show_source(" in c.source and c.get("outputs")]
    namespace = _course_imports(nb) if cells else {}
    for cell in cells:
        printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        for arg in _show_source_calls(cell):
            obj = eval(compile(ast.Expression(arg), "show_source", "eval"), namespace)
            assert inspect.getsource(obj) in printed, (
                f"the output of show_source({ast.unparse(arg)}) is not the current source: "
                f"re-run {path.name} with python -m tools.run_notebooks")
