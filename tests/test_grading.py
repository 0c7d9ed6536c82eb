"""The homework grader's tamper suite: crafted submissions that cheat or break things.

The whole folder is graded once (module fixture) on the real mnist-5k data; each
submission must get exactly the points it deserves, with a reason for every
point it lost. The honest reference (the course's solution notebook when it
exists, else tests/submissions/honest_reference.ipynb) must get full points.
"""

import csv
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course_utils import grading

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "submissions"
SOLUTION = ROOT / "notebooks" / "solutions" / "06_pseudo_labeling_solution.ipynb"
REFERENCE = SOLUTION if SOLUTION.exists() else HERE / "honest_reference.ipynb"
TIME_LIMIT = 900  # per training function; generous for a loaded box (nothing honest waits on it)
SLOW_LIMIT = 5  # the infinite loop's folder
# The fixture trains the reference twice (it and partial_honest): give a loaded machine room.
pytestmark = pytest.mark.timeout(2400)
KEYS = ("hard", "pseudo_label", "soft")

spec = importlib.util.spec_from_file_location("crafted", HERE / "crafted.py")
crafted = importlib.util.module_from_spec(spec)
spec.loader.exec_module(crafted)


def points(row):
    return tuple(int(row[f"points_{k}"]) for k in KEYS)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("grading")
    main, slow, markers = base / "main", base / "slow", base / "markers"
    for d in (main, slow, markers):
        d.mkdir()
    reference_defs, _, _ = grading.extract(REFERENCE)
    cases = {**crafted.CASES, crafted.PARTIAL: crafted.partial_honest(reference_defs)}
    for name, (cells, _) in cases.items():
        crafted.write_notebook(main / f"{name}.ipynb", cells, str(markers))
    (main / "honest_reference.ipynb").write_bytes(REFERENCE.read_bytes())
    for name, (cells, _) in crafted.SLOW.items():
        crafted.write_notebook(slow / f"{name}.ipynb", cells, str(markers))
    start = time.monotonic()
    rows = grading.grade_all(main, base / "grades.csv", "mnist-5k", TIME_LIMIT, memory_mb=2000)
    rows.update(grading.grade_all(slow, base / "slow.csv", "mnist-5k", SLOW_LIMIT, memory_mb=2000))
    print(f"tamper suite graded in {time.monotonic() - start:.0f} s")
    expected = {name: exp for name, (_, exp) in {**cases, **crafted.SLOW}.items()}
    expected["honest_reference"] = (5, 1, 3)
    return {"rows": rows, "expected": expected, "base": base, "markers": markers, "main": main}


def test_the_suite_is_big_enough(graded):
    assert len(graded["expected"]) >= 14


@pytest.mark.parametrize("name", sorted([*crafted.CASES, *crafted.SLOW, crafted.PARTIAL, "honest_reference"]))
def test_each_submission_gets_exactly_its_points(graded, name):
    row = graded["rows"][name]
    assert points(row) == graded["expected"][name], row["reasons"]
    assert int(row["points_auto_total"]) == sum(points(row))
    for key, got, full in zip(KEYS, points(row), (5, 1, 3)):
        if got < full:  # every lost point has its reason
            assert f"{key} (-{full})" in row["reasons"] or "grades file was modified" in row["reasons"]


def test_honest_reference_gets_full_automatic_points(graded):
    row = graded["rows"]["honest_reference"]
    assert row["points_auto_total"] == grading.MAX_AUTO == 9, row["reasons"]
    limits = grading.THRESHOLDS["mnist-5k"]
    assert float(row["hard_acc"]) >= limits["hard"] and float(row["soft_acc"]) >= limits["soft"]
    assert float(row["baseline_acc"]) < float(row["hard_acc"])  # measured, reported, 0 points
    assert row["written_answer"] and row["points_written"] == ""  # listed for hand grading


def test_reasons_name_what_happened(graded):
    reasons = {name: row["reasons"] for name, row in graded["rows"].items()}
    assert "time limit" in reasons["infinite_loop"]
    assert "MemoryError" in reasons["memory_bomb"] and "allocate" in reasons["memory_bomb"]
    assert "sandbox does not allow open" in reasons["read_labels_from_disk"]
    assert "mnist_5k.csv.gz" in reasons["train_on_all_labels"]
    assert "syntax error" in reasons["syntax_error"]
    assert "wrong architecture" in reasons["wrong_architecture"]
    assert "not finite" in reasons["nan_weights"]
    assert "not a valid safetensors" in reasons["pickle_payload"]
    assert "not defined" in reasons["missing_functions"]
    assert "expected an nn.Module" in reasons["wrong_types"]
    assert "differ from the argmax" in reasons["pseudo_label_no_eval"]
    assert "grades file was modified" in reasons["write_grades"]
    assert "kill" in reasons["escape_attempts"]
    assert "hard (-5): test accuracy" in reasons["fake_print"]


def test_no_code_ran_where_it_must_not(graded):
    # A pickle unpickled by the grader, top-level notebook code, a subprocess, ctypes: none ran.
    assert sorted(p.name for p in graded["markers"].iterdir()) == []


