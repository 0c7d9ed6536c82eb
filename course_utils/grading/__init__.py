"""The homework-06 autograder: ``python -m course_utils.grading SUBMISSIONS --out grades.csv``.

Trust model: a submission is untrusted code, and its author knows this source,
the dataset and every public seed. The grader parses the notebook (never runs
it) and keeps only definitions that run no code when defined (``extract``).
Each task runs in a fresh child inside an OS sandbox (``sandbox``, ``child``):
bubblewrap with an allow-list root, no datasets, submissions or grades visible,
only its own folder writable, no network, its own PID namespace, memory
limited as a whole. Per run a secret seed picks the labeled split, the pool's
order, a relabeling of the classes and the pseudo-label check (``secret``).
The grader takes back weights as safetensors and measures every number itself
(``scoring``); one process writes the grades atomically (``grades``); students
are graded one at a time, ``--jobs`` at once, or on a Dask cluster
(``schedule``); ``cli`` checks the instructor's arguments before anyone is graded.
"""

from course_utils.grading.cli import Outcome, find_submissions, grade_all, main
from course_utils.grading.extraction import defined_functions, extract
from course_utils.grading.grades import COLUMNS, GradesFile
from course_utils.grading.scoring import MARGINS, MAX_AUTO, POINTS, THRESHOLDS
from course_utils.grading.submission import GRADER_VERSION, TASKS, Settings, grade_one

__all__ = [
    "COLUMNS",
    "GRADER_VERSION",
    "MARGINS",
    "MAX_AUTO",
    "POINTS",
    "TASKS",
    "THRESHOLDS",
    "GradesFile",
    "Outcome",
    "Settings",
    "defined_functions",
    "extract",
    "find_submissions",
    "grade_all",
    "grade_one",
    "main",
]
