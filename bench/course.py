"""How long the course takes: every notebook run top to bottom with full settings.

    python -m bench.course                          # every solution (lessons and homework)
    python -m bench.course notebooks/solutions/03_*.ipynb   # some of them
    python -m bench.course --smoke                  # CI's tiny settings (a quick check of the script)
    python -m bench.course --students               # the student copies instead (up to the first stub)

Each notebook is executed by ``tools.run_notebooks.run`` (the same kernel, timeout and settings
that produce the committed notebooks), but on a copy in a temporary folder, so the committed
notebooks are never touched. By default it runs ``tools.catalogue.executed_notebooks()``: the
solutions, not the student copies, which raise ``NotImplementedError`` until a student fills
them in. ``--students`` times the student copies with their exercise cells skipped (what a
student's Run All costs before any exercise is done).

Targets on a 2-core CPU: every notebook under 10 minutes, the whole course under 45.
Run it on an otherwise idle machine; the times scale with the load. The last line is
``course_full_minutes <total>``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from tools import catalogue, run_notebooks

ROOT, NOTEBOOKS = catalogue.ROOT, catalogue.NOTEBOOKS
LESSON_LIMIT, COURSE_LIMIT = 10.0, 45.0  # minutes, on 2 CPU cores


def default_notebooks(students: bool = False) -> list[Path]:
    """The solutions (what ``tools.run_notebooks`` executes), or the student copies."""
    if students:
        return [p for p in catalogue.all_notebooks() if catalogue.is_student_copy(p)]
    return catalogue.executed_notebooks()


def time_notebooks(paths: list[Path], smoke: bool, timeout: int) -> list[tuple[str, float | None]]:
    """Run copies of ``paths`` (laid out as in the repository) and return (name, minutes or None)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="course-bench-") as tmp:
        copy_root = Path(tmp)
        skip = shutil.ignore_patterns(".ipynb_checkpoints")
        shutil.copytree(NOTEBOOKS, copy_root / "notebooks", ignore=skip)
        if (ROOT / "figures").is_dir():  # a notebook may read or write ../figures
            shutil.copytree(ROOT / "figures", copy_root / "figures")
        for path in paths:
            name = path.resolve().relative_to(NOTEBOOKS).as_posix()
            try:
                minutes = run_notebooks.run(copy_root / "notebooks" / name, smoke, timeout) / 60
            except Exception:  # report the failure, time the rest
                traceback.print_exc(limit=2)
                minutes = None
            results.append((name, minutes))
            shown = "FAILED" if minutes is None else f"{minutes:6.2f} min"
            print(f"  ran {name} ({shown})", file=sys.stderr, flush=True)
    return results


def table(results: list[tuple[str, float | None]], limit: float) -> str:
    width = max([len(n) for n, _ in results] + [8])
    lines = [f"{'notebook':{width}s}  {'minutes':>8s}  target < {limit:g} min"]
    for name, minutes in results:
        if minutes is None:
            lines.append(f"{name:{width}s}  {'FAILED':>8s}")
        else:
            lines.append(f"{name:{width}s}  {minutes:8.2f}  {'ok' if minutes < limit else 'TOO SLOW'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every lesson and the solution")
    parser.add_argument("--smoke", action="store_true", help="tiny CI settings (checks the script only)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--students", action="store_true",
                        help="time the student copies (their exercise cells raise and are skipped)")
    args = parser.parse_args(argv)
    paths = args.notebooks or default_notebooks(args.students)
    for p in paths:
        if not p.resolve().is_relative_to(NOTEBOOKS.resolve()):
            parser.error(f"{p} is not under {NOTEBOOKS}")
    print(f"{len(paths)} notebooks, {'smoke' if args.smoke else 'full'} settings, "
          f"{os.cpu_count()} CPUs visible (targets assume 2 cores)", flush=True)
    results = time_notebooks(paths, args.smoke, args.timeout)
    total = sum(m for _, m in results if m is not None)
    print(table(results, LESSON_LIMIT))
    failed = [n for n, m in results if m is None]
    verdict = "ok" if total < COURSE_LIMIT else "TOO SLOW"
    print(f"total {total:.2f} min (target < {COURSE_LIMIT:g} min: {verdict})"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    print(f"course_full_minutes {total:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
