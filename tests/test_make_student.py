"""tools.make_student: every committed student copy is exactly what the tool writes from its solution,
leaks no answer, keeps the outputs of the cells that are not exercises, and a malformed marker or an
exercise whose result leaks into later cells stops the tool with the file and line.

The homework's copy also keeps every function and signature the grader relies on."""

import ast
import re
import shutil

import nbformat
import pytest

from course_utils.homework import ANSWER_MARK
from tools import catalogue, make_student

SOLUTIONS = catalogue.solutions()
HOMEWORK = catalogue.NOTEBOOKS / "solutions" / "06_pseudo_labeling_solution.ipynb"
PSEUDO = "x_labeled: torch.Tensor, y_labeled: torch.Tensor, x_unlabeled: torch.Tensor, seed: int=0"
CONTRACT = {  # the homework contract: the grader calls exactly these
    "train_baseline": "x_labeled: torch.Tensor, y_labeled: torch.Tensor, seed: int=0",
    "pseudo_label": "model: nn.Module, x: torch.Tensor, soft: bool=False, batch_size: int=1024",
    "train_hard_pseudo": PSEUDO,
    "train_soft_pseudo": PSEUDO,
}
ids = [p.name for p in SOLUTIONS]


def read(path):
    return nbformat.read(path, as_version=4)


def code(nb):
    return [c.source for c in nb.cells if c.cell_type == "code"]


def signatures(nb) -> dict:
    out = {}
    for source in code(nb):
        for node in ast.parse(source).body:  # also proves that every cell parses
            if isinstance(node, ast.FunctionDef):
                out[node.name] = (ast.unparse(node.args), ast.unparse(node.returns) if node.returns else None)
    return out


def notebook(*cells) -> nbformat.NotebookNode:
    """A small solution notebook: strings starting with 'md:' are markdown cells, others code cells."""
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(c[3:]) if c.startswith("md:") else nbformat.v4.new_code_cell(c)
        for c in cells])


def test_there_is_a_solution_for_every_lesson_and_the_homework():
    names = [p.name for p in SOLUTIONS]
    assert "06_pseudo_labeling_solution.ipynb" in names


@pytest.mark.parametrize("solution_path", SOLUTIONS, ids=ids)
def test_committed_student_copy_is_what_the_tool_writes(solution_path):
    assert make_student.problems(solution_path, catalogue.NOTEBOOKS) == [], \
        f"run python -m tools.make_student {solution_path.relative_to(catalogue.ROOT)}"


