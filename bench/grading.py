"""Grading a class: serial against ``--jobs N``, side by side in one run, and the sandbox's cost.

    python -m bench.grading                       # K=4 copies of the reference, N=2, mnist-5k
    python -m bench.grading --copies 6 --jobs 2 --dataset mnist-5k

1. The same folder of K copies of the reference solution (the solution notebook) is graded
   with ``--jobs 1`` and with ``--jobs N``, 1 torch thread per child, the same secret seed;
   it prints students per hour for each and checks the two CSVs agree.
2. The sandbox's overhead per student: a child that only starts (imports torch, reports
   ready) is timed R times inside bubblewrap and R times without it; a student costs four
   children (one per task), so the overhead per student is 4 x the difference.

The last line is ``grading_parallel_speedup <serial time / parallel time>``.
Run it on an idle machine: two heavy jobs at once make every timing meaningless.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from course_utils.grading import cli, submission
from course_utils.grading.submission import run_task

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "notebooks" / "solutions" / "06_pseudo_labeling_solution.ipynb"
SEED = 2026


def _rows(path: Path) -> dict:
    with open(path, newline="") as f:
        return {r["student"]: {k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)}


def parallel(copies: int, jobs: int, dataset: str, work: Path) -> float:
    """Grade K copies with jobs=1 then jobs=N; print students/hour; return the speedup."""
    subs = work / "subs"
    subs.mkdir()
    for i in range(copies):
        (subs / f"student_{i:03d}.ipynb").write_bytes(REFERENCE.read_bytes())
    seconds = {}
    for n in (1, jobs):
        out = work / f"grades_jobs{n}.csv"
        start = time.monotonic()
        cli.grade_all(subs, out, dataset, memory_mb=3000, threads=1, jobs=n, seed=SEED, log=lambda _: None)
        seconds[n] = time.monotonic() - start
        print(
            f"--jobs {n}: {copies} students in {seconds[n]:.0f} s = "
            f"{3600 * copies / seconds[n]:.0f} students/hour"
        )
    same = _rows(work / "grades_jobs1.csv") == _rows(work / f"grades_jobs{jobs}.csv")
    print(f"the two CSVs agree (seconds aside): {same}")
    return seconds[1] / seconds[jobs]


def sandbox_overhead(repeats: int, dataset: str) -> None:
    """Median start-up time of a child with and without bubblewrap."""
    s = cli.make_settings(dataset, SEED, None, None, 60, 3000, 1, 1, True, 120, ())
    inputs = submission.secret.inputs_dir(dataset, SEED)
    runs = {True: [], False: []}
    for _ in range(repeats):  # interleaved, so a change in the machine's load hits both alike
        for sandboxed in (True, False):
            start = time.monotonic()
            run_task("\n", "probe", replace(s, sandbox=sandboxed), inputs)
            runs[sandboxed].append(time.monotonic() - start)
    times = {k: statistics.median(v) for k, v in runs.items()}
    diff = times[True] - times[False]
    print(
        f"child start-up, median of {repeats}: sandboxed {times[True]:.2f} s, without {times[False]:.2f} s; "
        f"overhead {diff:.2f} s per child = {4 * diff:.2f} s per student (4 tasks)"
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--dataset", default="mnist-5k")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    sandbox_overhead(args.repeats, args.dataset)
    with tempfile.TemporaryDirectory() as work:
        speedup = parallel(args.copies, args.jobs, args.dataset, Path(work))
    print(f"grading_parallel_speedup {speedup:.2f}")


if __name__ == "__main__":
    main()
