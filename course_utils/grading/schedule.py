"""Where students are graded: one at a time, ``jobs`` at once on this machine, or on a Dask cluster.

Every scheduler calls the same ``grade_one`` and hands each finished row back to
the caller in the grader's main process, which alone writes the grades file.
An exception for one student (a grader or environment failure) is handed back
as such and never becomes a grade.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Iterable

from course_utils.grading.submission import Settings, grade_one

Item = tuple[str, Path | None, str]  # (student, notebook, problem found while listing)
OnResult = Callable[[str, dict | None, BaseException | None], None]


class Children:
    """The live child processes, so that Ctrl-C can kill them all at once."""

    def __init__(self):
        self._procs, self._lock = set(), threading.Lock()

    def add(self, proc) -> None:
        with self._lock:
            self._procs.add(proc)

    def discard(self, proc) -> None:
        with self._lock:
            self._procs.discard(proc)

    def kill_all(self) -> None:
        import os
        import signal

        with self._lock:
            for proc in list(self._procs):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass


def run_local(items: Iterable[Item], s: Settings, jobs: int, on_result: OnResult, children: Children) -> None:
    """Grade ``items`` with ``jobs`` students at once (threads that each supervise sandboxed children)."""
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="grade")
    pending = {pool.submit(grade_one, name, nb, s, problem, children): name for name, nb, problem in items}
    try:
        while pending:
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in done:
                name = pending.pop(future)
                error = future.exception()
                on_result(name, None if error else future.result(), error)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        children.kill_all()
        raise
    pool.shutdown()


def _grade_remote(name: str, notebook: bytes | None, s: Settings, problem: str) -> dict:
    """Runs on a Dask worker: the same sandbox, the worker's own copy of the dataset."""
    return grade_one(name, notebook, s, problem)


def run_cluster(items: Iterable[Item], s: Settings, address: str, on_result: OnResult) -> None:
    """One Dask task per student on the cluster at ``address``; rows come back to this process.

    A worker that dies mid-task is replaced by the scheduler, which runs the task
    again elsewhere (Dask's own retry of lost tasks): nothing is lost.
    """
    try:
        from distributed import Client, as_completed
    except ImportError as e:
        raise RuntimeError("--scheduler needs Dask: pip install 'course_utils[cluster]'") from e
    with Client(address, timeout="30s") as client:
        futures = {}
        for name, nb, problem in items:
            raw = nb.read_bytes() if nb is not None else None
            futures[
                client.submit(_grade_remote, name, raw, s, problem, key=f"grade-{name}-{s.seed}", pure=False)
            ] = name
        for future in as_completed(futures):
            name = futures[future]
            error = future.exception()
            on_result(name, None if error else future.result(), error)
