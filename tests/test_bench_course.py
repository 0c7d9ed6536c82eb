"""bench.course: it times every solution by default and the student copies on request.

No timing is asserted; a full run takes minutes (see the README's table).
"""

from bench import course
from tools import catalogue


def test_default_notebooks_are_the_solutions_and_students_the_copies():
    solutions = course.default_notebooks()
    assert solutions == catalogue.executed_notebooks()
    assert "solutions/06_pseudo_labeling_solution.ipynb" in [catalogue.display_name(p) for p in solutions]
    students = course.default_notebooks(students=True)
    assert students and all(catalogue.is_student_copy(p) for p in students)
    assert {catalogue.student_of(p) for p in catalogue.solutions()} == set(students)
    assert not set(students) & set(solutions)  # the student copies raise NotImplementedError


def test_table_flags_slow_and_failed_notebooks():
    text = course.table([("01_a.ipynb", 0.5), ("02_b.ipynb", 12.0), ("03_c.ipynb", None)], limit=10)
    assert "0.50  ok" in text and "12.00  TOO SLOW" in text and "FAILED" in text
