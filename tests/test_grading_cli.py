"""The grader as an instructor meets it: the command line, interruptions, failures, parallel workers."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
from submissions import crafted

from course_utils.grading import cli, sandbox, submission

pytestmark = pytest.mark.timeout(900)
FAST = ["--dataset", "mnist-5k", "--memory-mb", "2000", "--threads", "1"]
CMD = [sys.executable, "-m", "course_utils.grading"]
QUICK = (
    crafted.QUICK_FIT
    + """

def train_baseline(x_labeled, y_labeled, seed=0):
    return quick_fit(x_labeled, y_labeled, steps=60)
"""
)


def _csv_students(path):
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [r["student"] for r in csv.DictReader(f)]


def _folder(tmp_path, names, cells):
    subs = tmp_path / "subs"
    subs.mkdir(exist_ok=True)
    for name in names:
        crafted.write_notebook(subs / f"{name}.ipynb", cells, str(tmp_path))
    return subs


def _run_until(cmd, env, out, students, tmp_path):
    proc = subprocess.Popen(
        cmd, start_new_session=True, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 180
    while _csv_students(out) != students and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # the next student's child is starting or looping
    return proc


def test_cli_survives_a_kill_mid_run_and_resumes(tmp_path):
    subs = _folder(tmp_path, ("a_empty", "b_empty"), ["x = 1"])
    cells, _ = crafted.SLOW["infinite_loop"]
    crafted.write_notebook(subs / "c_loop.ipynb", cells, str(tmp_path))
    out = tmp_path / "grades.csv"
    cmd = CMD + [str(subs), "--out", str(out), "--jobs", "1"] + FAST
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = _run_until(cmd + ["--time-limit", "600"], env, out, ["a_empty", "b_empty"], tmp_path)
    os.killpg(proc.pid, signal.SIGKILL)  # the grader dies mid-run (its sandboxed child dies with it)
    proc.wait()
    assert _csv_students(out) == ["a_empty", "b_empty"]  # complete rows only, never a partial file
    done = subprocess.run(cmd + ["--time-limit", "10"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("already graded") == 2 and "c_loop: 1/9" in done.stdout
    assert _csv_students(out) == ["a_empty", "b_empty", "c_loop"]
    assert not list(tmp_path.glob(".grades.csv.*.tmp"))


def test_ctrl_c_says_what_is_saved_and_how_to_resume(tmp_path):
    subs = _folder(tmp_path, ("a_empty",), ["x = 1"])
    cells, _ = crafted.SLOW["infinite_loop"]
    crafted.write_notebook(subs / "b_loop.ipynb", cells, str(tmp_path))
    out = tmp_path / "grades.csv"
    proc = _run_until(
        CMD + [str(subs), "--out", str(out), "--jobs", "1", "--time-limit", "600"] + FAST,
        os.environ,
        out,
        ["a_empty"],
        tmp_path,
    )
    proc.send_signal(signal.SIGINT)
    text = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, text
    lines = [ln for ln in text.splitlines() if "Interrupted" in ln]
    assert len(lines) == 1 and "saved" in lines[0] and "run the same command again" in lines[0]
    assert "Traceback" not in text and _csv_students(out) == ["a_empty"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--threads", "0"], "--threads"),
        (["--time-limit", "0"], "--time-limit"),
        (["--thresholds", "95", "101"], "--thresholds"),
        (["--memory-mb", "300"], "too small to import torch"),
    ],
)
def test_instructor_mistakes_stop_the_run_before_anyone_is_graded(tmp_path, args, words):
    subs = _folder(tmp_path, ("ann",), ["x = 1"])
    out = tmp_path / "g.csv"
    done = subprocess.run(
        CMD + [str(subs), "--out", str(out)] + FAST + args, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_out_that_is_a_folder_fails_before_grading(tmp_path):
    subs = _folder(tmp_path, ("ann",), ["x = 1"])
    done = subprocess.run(
        CMD + [str(subs), "--out", str(tmp_path)] + FAST, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "is a folder" in done.stderr


def test_no_sandbox_is_refused_unless_asked_for(tmp_path, monkeypatch):
    subs = _folder(tmp_path, ("ann",), ["x = 1"])
    monkeypatch.setattr(sandbox, "sandbox_available", lambda: "bwrap is not installed")
    with pytest.raises(sandbox.SandboxUnavailable, match="--no-sandbox"):
        cli.grade_all(subs, tmp_path / "g.csv", "mnist-5k", memory_mb=2000, threads=1)
    outcome = cli.grade_all(subs, tmp_path / "g.csv", "mnist-5k", memory_mb=2000, threads=1, sandboxed=False)
    assert outcome.rows["ann"]["sandbox"].startswith("NONE")


def test_a_grader_failure_is_not_a_grade_and_is_retried(tmp_path, monkeypatch):
    subs = _folder(tmp_path, ("ann", "bob"), [crafted.HEAD, crafted.PL_OK])
    real = submission.run_task

    def flaky(source, task, s, inputs, registry=None):
        if "bob" in threading_name():
            raise sandbox.GraderError("the machine ran out of disk")
        return real(source, task, s, inputs, registry)

    def threading_name():
        import threading

        return getattr(threading.current_thread(), "student", "")

    original = submission.grade_one

    def tagged(student, *args, **kwargs):
        import threading

        threading.current_thread().student = student
        return original(student, *args, **kwargs)

    monkeypatch.setattr(submission, "run_task", flaky)
    monkeypatch.setattr(cli.schedule, "grade_one", tagged)
    log, out = [], tmp_path / "g.csv"
    outcome = cli.grade_all(subs, out, "mnist-5k", memory_mb=2000, threads=1, log=log.append)
    assert list(outcome.failures) == ["bob"] and "out of disk" in outcome.failures["bob"]
    assert _csv_students(out) == ["ann"] and any("NOT GRADED" in line and "bob" in line for line in log)
    monkeypatch.setattr(submission, "run_task", real)
    outcome = cli.grade_all(subs, out, "mnist-5k", memory_mb=2000, threads=1)
    assert outcome.graded == ["bob"] and _csv_students(out) == ["ann", "bob"]


def test_parallel_workers_give_the_serial_results(tmp_path):
    subs = _folder(tmp_path, ("ann", "bob", "cyd"), [crafted.HEAD, crafted.PL_OK, QUICK, crafted.ANSWER])
    rows = {}
    for jobs in (1, 2):
        out = tmp_path / f"g{jobs}.csv"
        rows[jobs] = cli.grade_all(subs, out, "mnist-5k", memory_mb=2000, threads=1, jobs=jobs, seed=77).rows
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert {k: strip(r) for k, r in rows[1].items()} == {k: strip(r) for k, r in rows[2].items()}
    assert float(rows[1]["ann"]["baseline_acc"]) > 30
