"""``python -m course_utils.grading SUBMISSIONS --out grades.csv``: check everything, then grade.

Every instructor mistake (a bad argument, a missing dataset, an unwritable or
odd ``--out``, two submissions for one name, an empty folder, limits too small
to import torch) stops the run before anyone is graded. A failure of the
grader or its environment is reported and never written as a grade; the next
run retries it. Ctrl-C leaves every finished row saved.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm.auto import tqdm

from course_utils.grading import sandbox, schedule, scoring, secret
from course_utils.grading.grades import GradesFile, check_path
from course_utils.grading.submission import Settings, probe


@dataclass
class Outcome:
    rows: dict = field(default_factory=dict)
    graded: list = field(default_factory=list)  # graded in this run
    failures: dict = field(default_factory=dict)  # student -> why the grader failed (not saved)


def find_submissions(folder: Path) -> tuple[list[schedule.Item], list[str]]:
    """``([(student, notebook, problem)], ignored)``. Two entries for one name stop the run."""
    items, ignored, seen = [], [], {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix == ".ipynb":
            item = (entry.stem, entry, "")
        elif entry.is_dir() and not entry.is_symlink():
            nbs = sorted(p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            problem = "" if len(nbs) == 1 else f"the folder holds {len(nbs)} notebooks, expected exactly 1"
            item = (entry.name, nbs[0] if len(nbs) == 1 else None, problem)
        else:
            ignored.append(entry.name)
            continue
        key = item[0].casefold()
        if key in seen:
            raise ValueError(
                f"two submissions for the student {item[0]!r}: {seen[key]} and {entry}. "
                "Keep one of them and run again."
            )
        seen[key] = entry
        items.append(item)
    return items, ignored


def make_settings(
    dataset: str,
    seed: int,
    thresholds,
    margin,
    time_limit: float,
    memory_mb: int,
    threads: int | None,
    jobs: int,
    sandboxed: bool,
    startup_limit: float,
    hidden: tuple[str, ...],
) -> Settings:
    """Validated settings; every bad value raises ``ValueError`` naming the option."""
    if dataset not in scoring.THRESHOLDS:
        raise ValueError(f"--dataset must be one of {tuple(scoring.THRESHOLDS)}, got {dataset!r}.")
    if thresholds is None and scoring.THRESHOLDS[dataset] is None:
        raise ValueError(
            f"No default thresholds for {dataset!r} (see grading.scoring.THRESHOLDS for why): "
            "pass --thresholds HARD SOFT in %."
        )
    thresholds = tuple(
        thresholds or (scoring.THRESHOLDS[dataset]["hard"], scoring.THRESHOLDS[dataset]["soft"])
    )
    if len(thresholds) != 2 or not all(0 < t <= 100 for t in thresholds):
        raise ValueError(f"--thresholds must be two accuracies in % between 0 and 100, got {thresholds}.")
    margin = scoring.MARGINS[dataset] if margin is None else margin
    if not 0 <= margin < 100:
        raise ValueError(f"--margin must be between 0 and 100 points, got {margin}.")
    if time_limit <= 0 or startup_limit <= 0:
        raise ValueError(f"--time-limit must be a positive number of seconds, got {time_limit}.")
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}.")
    threads = threads if threads is not None else max(1, (os.cpu_count() or 1) // jobs)
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}.")
    if memory_mb < 256:
        raise ValueError(f"--memory-mb {memory_mb} is too small: torch alone needs about 500 MB; use 2000+.")
    return Settings(
        dataset,
        seed,
        thresholds,
        float(margin),
        float(time_limit),
        int(memory_mb),
        threads,
        float(startup_limit),
        sandboxed,
        hidden,
    )


def grade_all(
    submissions_dir: str | Path,
    out: str | Path = "grades.csv",
    dataset: str = "mnist",
    time_limit: float = 900,
    memory_mb: int = 4000,
    regrade: bool = False,
    threads: int | None = None,
    jobs: int = 1,
    scheduler: str | None = None,
    thresholds=None,
    margin: float | None = None,
    seed: int | None = None,
    sandboxed: bool = True,
    startup_limit: float = 120,
    log=print,
    progress: bool = False,
) -> Outcome:
    """Check everything, then grade every submission into the CSV ``out``.

    Students already in ``out`` are skipped (resume) unless ``regrade``. Raises
    ``ValueError`` (or ``DataNotFoundError``, ``SandboxUnavailable``, ``GraderError``)
    for anything that is the instructor's or the machine's to fix, before grading.
    """
    folder, out = Path(submissions_dir).resolve(), Path(out).absolute()
    items = _submissions(folder, log)
    check_path(out)
    if sandboxed and (why := sandbox.sandbox_available()):
        raise sandbox.SandboxUnavailable(
            f"no sandbox for student code: {why}. Grade on a Linux machine with bubblewrap, or pass "
            "--no-sandbox to grade without one (every row is then marked as such)."
        )
    grades = GradesFile(out)
    hidden = (str(folder), str(out), str(secret.secret_path(out)))
    s = make_settings(dataset, 0, thresholds, margin, time_limit, memory_mb, threads, jobs, sandboxed,
                      startup_limit, hidden)
    s = replace(s, seed=secret.load_or_create_secret(out, dataset, seed))
    secret.grading_data(s.dataset, s.seed)  # a missing dataset fails here, before anyone is graded
    probe(s)
    todo = [it for it in items if regrade or it[0] not in grades.rows]
    for name in sorted({it[0] for it in items} - {it[0] for it in todo}):
        log(f"{name}: already graded, skipped (use --regrade to grade again)")
    return _grade(todo, s, grades, jobs, scheduler, log, progress)


def _submissions(folder: Path, log) -> list[schedule.Item]:
    """The folder's submissions; stray files are reported, an empty folder stops the run."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of submissions (NAME.ipynb or NAME/ with one notebook).")
    items, ignored = find_submissions(folder)
    if ignored:
        more = " ..." if len(ignored) > 10 else ""
        log(f"ignored (not a notebook or a folder): {', '.join(ignored[:10])}{more}")
    if not items:
        raise ValueError(f"{folder} holds no submissions (NAME.ipynb files or NAME/ folders).")
    return items


