"""tools/make_student.py: the committed student homework is exactly what the tool writes from the
solution, leaks no solution line, and keeps every function and signature the grader relies on."""

import ast
import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_student", ROOT / "tools" / "make_student.py")
make_student = importlib.util.module_from_spec(spec)
sys.modules["make_student"] = make_student
spec.loader.exec_module(make_student)

PSEUDO = "x_labeled: torch.Tensor, y_labeled: torch.Tensor, x_unlabeled: torch.Tensor, seed: int=0"
CONTRACT = {  # the homework contract: the grader calls exactly these
    "train_baseline": "x_labeled: torch.Tensor, y_labeled: torch.Tensor, seed: int=0",
    "pseudo_label": "model: nn.Module, x: torch.Tensor, soft: bool=False, batch_size: int=1024",
    "train_hard_pseudo": PSEUDO,
    "train_soft_pseudo": PSEUDO,
}


@pytest.fixture(scope="module")
def solution():
    return nbformat.read(make_student.SOLUTION, as_version=4)


@pytest.fixture(scope="module")
def student():
    return nbformat.read(make_student.STUDENT, as_version=4)


def code(nb):
    return [c.source for c in nb.cells if c.cell_type == "code"]


def signatures(nb) -> dict:
    out = {}
    for source in code(nb):
        for node in ast.parse(source).body:  # also proves that every cell parses
            if isinstance(node, ast.FunctionDef):
                out[node.name] = (ast.unparse(node.args), ast.unparse(node.returns) if node.returns else None)
    return out


def solution_lines(nb) -> tuple[set, set]:
    """(stripped lines inside solution blocks, stripped lines outside them), code and markdown."""
    inside, outside = set(), set()
    for cell in nb.cells:
        depth = False
        for line in cell.source.split("\n"):
            s = line.strip()
            if s in (make_student.BEGIN, make_student.MD_BEGIN):
                depth = True
            elif s in (make_student.END, make_student.MD_END):
                depth = False
            else:
                (inside if depth else outside).add(s)
    return inside - {""}, outside


def test_committed_student_copy_is_what_the_tool_writes(solution):
    expected = make_student.render(make_student.build(solution))
    assert make_student.STUDENT.read_text(encoding="utf-8") == expected, \
        "notebooks/06_pseudo_labeling.ipynb is stale: run python tools/make_student.py"
    assert make_student.main(["--check"]) == 0


def test_check_mode_fails_on_a_stale_copy(tmp_path, capsys):
    stale = tmp_path / "student.ipynb"
    stale.write_text(make_student.STUDENT.read_text(encoding="utf-8").replace("Task 2", "Task 9"))
    assert make_student.main(["--check", "--student", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert make_student.main(["--check", "--student", str(tmp_path / "missing.ipynb")]) == 1
    assert make_student.main(["--student", str(stale)]) == 0  # writing repairs it
    assert make_student.main(["--check", "--student", str(stale)]) == 0


def test_no_solution_line_leaks(solution, student):
    secret, public = solution_lines(solution)
    secret -= public  # a line that is also printed outside the blocks is not a secret
    assert any("F.kl_div(" in s for s in secret) and any("round_states" in s for s in secret), \
        "the solution blocks hold the reference code (else this test checks nothing)"
    student_lines = {line.strip() for c in student.cells for line in c.source.split("\n")}
    leaked = sorted(secret & student_lines)
    assert not leaked, f"solution lines in the student copy: {leaked[:5]}"
    text = make_student.STUDENT.read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text


def test_same_functions_and_signatures(solution, student):
    sol, stu = signatures(solution), signatures(student)
    assert sol == stu
    for name, args in CONTRACT.items():
        assert stu[name][0] == args, f"{name}{stu[name][0]} differs from the contract"


def test_stubs_raise_with_their_task_number(student):
    namespace = {}
    for source in code(student):  # only what the grader extracts: imports, defs, constants
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
        with pytest.raises(NotImplementedError, match=f"Task {task}:"):
            call()
    assert namespace["augment"](x, torch.Generator()).shape == x.shape  # provided helpers still work


def test_student_notebook_shape(student):
    first = student.cells[0].source
    assert "(reference solution)" not in first and "Instructors' copy" not in first
    assert "blob/main/notebooks/06_pseudo_labeling.ipynb" in first
    answers = [c.source for c in student.cells if c.cell_type == "markdown"
               and c.source.split("\n")[0] == make_student.ANSWER]
    assert answers == [f"{make_student.ANSWER}\n\n{make_student.PLACEHOLDER}"]
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            assert set(cell.metadata) <= {"tags"}


def test_cells_using_stubs_are_tagged_and_others_not(student):
    tagged = {i for i, c in enumerate(student.cells) if make_student.RAISES in c.metadata.get("tags", [])}
    for i, cell in enumerate(student.cells):
        if cell.cell_type != "code":
            continue
        runs_student_code = re.search(r"\b(train_baseline|train_hard_pseudo|train_soft_pseudo|pseudo_label|"
                                      r"kl_loss|select_confident)\(", cell.source)
        defines = cell.source.lstrip().startswith(("def ", "@"))
        if runs_student_code and not defines:
            assert i in tagged, f"cell {i} calls a stub but is not tagged: {cell.source[:60]!r}"
        if "load_split(" in cell.source or "labeled_split(" in cell.source or defines:
            assert i not in tagged, f"cell {i} needs no student code but is tagged: {cell.source[:60]!r}"


def test_strip_code_keeps_indentation_and_rejects_broken_blocks():
    src = "def f(x):\n    '''doc'''\n    # BEGIN SOLUTION\n    y = x + 1\n    return y\n    # END SOLUTION\n"
    assert make_student.strip_code(src, 2) == \
        "def f(x):\n    '''doc'''\n    raise NotImplementedError(\"Task 2: write your code here\")\n"
    with pytest.raises(ValueError, match="never closed"):
        make_student.strip_code("# BEGIN SOLUTION\nx = 1\n", 1)
    with pytest.raises(ValueError, match="without"):
        make_student.strip_code("x = 1\n# END SOLUTION\n", 1)
    with pytest.raises(ValueError, match="Task N"):
        make_student.strip_code("# BEGIN SOLUTION\n# END SOLUTION\n", None)


def test_tagging_follows_names_computed_from_stubs():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## Task 1"),
        nbformat.v4.new_code_cell("def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION"),
        nbformat.v4.new_code_cell("a = f()"),
        nbformat.v4.new_code_cell("b = a + 1"),
        nbformat.v4.new_code_cell("c = 2\nprint(c)"),
    ])
    tags = [c.metadata.get("tags", []) for c in make_student.build(nb).cells]
    assert tags == [[], [], [make_student.RAISES], [make_student.RAISES], []]