def test_check_covers_every_notebook_and_fails_on_stale_missing_or_leaking_copies(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    shutil.copytree(catalogue.NOTEBOOKS, folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    assert make_student.main(["--check", "--notebooks", str(folder)]) == 0
    assert f"{len(SOLUTIONS)} student copies are up to date" in capsys.readouterr().out
    student = folder / "06_pseudo_labeling.ipynb"
    student.write_text(student.read_text(encoding="utf-8").replace("Task 2", "Task 9"))
    assert make_student.main(["--check", "--notebooks", str(folder)]) == 1
    assert "06_pseudo_labeling.ipynb is out of date" in capsys.readouterr().err
    nb = read(student)  # paste an answer line back into the copy
    answer = 'return F.kl_div(F.log_softmax(logits, dim=1), target_probs, reduction="batchmean")'
    nb.cells[-1].source += "\n    " + answer
    nbformat.write(nb, student)
    assert make_student.main(["--check", "--notebooks", str(folder)]) == 1
    assert "holds answer lines, e.g. 'return F.kl_div(" in capsys.readouterr().err
    student.unlink()
    assert make_student.main(["--check", "--notebooks", str(folder)]) == 1
    assert "06_pseudo_labeling.ipynb is missing" in capsys.readouterr().err
    assert make_student.main(["--notebooks", str(folder)]) == 0  # writing repairs every copy
    assert make_student.main(["--check", "--notebooks", str(folder)]) == 0


@pytest.mark.parametrize("solution_path", SOLUTIONS, ids=ids)
def test_no_answer_line_leaks_and_every_block_became_a_stub(solution_path):
    solution, student = read(solution_path), read(catalogue.student_of(solution_path))
    secret, public = make_student.solution_lines(solution)
    assert secret - public, "the solution has answers between markers (else this test checks nothing)"
    assert make_student.leaked_lines(solution, student) == []
    text = catalogue.student_of(solution_path).read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    blocks = sum(c.source.count(make_student.BEGIN) for c in solution.cells if c.cell_type == "code")
    stubs = sum(c.source.count("raise NotImplementedError(") for c in student.cells if c.cell_type == "code")
    assert stubs == blocks + sum(c.source.count("raise NotImplementedError(") for c in solution.cells)


@pytest.mark.parametrize("solution_path", SOLUTIONS, ids=ids)
def test_outputs_kept_except_in_exercise_cells(solution_path):
    solution, student = read(solution_path), read(catalogue.student_of(solution_path))
    shared = [c for c in solution.cells if make_student.SOLUTION_ONLY not in c.metadata.get("tags", [])]
    assert len(shared) == len(student.cells)
    kept = 0
    for sol, stu in zip(shared, student.cells):
        if stu.cell_type != "code":
            continue
        tags = stu.metadata.get("tags", [])
        if make_student.EXERCISE_TAG in tags or make_student.RAISES in tags:
            assert stu.outputs == [], f"output kept in {stu.source[:60]!r}"
        else:
            assert stu.outputs == sol.outputs
            kept += bool(stu.outputs)
        assert stu.execution_count == sol.execution_count  # one top-to-bottom run, exercises included
        assert set(stu.metadata) <= {"tags"}
    assert kept, "a student copy shows what to expect: the outputs of its other cells"
    assert student.metadata.get("kernelspec") == solution.metadata.get("kernelspec")


@pytest.mark.parametrize("solution_path", SOLUTIONS, ids=ids)
def test_student_copy_links_to_itself_and_names_its_source(solution_path):
    student = read(catalogue.student_of(solution_path))
    first = student.cells[0].source
    rel = solution_path.relative_to(catalogue.ROOT).as_posix()
    assert first.startswith(f"<!-- Generated by tools/make_student.py from {rel}")
    assert "(reference solution)" not in first and "(solution)" not in first.split("\n")[1]
    assert "_solution.ipynb)" not in "".join(c.source for c in student.cells if c.cell_type == "markdown")


def test_homework_functions_and_signatures():
    solution, student = read(HOMEWORK), read(catalogue.student_of(HOMEWORK))
    sol, stu = signatures(solution), signatures(student)
    assert sol == stu
    for name, args in CONTRACT.items():
        assert stu[name][0] == args, f"{name}{stu[name][0]} differs from the contract"
    answers = [c.source for c in student.cells if c.cell_type == "markdown"
               and c.source.split("\n")[0] == ANSWER_MARK]
    assert answers == [f"{ANSWER_MARK}\n\n{make_student.PLACEHOLDER}"]


def test_homework_stubs_raise_with_their_task_number():
    namespace = {}
    for source in code(read(catalogue.student_of(HOMEWORK))):  # what the grader extracts
        keep = [n for n in ast.parse(source).body
                if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef))
                or (isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant))]
        exec(compile(ast.Module(body=keep, type_ignores=[]), "student", "exec"), namespace)
    torch = namespace["torch"]
    x, y = torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    calls = {1: lambda: namespace["train_baseline"](x, y),
             2: lambda: namespace["train_hard_pseudo"](x, y, x),
             3: lambda: namespace["pseudo_label"](namespace["new_model"](), x),
             4: lambda: namespace["train_soft_pseudo"](x, y, x)}
    for task, call in calls.items():
        with pytest.raises(NotImplementedError, match=f"^Task {task}: replace this line with your code$"):
            call()
    assert namespace["augment"](x, torch.Generator()).shape == x.shape  # provided helpers still work


def test_homework_cells_using_stubs_are_tagged_and_others_not():
    student = read(catalogue.student_of(HOMEWORK))
    for cell in student.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        runs_student_code = re.search(r"\b(train_baseline|train_hard_pseudo|train_soft_pseudo|pseudo_label|"
                                      r"kl_loss|select_confident)\(", cell.source)
        defines = cell.source.lstrip().startswith(("def ", "@"))
        if runs_student_code and not defines:
            assert make_student.RAISES in tags, f"a cell calls a stub but is not tagged: {cell.source[:60]!r}"
        if "load_split(" in cell.source or "labeled_split(" in cell.source or "prepare(raw" in cell.source:
            assert not tags, f"a cell needs no student code but is tagged: {cell.source[:60]!r}"