def _grade(todo, s: Settings, grades: GradesFile, jobs: int, scheduler, log, progress: bool) -> Outcome:
    outcome, start = Outcome(rows=grades.rows), time.monotonic()
    bar = tqdm(total=len(todo), unit="student", disable=not progress, dynamic_ncols=True)

    def on_result(name: str, row: dict | None, error: BaseException | None) -> None:
        bar.update(1)
        if error is not None:
            outcome.failures[name] = f"{type(error).__name__}: {error}"
            log(f"{name}: NOT GRADED, the grader failed ({outcome.failures[name][:300]}); a re-run retries")
            return
        if grades.tampered():
            log(f"WARNING: {grades.path.name} was changed during the run by another process; restored.")
            grades.restore()
        grades.rows[name] = row
        grades.save()
        outcome.graded.append(name)
        review = f", HAND REVIEW: {row['review']}" if row.get("review") else ""
        log(
            f"{name}: {row['points_auto_total']}/{scoring.MAX_AUTO} automatic points (hard "
            f"{row.get('hard_acc') or '-'}%, soft {row.get('soft_acc') or '-'}%) "
            f"in {row['seconds']} s{review}"
        )

    try:
        if scheduler:
            schedule.run_cluster(todo, s, scheduler, on_result)
        else:
            schedule.run_local(todo, s, jobs, on_result, schedule.Children())
    finally:
        bar.close()
    log(
        f"graded {len(outcome.graded)} of {len(todo)} in {time.monotonic() - start:.0f} s"
        + (f"; {len(outcome.failures)} not graded because the grader failed" if outcome.failures else "")
    )
    return outcome


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m course_utils.grading", description=__doc__.splitlines()[0])
    p.add_argument("submissions_dir", help="a folder of NAME.ipynb files (or NAME/ folders)")
    p.add_argument("--out", default="grades.csv", help="the grades CSV (resumed if it exists)")
    p.add_argument("--dataset", default="mnist", choices=tuple(scoring.THRESHOLDS))
    p.add_argument("--time-limit", type=float, default=900, help="seconds per task, definitions included")
    p.add_argument("--memory-mb", type=int, default=4000, help="memory of each child, shared memory included")
    p.add_argument(
        "--jobs", type=int, default=None, help="students graded at once (default: fits the machine)"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads per child (default: cores / jobs)"
    )
    p.add_argument("--scheduler", default=None, help="grade on a Dask cluster: tcp://HOST:PORT")
    p.add_argument("--regrade", action="store_true", help="grade again students already in --out")
    p.add_argument(
        "--thresholds",
        type=float,
        nargs=2,
        metavar=("HARD", "SOFT"),
        help="accuracy (%%) needed for the hard and soft points (default: scoring.THRESHOLDS)",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=None,
        help="points by which pseudo-labeling must beat "
        "the student's own baseline (default: scoring.MARGINS)",
    )
    p.add_argument("--seed", type=int, default=None, help="reproduce a run (its seed is in OUT.secret.json)")
    p.add_argument("--no-sandbox", action="store_true", help="grade without an OS sandbox (rows say so)")
    return p


def default_jobs(memory_mb: int) -> int:
    """As many students at once as there are cores, within the machine's memory."""
    try:
        ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        ram_mb = memory_mb
    return max(1, min(os.cpu_count() or 1, ram_mb // max(memory_mb, 1)))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from course_utils.data import DataNotFoundError

    jobs = args.jobs if args.jobs is not None else default_jobs(args.memory_mb)
    try:
        outcome = grade_all(
            args.submissions_dir,
            args.out,
            args.dataset,
            args.time_limit,
            args.memory_mb,
            args.regrade,
            args.threads,
            jobs,
            args.scheduler,
            args.thresholds,
            args.margin,
            args.seed,
            not args.no_sandbox,
            progress=sys.stderr.isatty(),
        )
    except (
        DataNotFoundError,
        ValueError,
        sandbox.SandboxUnavailable,
        sandbox.GraderError,
        RuntimeError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\nInterrupted: every student finished so far is saved in {args.out}; run the same command "
            "again to grade the rest.",
            file=sys.stderr,
        )
        return 130
    print(f"{len(outcome.rows)} students in {args.out}")
    review = sorted(n for n, r in outcome.rows.items() if r.get("review"))
    if review:
        print(f"listed for hand review: {', '.join(review)}")
    return 1 if outcome.failures else 0
