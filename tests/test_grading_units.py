"""The grader's parts on their own: extraction rules, secrets, scoring, the grades file, arguments."""

import ast
import os
import threading
from pathlib import Path

import pytest
import torch
from submissions import crafted

from course_utils import homework, runtime
from course_utils.grading import cli, extraction, grades, scoring, secret

SEED = 1234


def _kept(src: str) -> dict:
    """name -> (kept?, why) for each top-level statement of ``src``."""
    tree = ast.parse(src)
    checker = extraction.Checker(tree)
    out = {}
    for node in tree.body:
        kept, why = checker.keep(node)
        out[getattr(node, "name", ast.unparse(node)[:20])] = (kept is not None, why)
    return out


def test_extraction_keeps_definitions_only(tmp_path):
    cells, _ = crafted.CASES["top_level_code"]
    crafted.write_notebook(
        tmp_path / "nb.ipynb", cells + ["%matplotlib inline\nX = pick(smoke=1, full=2)"], str(tmp_path)
    )
    source, problems, answer, review = extraction.extract(tmp_path / "nb.ipynb")
    assert problems == [] and review == "" and answer == "Soft labels keep the model's uncertainty."
    assert "while True" not in source and "open(" not in source and "F.softmax =" not in source
    assert "X = 2" in source  # pick(smoke, full) is its full value: the student's pick never runs
    assert extraction.defined_functions(source) == {
        "train_baseline",
        "train_hard_pseudo",
        "train_soft_pseudo",
        "pseudo_label",
    }


def test_nothing_runs_at_definition_time():
    got = _kept("""
import torch
from torch import nn
def ok(x, n=3, d=torch.float32, k: "int" = 3) -> int: return x
def bad_default(x, d=open("/etc/passwd").read()): return x
@torch.no_grad()
def ok_decorated(model, x): return x
def deco(f): return f
@deco
def bad_decorated(): pass
class Good(nn.Module):
    "doc"
    A = 1
    def __init__(self): super().__init__()
    @property
    def p(self): return 1
    @p.setter
    def p(self, v): pass
class BadBody(nn.Module):
    print("runs")
class BadMeta(metaclass=type): pass
class BadHook:
    def __init_subclass__(cls): pass
class Shadow:
    def property(f): return f
    @property
    def q(self): return 1
W = [0] * 10**9
V = 2 ** 10
""")
    assert {k for k, (kept, _) in got.items() if kept} == {
        "import torch",
        "from torch import nn",
        "ok",
        "ok_decorated",
        "deco",
        "Good",
        "V = 2 ** 10",
    }
    assert "default value" in got["bad_default"][1] and "decorator" in got["bad_decorated"][1]
    assert "body" in got["BadBody"][1] and "metaclass" in got["BadMeta"][1]
    assert "__init_subclass__" in got["BadHook"][1] and "decorator" in got["Shadow"][1]


def test_a_rebound_torch_is_not_trusted_in_decorators():
    got = _kept("import numpy as torch\n@torch.no_grad()\ndef f(): pass\n")
    assert got["f"] == (False, "a decorator on f() would run code at definition time")


def test_annotations_are_dropped(tmp_path):
    crafted.write_notebook(
        tmp_path / "nb.ipynb", ["def f(x: print('a')) -> print('b'):\n    return x"], str(tmp_path)
    )
    assert "print" not in extraction.extract(tmp_path / "nb.ipynb")[0]


def test_big_sources_and_literals_go_to_hand_review(tmp_path):
    crafted.write_notebook(tmp_path / "a.ipynb", ["W = '" + "x" * 3000 + "'"], str(tmp_path))
    crafted.write_notebook(
        tmp_path / "b.ipynb", [f"def f{i}():\n    return {i}\n" * 1 for i in range(2500)], str(tmp_path)
    )
    assert "3,000 characters" in extraction.extract(tmp_path / "a.ipynb")[3]
    assert "extracted source" in extraction.extract(tmp_path / "b.ipynb")[3]


def test_reference_solution_fits_the_caps():
    root = Path(__file__).resolve().parents[1]
    source, problems, answer, review = extraction.extract(
        root / "notebooks/solutions/06_pseudo_labeling_solution.ipynb"
    )
    assert review == "" and problems == [] and answer
    assert len(source.encode()) < extraction.MAX_SOURCE_BYTES / 2


def test_placeholder_is_no_answer():
    assert extraction.written_answer(f"{homework.ANSWER_MARK}\n\n{homework.ANSWER_PLACEHOLDER}") == ""
    assert extraction.written_answer(f"{homework.ANSWER_MARK}\nBecause.") == "Because."


