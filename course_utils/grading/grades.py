"""The grades CSV: one writer (the grader's main process), rewritten atomically after each student.

It remembers the bytes it last wrote, so a change made by anyone else during
the run is noticed (``tampered``) and undone (``restore``). It refuses a path
that is a link, a FIFO or a folder, and never opens it in a way that can block.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from pathlib import Path

from course_utils.grading.sandbox import read_regular
from course_utils.runtime import atomic_write

COLUMNS = (
    "student",
    "hard_acc",
    "soft_acc",
    "baseline_acc",
    "points_hard",
    "points_pseudo_label",
    "points_soft",
    "points_auto_total",
    "points_written",
    "written_answer",
    "review",
    "reasons",
    "seconds",
    "sandbox",
    "dataset",
    "grader_version",
)
MAX_GRADES_BYTES = 256 * 2**20


def check_path(path: Path) -> None:
    """Raise a clear error unless ``path`` is a writable place for a regular grades file."""
    if os.path.lexists(path):
        st = os.lstat(path)
        if stat.S_ISDIR(st.st_mode):
            raise ValueError(f"--out {path} is a folder; give a file name such as {path / 'grades.csv'}.")
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(
                f"--out {path} is not a regular file (a link, FIFO or device); remove it "
                "or choose another path."
            )
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"--out: the folder {parent} does not exist; create it first.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out: the folder {parent} is not writable; choose another path.")


def cell(value) -> str:
    """Student-controlled text made safe for a CSV that a spreadsheet may open."""
    text = "".join(ch for ch in str(value) if ch in "\n\t" or ch.isprintable())
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


class GradesFile:
    """Rows by student; ``save`` writes them all (temp file + rename)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        check_path(self.path)
        self.rows: dict[str, dict] = {}
        self.expected: bytes | None = None
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)  # left by a run that was killed mid-write
        if os.path.lexists(self.path):
            data = read_regular(self.path, MAX_GRADES_BYTES)
            if isinstance(data, str):
                raise ValueError(f"--out {self.path}: {data.replace('output', 'grades file')}")
            self.expected = data
            for row in csv.DictReader(io.StringIO(data.decode("utf-8"))):
                if row.get("student"):
                    self.rows[row["student"]] = row

    def tampered(self) -> bool:
        current = read_regular(self.path, MAX_GRADES_BYTES) if os.path.lexists(self.path) else None
        return current != self.expected

    def restore(self) -> None:
        if self.expected is None:
            if os.path.lexists(self.path):
                os.unlink(self.path)
        else:
            self._write(self.expected)

    def save(self) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for student in sorted(self.rows):
            writer.writerow({k: cell(self.rows[student].get(k, "")) for k in COLUMNS})
        self._write(out.getvalue().encode("utf-8"))

    def _write(self, data: bytes) -> None:
        if os.path.lexists(self.path) and not stat.S_ISREG(os.lstat(self.path).st_mode):
            os.unlink(self.path)  # a link or FIFO put in its place: replaced, never followed
        atomic_write(self.path, data)
        self.expected = data
