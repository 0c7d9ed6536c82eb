"""The homework grader's tamper suite: crafted submissions that cheat, attack the sandbox or break things.

The whole folder is graded once (module fixture) on the real mnist-5k data, two
students at a time, in the OS sandbox. Each submission must get exactly the
points it deserves, with a reason for every point it lost; the victim graded
after every attacker must be untouched; and the grader must finish. The honest
reference (the course's solution notebook) must get full points.
"""

import csv
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from submissions import crafted, wall

from course_utils import grading
from course_utils.grading import scoring, secret

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "notebooks" / "solutions" / "06_pseudo_labeling_solution.ipynb"
TIME_LIMIT = 900  # per task; generous for a loaded box (nothing honest waits on it)
SLOW_LIMIT = 10  # the infinite loop's folder
pytestmark = pytest.mark.timeout(2400)
KEYS = ("hard", "pseudo_label", "soft")
FAST = dict(memory_mb=2000, threads=1)


def points(row):
    return tuple(int(row[f"points_{k}"]) for k in KEYS)


def _write(folder, cases, markers, **places):
    for name, (cells, _) in cases.items():
        crafted.write_notebook(folder / f"{name}.ipynb", cells, str(markers), **places)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("grading")
    main, slow, markers = base / "main", base / "slow", base / "markers"
    for d in (main, slow, markers):
        d.mkdir()
    reference_defs = grading.extract(REFERENCE)[0]
    cases = {
        **crafted.CASES,
        **wall.CASES,
        crafted.PARTIAL: crafted.partial_honest(reference_defs),
        wall.VICTIM[0]: wall.VICTIM[1],
    }
    places = {"SUBS_DIR": str(main), "GRADES_PATH": str(base / "grades.csv")}
    _write(main, cases, markers, **places)
    (main / "honest_reference.ipynb").write_bytes(REFERENCE.read_bytes())
    _write(slow, crafted.SLOW, markers)
    victim = (main / "zz_victim.ipynb").read_bytes()
    start, log = time.monotonic(), []
    outcome = grading.grade_all(
        main, base / "grades.csv", "mnist-5k", TIME_LIMIT, jobs=2, log=log.append, **FAST
    )
    slow_outcome = grading.grade_all(slow, base / "slow.csv", "mnist-5k", SLOW_LIMIT, jobs=1, **FAST)
    print(f"tamper suite graded in {time.monotonic() - start:.0f} s")
    expected = {name: exp for name, (_, exp) in {**cases, **crafted.SLOW}.items()}
    expected["honest_reference"] = (5, 1, 3)
    return {
        "rows": {**outcome.rows, **slow_outcome.rows},
        "expected": expected,
        "base": base,
        "log": log,
        "markers": markers,
        "main": main,
        "victim": victim,
        "outcome": outcome,
    }


def test_the_suite_is_big_enough(graded):
    assert len(graded["expected"]) >= 35


NAMES = sorted(
    [*crafted.CASES, *wall.CASES, *crafted.SLOW, crafted.PARTIAL, wall.VICTIM[0], "honest_reference"]
)


@pytest.mark.parametrize("name", NAMES)
def test_each_submission_gets_exactly_its_points(graded, name):
    row = graded["rows"][name]
    assert points(row) == graded["expected"][name], row["reasons"]
    assert int(row["points_auto_total"]) == sum(points(row))
    assert "LEAK" not in row["reasons"], row["reasons"]
    assert row["sandbox"] == "bwrap"
    for key, got, full in zip(KEYS, points(row), (5, 1, 3)):
        if got < full:  # every lost point has its reason
            assert f"{key} (-{full})" in row["reasons"]


def test_the_grader_finished_and_nobody_failed(graded):
    assert graded["outcome"].failures == {}
    assert sorted(graded["outcome"].graded) == sorted(p.stem for p in graded["main"].glob("*.ipynb"))


