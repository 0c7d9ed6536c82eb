"""Export a lesson's key figures for slides and the web: ``save_figure(fig, name, caption)``.

A notebook calls ``save_figure`` right after drawing a figure worth reusing. It writes
``<name>.png`` (for the web and the README) and ``<name>.svg`` (for slides, scalable) into the
folder named by ``COURSE_FIGURES``, and does nothing when that variable is unset. So a student's
Run All never touches the repository's ``figures/``; ``tools.run_notebooks`` sets the variable
when it makes the committed outputs, and ``tools.figures`` lists every call in
``figures/README.md`` with its notebook and cell.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import matplotlib

from course_utils.runtime import atomic_write

FIGURES_ENV = "COURSE_FIGURES"
FORMATS = ("png", "svg")
NAME = re.compile(r"^(0[1-6])_[a-z0-9_]+$")  # the lesson's number, then a short snake_case name


def save_figure(fig, name: str, caption: str) -> list[Path]:
    """Write ``fig`` as ``<name>.png`` and ``<name>.svg`` when ``COURSE_FIGURES`` is set.

    ``name`` starts with the lesson's number (``"03_activation_stats"``); ``caption`` is the
    one-line description listed in ``figures/README.md``. Returns the files written (none
    when export is off). Each file is written whole (temp file, then rename).
    """
    if not NAME.match(name):
        raise ValueError(f"figure name {name!r}: use the lesson's number, then snake_case "
                         "(e.g. '03_activation_stats')")
    if not caption.strip():
        raise ValueError(f"figure {name!r}: give a one-line caption saying what it shows")
    folder = os.environ.get(FIGURES_ENV, "").strip()
    if not folder:
        return []
    written = []
    for fmt in FORMATS:
        buffer = io.BytesIO()
        meta = {"Date": None} if fmt == "svg" else {}  # no timestamp: an unchanged figure diffs clean
        with matplotlib.rc_context({"svg.hashsalt": name}):  # the same ids in every run
            fig.savefig(buffer, format=fmt, dpi=150, bbox_inches="tight", metadata=meta)
        written.append(atomic_write(Path(folder) / f"{name}.{fmt}", buffer.getvalue()))
    return written
