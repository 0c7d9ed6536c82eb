"""bench/course.py: it times every lesson and the homework solution, never the student copy.

No timing is asserted; a full run takes minutes (see the README's table).
"""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_course", ROOT / "bench" / "course.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_default_notebooks_are_the_lessons_and_the_solution():
    names = [p.relative_to(ROOT / "notebooks").as_posix() for p in bench.default_notebooks()]
    lessons = sorted(p.name for p in (ROOT / "notebooks").glob("0[1-5]_*.ipynb"))
    assert names == [*lessons, "solutions/06_pseudo_labeling_solution.ipynb"]
    assert "06_pseudo_labeling.ipynb" not in names  # the student copy raises NotImplementedError


def test_table_flags_slow_and_failed_notebooks():
    text = bench.table([("01_a.ipynb", 0.5), ("02_b.ipynb", 12.0), ("03_c.ipynb", None)], limit=10)
    assert "0.50  ok" in text and "12.00  TOO SLOW" in text and "FAILED" in text
