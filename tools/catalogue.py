"""The one home of the list of notebooks: which exist, which are sources, which are generated.

Layout (``notebooks/`` at the repository root):

- ``notebooks/solutions/NN_<name>_solution.ipynb``: the single source of a lesson or of the
  homework, with its answers. These are executed with full settings and committed with outputs.
- ``notebooks/NN_<name>.ipynb``: the copy a student opens. When a solution exists it is
  *generated* from it by ``tools.make_student`` (a "student copy"), never edited by hand.

Everything here works on a copy of the folder too (the browser test and ``bench.course``
run temporary copies): a path is a student copy when its solution sits beside it.
Checkpoint folders (``.ipynb_checkpoints``) are never listed.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOLUTIONS = "solutions"  # sub-folder of the notebooks folder holding the sources
SUFFIX = "_solution"
NAME = re.compile(r"^\d\d_\w+\.ipynb$")


def all_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """Every course notebook under ``folder`` (solutions and student copies), sorted by path."""
    paths = [folder / p.name for p in folder.glob("*.ipynb")]
    paths += list((folder / SOLUTIONS).glob("*.ipynb"))
    return sorted(p for p in paths if NAME.match(p.name) and ".ipynb_checkpoints" not in p.parts)


def solution_of(student: Path) -> Path:
    """Where the source of the student copy ``student`` lives (it may not exist)."""
    return student.parent / SOLUTIONS / f"{student.stem}{SUFFIX}.ipynb"


def student_of(solution: Path) -> Path:
    """The student copy written from ``solution`` (``solutions/NN_x_solution.ipynb`` -> ``NN_x.ipynb``)."""
    if solution.parent.name != SOLUTIONS or not solution.stem.endswith(SUFFIX):
        raise ValueError(f"{solution} is not a notebooks/{SOLUTIONS}/NN_<name>{SUFFIX}.ipynb file")
    return solution.parent.parent / f"{solution.stem[: -len(SUFFIX)]}.ipynb"


def is_student_copy(path: Path) -> bool:
    """True for a notebook generated from a solution (it raises NotImplementedError by design)."""
    return path.parent.name != SOLUTIONS and solution_of(path).is_file()


def solutions(folder: Path = NOTEBOOKS) -> list[Path]:
    """The solution notebooks (the sources of the student copies), sorted."""
    return [p for p in all_notebooks(folder) if p.parent.name == SOLUTIONS]


def executed_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """The notebooks run with full settings and committed with outputs: all but the student copies."""
    return [p for p in all_notebooks(folder) if not is_student_copy(p)]


def display_name(path: Path, folder: Path = NOTEBOOKS) -> str:
    """``path`` relative to the notebooks folder, e.g. ``solutions/06_pseudo_labeling_solution.ipynb``."""
    return path.relative_to(folder).as_posix()