# ---------------------------------------------------------------- secrets


@pytest.fixture(scope="module")
def data():
    return secret.grading_data("mnist-5k", SEED)


def test_the_split_and_labels_are_secret_per_run(data):
    other = secret.GradingData("mnist-5k", SEED + 1)
    assert not torch.equal(data.child_data["x_labeled"], other.child_data["x_labeled"])
    assert not torch.equal(data.perm, torch.arange(10)) and sorted(data.perm.tolist()) == list(range(10))
    assert torch.bincount(data.child_data["y_labeled"], minlength=10).tolist() == [10] * 10
    assert not torch.equal(data.pl_input["x"], other.pl_input["x"])
    again = secret.GradingData("mnist-5k", SEED)  # reproducible from the seed
    assert torch.equal(data.child_data["x_unlabeled"], again.child_data["x_unlabeled"])


def test_weights_trained_on_public_labels_score_near_chance(data):
    x, y = homework.load_split("mnist-5k", "train")
    x = homework.prepare(x, "mnist-5k")
    torch.manual_seed(0)
    model = homework.new_model()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(150):
        idx = torch.randint(len(x), (64,))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    weights = model.state_dict()
    public = scoring.accuracy(weights, data.x_test, data.perm.argsort()[data.y_test])
    assert public > 80 and scoring.accuracy(weights, data.x_test, data.y_test) < 30


def test_the_mode_check_can_tell_train_from_eval(data):
    diff = (data.pl_expected["train.probe"] - data.pl_expected["eval.probe"]).abs().max()
    assert float(diff) > 100 * scoring.TOL


def test_the_secret_is_kept_and_resumed(tmp_path):
    out = tmp_path / "g.csv"
    seed = secret.load_or_create_secret(out, "mnist-5k", None)
    assert secret.load_or_create_secret(out, "mnist-5k", None) == seed
    with pytest.raises(ValueError, match="--dataset mnist-5k"):
        secret.load_or_create_secret(out, "fashion-mnist", None)
    with pytest.raises(ValueError, match="another --seed"):
        secret.load_or_create_secret(out, "mnist-5k", seed + 1)


# ---------------------------------------------------------------- scoring


def test_pseudo_labeling_must_beat_the_students_own_baseline(data, monkeypatch):
    weights = {k: v.clone() for k, v in homework.new_model().state_dict().items()}
    accs = {"baseline": 92.0, "hard": 92.5, "soft": 95.0}
    results = {
        t: dict(weights, tag=torch.tensor(i))
        for i, t in enumerate(("train_baseline", "train_hard_pseudo", "train_soft_pseudo"))
    }
    names = dict(zip(range(3), accs))
    monkeypatch.setattr(scoring, "check_weights", lambda w: None)
    monkeypatch.setattr(scoring, "accuracy", lambda w, x, y: accs[names[int(w["tag"])]])
    row, reasons = scoring.score(results, data, {"hard": 91, "soft": 91}, margin=1.0)
    assert (row["points_hard"], row["points_soft"]) == (0, 3)
    assert any("does not beat your baseline 92.00% by 1.0" in r for r in reasons)
    del results["train_baseline"]
    row, reasons = scoring.score(results, data, {"hard": 91, "soft": 91}, margin=1.0)
    assert (row["points_hard"], row["points_soft"]) == (0, 0) and any(
        "no working train_baseline" in r for r in reasons
    )


def test_thresholds_and_margins_cover_every_dataset():
    assert set(scoring.THRESHOLDS) == set(scoring.MARGINS) == set(homework.DATASETS)
    assert scoring.THRESHOLDS["mnist"] == {"hard": 91.0, "soft": 90.0}
    assert all(50 < t["soft"] <= t["hard"] < 100 for t in scoring.THRESHOLDS.values() if t)


# ---------------------------------------------------------------- the grades file