def test_victim_graded_after_the_attackers_is_untouched(graded):
    assert (graded["main"] / "zz_victim.ipynb").read_bytes() == graded["victim"]
    row = graded["rows"]["zz_victim"]
    assert float(row["baseline_acc"]) > 50  # really trained, measured by the grader
    assert sorted(p.name for p in graded["main"].iterdir()) == sorted(
        f"{n}.ipynb" for n in NAMES if n != "infinite_loop"
    )


def test_nothing_outlives_its_task():
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 7777" not in ps


def test_honest_reference_gets_full_automatic_points(graded):
    row = graded["rows"]["honest_reference"]
    assert row["points_auto_total"] == grading.MAX_AUTO == 9, row["reasons"]
    margin = scoring.MARGINS["mnist-5k"]
    assert float(row["hard_acc"]) >= float(row["baseline_acc"]) + margin
    assert float(row["soft_acc"]) >= float(row["baseline_acc"]) + margin
    assert row["written_answer"] and row["points_written"] == "" and row["review"] == ""


def test_reasons_name_what_happened(graded):
    reasons = {name: row["reasons"] for name, row in graded["rows"].items()}
    assert "ran out of time" in reasons["infinite_loop"]
    assert "allocate" in reasons["memory_bomb"]
    assert "ran out of memory" in reasons["wall_memory"]
    assert "into its folder and was stopped" in reasons["wall_disk_fill"]
    assert "sandbox does not allow open" in reasons["read_labels_from_disk"]
    assert "syntax error" in reasons["syntax_error"]
    assert "wrong architecture" in reasons["wrong_architecture"]
    assert "not finite" in reasons["nan_weights"]
    assert "not a valid safetensors" in reasons["pickle_payload"]
    assert "not defined" in reasons["missing_functions"]
    assert "expected an nn.Module" in reasons["wrong_types"]
    assert "differ from the argmax" in reasons["pseudo_label_no_eval"]
    assert "not left in train mode" in reasons["pseudo_label_patched_dropout"]
    assert "differ" in reasons["pseudo_label_memorized"]
    assert "not left in train mode" in reasons["pseudo_label_leaves_eval"]
    assert "not a regular file" in reasons["output_symlink"]
    assert "larger than" in reasons["huge_output"]
    assert "hard (-5): test accuracy" in reasons["fake_print"]
    assert "no written answer" in reasons["placeholder_answer"]
    for trick in (
        "decorator on train_baseline",
        "default value of train_hard_pseudo",
        "class Body",
        "class WithMeta",
        "__init_subclass__",
    ):
        assert trick in reasons["definition_time_code"], trick


def test_big_literals_are_listed_for_hand_review(graded):
    for name, cap in (("big_literal", "characters"), ("long_list", "items")):
        row = graded["rows"][name]
        assert cap in row["review"] and "hand review" in row["reasons"]
    assert any("HAND REVIEW" in line for line in graded["log"])


def test_no_code_ran_where_it_must_not(graded):
    # A pickle unpickled by the grader, top-level notebook code, definition-time code: none ran.
    assert sorted(p.name for p in graded["markers"].iterdir()) == []


def test_grades_file_is_complete_and_the_secret_is_private(graded):
    text = (graded["base"] / "grades.csv").read_text()
    assert "99,99,99" not in text and "write_grades,99" not in text
    with open(graded["base"] / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["student"] for r in rows] == sorted(p.stem for p in graded["main"].glob("*.ipynb"))
    assert list(rows[0]) == list(grading.COLUMNS)
    assert not list(graded["base"].glob(".grades.csv.*.tmp"))
    mode = os.stat(secret.secret_path(graded["base"] / "grades.csv")).st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_rerun_resumes_without_regrading(graded):
    log = []
    outcome = grading.grade_all(
        graded["main"], graded["base"] / "grades.csv", "mnist-5k", log=log.append, **FAST
    )
    assert outcome.graded == [] and outcome.failures == {}
    assert sum("already graded" in line for line in log) == len(outcome.rows)
    assert {k: points(r) for k, r in outcome.rows.items()} == {
        k: points(graded["rows"][k]) for k in outcome.rows
    }