def test_grades_file_is_restored_and_complete(graded):
    text = (graded["base"] / "grades.csv").read_text()
    assert "99,99,99" not in text and "write_grades,99" not in text
    with open(graded["base"] / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["student"] for r in rows] == sorted(p.stem for p in graded["main"].glob("*.ipynb"))
    assert list(rows[0]) == list(grading.COLUMNS)
    assert not list(graded["base"].glob(".grades.csv.*.tmp"))


def test_rerun_resumes_without_regrading(graded):
    log = []
    start = time.monotonic()
    rows = grading.grade_all(graded["main"], graded["base"] / "grades.csv", "mnist-5k", log=log.append)
    assert time.monotonic() - start < 30  # loading the data only: nobody is graded again
    assert all("already graded" in line for line in log) and len(log) == len(rows)
    assert {k: points(r) for k, r in rows.items()} == {
        k: points(graded["rows"][k]) for k in rows}


def test_extraction_keeps_definitions_only(tmp_path):
    cells, _ = crafted.CASES["top_level_code"]
    crafted.write_notebook(tmp_path / "nb.ipynb", cells + ["%matplotlib inline\nX = pick(smoke=1, full=2)"],
                           str(tmp_path))
    source, problems, answer = grading.extract(tmp_path / "nb.ipynb")
    assert problems == [] and answer == "Soft labels keep the model's uncertainty."
    assert "while True" not in source and "open(" not in source and "F.softmax =" not in source
    assert "X = pick(smoke=1, full=2)" in source
    assert grading.defined_functions(source) == set(grading.FUNCTIONS)


def test_atomic_write_keeps_the_old_file_on_a_crash(tmp_path, monkeypatch):
    grades = grading.GradesFile(tmp_path / "g.csv")
    grades.rows["ann"] = {"student": "ann", "points_auto_total": 9}
    grades.save()
    before = (tmp_path / "g.csv").read_bytes()
    grades.rows["bob"] = {"student": "bob", "points_auto_total": 0}

    def crash(*args):
        raise KeyboardInterrupt  # an interrupt between writing the temp file and the rename

    monkeypatch.setattr(grading.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        grades.save()
    assert (tmp_path / "g.csv").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.csv"]


def test_tampering_between_writes_is_noticed(tmp_path):
    grades = grading.GradesFile(tmp_path / "g.csv")
    grades.rows["ann"] = {"student": "ann", "points_auto_total": 1}
    grades.save()
    assert not grades.tampered()
    (tmp_path / "g.csv").write_text("student,points_auto_total\nann,9\n")
    assert grades.tampered()
    grades.restore()
    assert not grades.tampered() and ",1," in (tmp_path / "g.csv").read_text()


def test_spreadsheet_formulas_are_neutralized():
    assert grading._cell("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert grading._cell("ok\x00\x1b[31m") == "ok[31m"


def test_thresholds_cover_every_dataset():
    from course_utils.homework import DATASETS

    assert set(grading.THRESHOLDS) == set(DATASETS)
    assert grading.THRESHOLDS["mnist"] == {"hard": 91.0, "soft": 90.0}
    assert all(50 < t["soft"] <= t["hard"] < 100 for t in grading.THRESHOLDS.values() if t)
    if grading.THRESHOLDS["fashion-mnist"] is None:  # no threshold separates pseudo-labeling: refuse to guess
        with pytest.raises(ValueError, match="--thresholds"):
            grading.GradingData("fashion-mnist")


def test_bad_arguments_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="dataset must be one of"):
        grading.GradingData("cifar10")
    with pytest.raises(NotADirectoryError):
        grading.grade_all(tmp_path / "missing", tmp_path / "g.csv", "mnist-5k")


def _csv_students(path):
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [r["student"] for r in csv.DictReader(f)]


def test_cli_survives_a_kill_mid_run_and_resumes(tmp_path):
    subs, out = tmp_path / "subs", tmp_path / "grades.csv"
    subs.mkdir()
    for name in ("a_empty", "b_empty"):  # nothing to run: graded at once
        crafted.write_notebook(subs / f"{name}.ipynb", ["x = 1"], str(tmp_path))
    cells, _ = crafted.SLOW["infinite_loop"]
    crafted.write_notebook(subs / "c_loop.ipynb", cells, str(tmp_path))
    cmd = [sys.executable, "-m", "course_utils.grading", str(subs), "--out", str(out),
           "--dataset", "mnist-5k", "--memory-mb", "2000"]
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the killed run's work folder stays in here
    proc = subprocess.Popen(cmd + ["--time-limit", "600"], start_new_session=True, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while _csv_students(out) != ["a_empty", "b_empty"] and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # c_loop's child is starting or looping
    os.killpg(proc.pid, signal.SIGKILL)  # the grader dies mid-run (its child dies with it)
    proc.wait()
    assert _csv_students(out) == ["a_empty", "b_empty"]  # complete rows only, never a partial file
    done = subprocess.run(cmd + ["--time-limit", str(SLOW_LIMIT)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("already graded") == 2 and "c_loop: 1/9" in done.stdout
    assert _csv_students(out) == ["a_empty", "b_empty", "c_loop"]
    assert not list(tmp_path.glob(".grades.csv.*.tmp"))
