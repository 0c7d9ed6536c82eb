"""Grading one student: extract the definitions, run each task in a fresh sandboxed child, score.

A fresh child per task means the student's definitions are executed inside the
time limit of the task that needs them, and nothing a task starts (threads,
processes) outlives it.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import safetensors.torch

import course_utils
from course_utils.grading import sandbox, scoring, secret
from course_utils.grading.extraction import defined_functions, extract
from course_utils.homework import ANSWER_MARK

GRADER_VERSION = f"{course_utils.__version__}+grading.2"
TASKS = ("pseudo_label", "train_baseline", "train_hard_pseudo", "train_soft_pseudo")
PL_TIME_LIMIT = 60.0  # seconds for the pseudo_label checks (1,100 images, four calls)
MAX_OUTPUT_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Settings:
    """Everything a grading run needs besides the submissions (picklable, for Dask workers)."""

    dataset: str
    seed: int
    thresholds: tuple[float, float]
    margin: float
    time_limit: float = 900.0
    memory_mb: int = 4000
    threads: int = 1
    startup_limit: float = 120.0
    sandbox: bool = True
    hidden: tuple[str, ...] = field(default=())  # grader files to mask if inside a visible root

    @property
    def limits(self) -> dict:
        return dict(zip(("hard", "soft"), self.thresholds))

    def child_config(self, task: str) -> dict:
        limit = PL_TIME_LIMIT if task == "pseudo_label" else self.time_limit
        return {
            "task": task,
            "seed": secret.derive(self.seed, "train") % 2**31,
            "threads": self.threads,
            "memory_mb": self.memory_mb,
            "address_slack_mb": 6144,
            "max_file_mb": 256,
            "cpu_seconds": int(self.threads * (self.startup_limit + limit)) + 60,
            "data_homes": [str(p) for p in sandbox.dataset_homes()],
            "limit": limit,
        }


def run_task(source: str, task: str, s: Settings, inputs: Path, registry=None):
    """The task's output tensors, or the reason there are none (the student's doing).

    Raises ``GraderError`` when the child fails before any student code ran.
    """
    cfg = s.child_config(task)
    work = Path(tempfile.mkdtemp(prefix="course-grade-"))
    try:
        (work / "config.json").write_text(json.dumps(cfg))
        (work / "submission.py").write_text(source)
        masked = sandbox.dataset_homes() + [Path(p) for p in s.hidden]
        run = sandbox.run_child(
            work, inputs, s.threads, s.memory_mb, s.startup_limit, cfg["limit"], s.sandbox, masked, registry
        )
        return run, _output(run, work, task, cfg["limit"], s.memory_mb)
    finally:
        sandbox.remove_tree(work)


def _output(run: sandbox.ChildRun, work: Path, task: str, limit: float, memory_mb: int):
    """The child's tensors if it wrote a valid file in time; else the best reason we have."""
    if not run.ready:
        why = "did not start in time" if run.overran else f"failed to start: {run.log.strip()[-300:]!r}"
        raise sandbox.GraderError(f"the grading child {why} (before any student code ran)")
    if run.disk:
        gb, n = sandbox.MAX_WORK_BYTES / 2**30, sandbox.MAX_WORK_ENTRIES
        return f"{task} wrote more than {gb:.0f} GB or {n:,} files into its folder and was stopped"
    if run.overran:
        return f"{task} ran out of time ({limit:.0f} s, its definitions included)"
    data = sandbox.read_regular(work / "out.safetensors", MAX_OUTPUT_BYTES)
    if isinstance(data, bytes):
        try:
            return {k: v.clone() for k, v in safetensors.torch.load(data).items()}
        except Exception as e:
            return f"{task}: the output is not a valid safetensors file ({type(e).__name__})"
    errors = [m["error"] for m in run.messages if m["event"] == "done" and m.get("error")]
    if errors:
        return f"{task} raised {errors[-1]}"
    if run.oom:
        return f"{task} ran out of memory (the limit is {memory_mb} MB for everything it runs)"
    if run.returncode:
        return f"{task} crashed the child process (exit code {run.returncode})"
    return f"{task}: {data}"


def grade_one(
    student: str, notebook: Path | bytes | None, s: Settings, problem: str = "", registry=None
) -> dict:
    """One student's row: points, the grader's measured accuracies, the written answer, reasons."""
    start = time.monotonic()
    data = secret.grading_data(s.dataset, s.seed)
    inputs = secret.inputs_dir(s.dataset, s.seed)
    row = {
        "student": student,
        "dataset": s.dataset,
        "grader_version": GRADER_VERSION,
        "sandbox": "bwrap" if s.sandbox else "NONE (--no-sandbox)",
        "points_written": "",
        "review": "",
    }
    source, problems, answer, review = "\n", [problem] if problem else [], "", ""
    if notebook is not None:
        try:
            source, problems, answer, review = extract(notebook)
        except Exception as e:
            problems.append(f"the notebook could not be read ({type(e).__name__}: {str(e)[:200]})")
    results, notes = {}, []
    if review:
        row["review"] = review
        notes.append(f"listed for hand review, not run: {review}")
    else:
        for task in [t for t in TASKS if t in defined_functions(source)]:
            run, results[task] = run_task(source, task, s, inputs, registry)
            notes += [
                f"line {m.get('line')}: {m.get('error')}" for m in run.messages if m["event"] == "setup_error"
            ][:3]
            notes += [f"the sandbox denied {m.get('what')}" for m in run.messages if m["event"] == "denied"][
                :3
            ]
    points, reasons = scoring.score(results, data, s.limits, s.margin)
    row.update(points, written_answer=answer)
    if not answer:
        reasons.append(f"written answer (task 5, by hand): no written answer under {ANSWER_MARK}")
    row["reasons"] = "; ".join(dict.fromkeys(problems + reasons + notes))
    row["seconds"] = f"{time.monotonic() - start:.1f}"
    return row


def probe(s: Settings) -> None:
    """Start one child with the run's limits before anyone is graded; raise a clear error if it fails."""
    try:
        run, _ = run_task("\n", "probe", s, secret.inputs_dir(s.dataset, s.seed))
        failed = None if any(m["event"] == "done" for m in run.messages) else run.log.strip()[-400:]
    except sandbox.GraderError as e:
        failed = str(e)
    if failed is not None:
        hint = (f"--memory-mb {s.memory_mb} is too small to import torch and load the data in the child; "
                "try 3000 or more" if "memory" in failed.lower() or "alloc" in failed.lower()
                else f"the child failed: {failed!r}")
        raise sandbox.GraderError(f"start-up check failed, nobody was graded: {hint}")