def test_atomic_write_keeps_the_old_file_on_a_crash(tmp_path, monkeypatch):
    g = grades.GradesFile(tmp_path / "g.csv")
    g.rows["ann"] = {"student": "ann", "points_auto_total": 9}
    g.save()
    before = (tmp_path / "g.csv").read_bytes()
    g.rows["bob"] = {"student": "bob", "points_auto_total": 0}

    def crash(*args):
        raise KeyboardInterrupt  # an interrupt between writing the temp file and the rename

    monkeypatch.setattr(runtime.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        g.save()
    assert (tmp_path / "g.csv").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.csv"]


def test_tampering_between_writes_is_noticed(tmp_path):
    g = grades.GradesFile(tmp_path / "g.csv")
    g.rows["ann"] = {"student": "ann", "points_auto_total": 1}
    g.save()
    assert not g.tampered()
    (tmp_path / "g.csv").write_text("student,points_auto_total\nann,9\n")
    assert g.tampered()
    g.restore()
    assert not g.tampered() and ",1," in (tmp_path / "g.csv").read_text()


def _finishes(fn, seconds=10):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("error", _catch(fn)), daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "blocked"
    return box["error"]


def _catch(fn):
    try:
        fn()
    except Exception as e:
        return e
    return None


def test_fifos_links_and_folders_at_the_grades_path_are_refused_without_blocking(tmp_path):
    fifo, link, folder = tmp_path / "fifo.csv", tmp_path / "link.csv", tmp_path / "dir.csv"
    os.mkfifo(fifo)
    link.symlink_to(tmp_path / "elsewhere.csv")
    folder.mkdir()
    for path, words in (
        (fifo, "not a regular file"),
        (link, "not a regular file"),
        (folder, "is a folder"),
        (tmp_path / "no" / "g.csv", "does not exist"),
    ):
        error = _finishes(lambda p=path: grades.GradesFile(p))
        assert isinstance(error, ValueError) and words in str(error), error


def test_a_fifo_put_in_place_of_the_grades_mid_run_is_replaced(tmp_path):
    g = grades.GradesFile(tmp_path / "g.csv")
    g.rows["ann"] = {"student": "ann"}
    g.save()
    (tmp_path / "g.csv").unlink()
    os.mkfifo(tmp_path / "g.csv")
    assert _finishes(lambda: g.tampered()) is None and g.tampered()
    _finishes(g.restore)
    assert (tmp_path / "g.csv").is_file() and "ann" in (tmp_path / "g.csv").read_text()


def test_spreadsheet_formulas_are_neutralized():
    assert grades.cell('=HYPERLINK("x")') == '\'=HYPERLINK("x")'
    assert grades.cell("ok\x00\x1b[31m") == "ok[31m"


# ---------------------------------------------------------------- the instructor's arguments


def test_bad_settings_fail_clearly():
    ok = dict(
        dataset="mnist-5k",
        seed=0,
        thresholds=None,
        margin=None,
        time_limit=10,
        memory_mb=2000,
        threads=1,
        jobs=1,
        sandboxed=True,
        startup_limit=60,
        hidden=(),
    )
    cli.make_settings(**ok)
    for change, words in (
        ({"threads": 0}, "--threads"),
        ({"time_limit": 0}, "--time-limit"),
        ({"time_limit": -5}, "--time-limit"),
        ({"thresholds": (120, 90)}, "--thresholds"),
        ({"thresholds": (91, 0)}, "--thresholds"),
        ({"memory_mb": 100}, "--memory-mb"),
        ({"jobs": 0}, "--jobs"),
        ({"margin": -1}, "--margin"),
        ({"dataset": "cifar10"}, "--dataset"),
        ({"dataset": "fashion-mnist"}, "--thresholds"),
    ):
        with pytest.raises(ValueError, match=words):
            cli.make_settings(**{**ok, **change})


def test_two_submissions_for_one_student_stop_the_run(tmp_path):
    crafted.write_notebook(tmp_path / "alice.ipynb", ["x = 1"], str(tmp_path))
    (tmp_path / "Alice").mkdir()
    crafted.write_notebook(tmp_path / "Alice" / "hw.ipynb", ["x = 1"], str(tmp_path))
    with pytest.raises(ValueError, match="two submissions") as e:
        cli.find_submissions(tmp_path)
    assert "alice.ipynb" in str(e.value) and "Alice" in str(e.value)


def test_empty_folders_and_stray_files_are_reported(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    log = []
    with pytest.raises(ValueError, match="holds no submissions"):
        cli.grade_all(tmp_path, tmp_path.parent / "g.csv", "mnist-5k", log=log.append)
    assert "notes.txt" in log[0]
    assert not (tmp_path.parent / "g.csv").exists()


def test_a_missing_dataset_stops_the_run_before_anyone_is_graded(tmp_path, monkeypatch):
    from course_utils.data import DataNotFoundError

    def missing(*args, **kwargs):
        raise DataNotFoundError("MNIST is not here: see the README")

    monkeypatch.setattr(homework, "load_split", missing)
    crafted.write_notebook(tmp_path / "ann.ipynb", ["x = 1"], str(tmp_path))
    with pytest.raises(DataNotFoundError):
        cli.grade_all(tmp_path, tmp_path / "g.csv", "mnist", seed=99)
    assert not (tmp_path / "g.csv").exists()