def test_stub_keeps_the_hint_and_the_indentation():
    src = ("def f(x):\n    '''doc'''\n    # BEGIN SOLUTION\n    # Hint: add one.\n    y = x + 1\n"
           "    return y\n    # END SOLUTION\n")
    assert make_student.strip_code(src, "Exercise 2") == (
        "def f(x):\n    '''doc'''\n    # Hint: add one.\n"
        "    raise NotImplementedError(\"Exercise 2: replace this line with your code\")\n")


@pytest.mark.parametrize("source, problem", [
    ("#BEGIN SOLUTION\n# Hint: h\nx = 1\n# END SOLUTION", r"line 1: '#BEGIN SOLUTION' looks like a"),
    ("x = 0\n# begin solution\n# Hint: h\nx = 1\n# END SOLUTION", r"line 2: '# begin solution' looks like"),
    ("# BEGIN SOLUTIONS\n# Hint: h\nx = 1\n# END SOLUTION", r"line 1: '# BEGIN SOLUTIONS' looks like"),
    ("# BEGIN your answer\nx = 1\n# END your answer", r"line 1: '# BEGIN your answer' looks like"),
    ("# BEGIN SOLUTION\n# Hint: h\nx = 1\n# END_SOLUTION", r"line 4: '# END_SOLUTION' looks like"),
    ("# BEGIN SOLUTION\n# Hint: h\nx = 1\n", r"line 1: '# BEGIN SOLUTION' is never closed"),
    ("x = 1\n# END SOLUTION", r"line 2: '# END SOLUTION' without"),
    ("# BEGIN SOLUTION\n# Hint: h\n# BEGIN SOLUTION\n# END SOLUTION", r"line 3: .* inside the block opened"),
    ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION", r"line 2: the first line .* must be '# Hint:"),
    ("# BEGIN SOLUTION\n# Hint:\nx = 1\n# END SOLUTION", r"line 2: the first line of a solution block"),
    ("<!-- BEGIN SOLUTION -->\nx = 1", r"line 1: '<!-- BEGIN SOLUTION -->' does not belong"),
])
def test_malformed_markers_stop_the_tool_with_file_cell_and_line(source, problem):
    with pytest.raises(make_student.MarkerError, match=r"^lesson\.ipynb, cell 1, " + problem):
        make_student.build(notebook("md:**Exercise 1 — x.**", source), "lesson.ipynb", "l.ipynb")


@pytest.mark.parametrize("source, problem", [
    ("<!-- BEGIN SOLUTION -->\nsecret", r"line 1: '<!-- BEGIN SOLUTION -->' is never closed"),
    ("text\n<!-- END SOLUTION -->", r"line 2: '<!-- END SOLUTION -->' without"),
    ("<!-- begin solution -->\nsecret\n<!-- END SOLUTION -->", r"line 1: '<!-- begin solution -->' looks"),
    ("# BEGIN SOLUTION", r"line 1: '# BEGIN SOLUTION' does not belong"),
])
def test_malformed_markdown_markers_stop_the_tool(source, problem):
    with pytest.raises(make_student.MarkerError, match=r"^lesson\.ipynb, cell 0, " + problem):
        make_student.build(notebook("md:" + source), "lesson.ipynb", "l.ipynb")


def test_a_block_needs_an_exercise_heading_above_it():
    with pytest.raises(make_student.MarkerError, match="cell 1, line 1: a solution block before any"):
        make_student.build(notebook("md:## Intro", "# BEGIN SOLUTION\n# Hint: h\nx = 1\n# END SOLUTION"))


def test_the_command_line_reports_a_malformed_marker(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    (folder / "solutions").mkdir(parents=True)
    source = folder / "solutions" / "01_a_solution.ipynb"
    nbformat.write(notebook("md:**Exercise 1**", "#BEGIN SOLUTION\nx = 1"), source)
    assert make_student.main(["--notebooks", str(folder)]) == 2
    error = capsys.readouterr().err
    assert "notebooks/solutions/01_a_solution.ipynb, cell 1, line 1: '#BEGIN SOLUTION'" in error
    assert not (folder / "01_a.ipynb").exists()


LESSON = [
    "md:# Lesson (solution)\n[badge](https://x/blob/main/notebooks/solutions/01_a_solution.ipynb)",
    "import torch\nfrom course_utils.checks import needs",  # 1
    "md:**Exercise 1 — double.**",
    "def double(x):\n    # BEGIN SOLUTION\n    # Hint: multiply.\n    return 2 * x\n    # END SOLUTION",  # 3
    "y = double(3)\nprint(y)",  # 4: the check, same exercise
    "md:**Exercise 2 — a constant.**",
    "# BEGIN SOLUTION\n# Hint: a number.\nc = 5\n# END SOLUTION\nprint(c)",  # 6: top-level stub
    "md:## Next section",
    "z = 1\nprint(z)",  # 8: no exercise
    "def helper():\n    return double(1)",  # 9: a definition using a stub: no tag, no error
]


def test_exercise_cells_are_tagged_and_lose_their_outputs_others_keep_them():
    nb = notebook(*LESSON)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.execution_count = i
            cell.outputs = [nbformat.v4.new_output("stream", text=f"out {i}\n")]
    student = make_student.build(nb, "notebooks/solutions/01_a_solution.ipynb", "notebooks/01_a.ipynb")
    tags = {i: c.metadata.get("tags", []) for i, c in enumerate(student.cells) if c.cell_type == "code"}
    assert tags == {1: [], 3: ["exercise"], 4: ["raises-exception", "exercise"],
                    6: ["raises-exception", "exercise"], 8: [], 9: []}
    kept = {i for i, c in enumerate(student.cells) if c.cell_type == "code" and c.outputs}
    assert kept == {1, 8, 9}
    assert student.cells[8].execution_count == 8 and student.cells[4].execution_count == 4
    assert student.cells[4].outputs == []
    assert student.cells[0].source.split("\n")[1:] == ["# Lesson", "[badge](https://x/blob/main/notebooks/01_a.ipynb)"]
    assert student.cells[6].source == ('# Hint: a number.\nraise NotImplementedError('
                                       '"Exercise 2: replace this line with your code")\nprint(c)')


def test_a_later_cell_using_an_exercise_result_stops_the_tool_unless_it_says_what_to_run_first():
    cascade = LESSON + ["print(y + 1)"]  # cell 10 needs exercise 1's y, in another section
    with pytest.raises(make_student.MarkerError,
                       match=r"cell 10: uses y from Exercise 1 outside that exercise; use the package's"):
        make_student.build(notebook(*cascade))
    guarded = LESSON + ['needs("y", first="finish exercise 1")\nprint(y + 1)']
    assert make_student.build(notebook(*guarded)).cells[10].metadata["tags"] == ["raises-exception"]
    rebound = LESSON + ["y = 3", "print(y + 1)"]  # y recomputed without the exercise: no longer tainted
    assert make_student.build(notebook(*rebound)).cells[11].metadata.get("tags") is None
    reuse = LESSON + ["start = 1\nprint(start - 1)"]  # bound before use in the same cell: fine
    assert make_student.build(notebook(*reuse)).cells[10].metadata.get("tags") is None


def test_loop_variables_parameters_and_comprehensions_are_not_reads_of_an_exercise_result():
    later = LESSON + ["for y in range(2):\n    print(y)",  # 10: y is the loop's own
                      "def show(y, title=None):\n    return [y for y in range(3)]\nshow(1)",  # 11
                      "total = sum(y for y in range(3))"]  # 12
    tags = [c.metadata.get("tags") for c in make_student.build(notebook(*later)).cells[10:]]
    assert tags == [None, None, None]


def test_solution_only_cells_are_left_out_and_their_lines_count_as_answers():
    nb = notebook("md:# Homework", "x = 1", "md:## Going further", "print(secret_method(x))")
    for cell in nb.cells[2:]:
        cell.metadata["tags"] = ["solution-only"]
    student = make_student.build(nb)
    assert [c.source for c in student.cells][1:] == ["x = 1"]
    assert "print(secret_method(x))" in make_student.solution_lines(nb)[0]
    student.cells.append(nbformat.v4.new_code_cell("print(secret_method(x))"))
    assert make_student.leaked_lines(nb, student) == ["print(secret_method(x))"]
