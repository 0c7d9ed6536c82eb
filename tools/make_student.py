"""Write the student homework notebook from the solution notebook (the single source).

    python tools/make_student.py           # writes notebooks/06_pseudo_labeling.ipynb
    python tools/make_student.py --check   # exit 1 if the committed student copy is out of date

What changes between the two copies:

- Code: every ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` block becomes one
  ``raise NotImplementedError("Task N: ...")`` at the indentation of the BEGIN line; N is
  the number of the last markdown heading "... Task N ..." above the cell.
- Markdown: ``<!-- BEGIN SOLUTION -->`` ... ``<!-- END SOLUTION -->`` blocks are removed;
  the task-5 answer cell keeps its first line and gets a placeholder instead of the model answer.
- The title loses " (reference solution)" and the Colab badge points at the student copy.
- All outputs, execution counts and cell metadata are dropped, except cell tags.
- Cells that would now fail because they use a stubbed function (directly, or through a
  name computed from one) get the nbval tag ``raises-exception``, so the student copy still
  runs under ``pytest --nbval-lax`` (nbval then tolerates their error).

The student copy is written atomically (a temp file, then a rename).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "notebooks" / "solutions" / "06_pseudo_labeling_solution.ipynb"
STUDENT = ROOT / "notebooks" / "06_pseudo_labeling.ipynb"
SOLUTION_REL = SOLUTION.relative_to(ROOT).as_posix()
STUDENT_REL = STUDENT.relative_to(ROOT).as_posix()

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
ANSWER = "**Answer (task 5):**"
PLACEHOLDER = "_Write your answer here, below the first line (keep that line exactly as it is)._"
TITLE_SUFFIX = " (reference solution)"
TASK_HEADING = re.compile(r"^#+ .*\bTask (\d+)\b", re.M)
RAISES = "raises-exception"


def strip_code(source: str, task: int | None) -> str:
    """Replace each solution block of a code cell with an indented ``raise NotImplementedError``."""
    out, inside = [], False
    for n, line in enumerate(source.split("\n"), 1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"line {n}: {BEGIN!r} inside another solution block")
            if task is None:
                raise ValueError(f"line {n}: a solution block before any '## Task N' heading")
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f'{indent}raise NotImplementedError("Task {task}: write your code here")')
            inside = True
        elif marker == END:
            if not inside:
                raise ValueError(f"line {n}: {END!r} without a {BEGIN!r} above it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"a {BEGIN!r} block is never closed by {END!r}")
    return "\n".join(out)


def strip_markdown(source: str) -> str:
    """Drop markdown solution blocks; the answer cell keeps its first line and gets a placeholder."""
    if source.split("\n", 1)[0].strip() == ANSWER:
        return f"{ANSWER}\n\n{PLACEHOLDER}"
    pattern = re.compile(re.escape(MD_BEGIN) + r".*?" + re.escape(MD_END) + r"\n?", re.S)
    if source.count(MD_BEGIN) != source.count(MD_END):
        raise ValueError(f"unbalanced {MD_BEGIN!r} / {MD_END!r} in: {source[:60]!r}")
    text = re.sub(r"\n{3,}", "\n\n", pattern.sub("", source))
    text = text.replace(SOLUTION_REL, STUDENT_REL)
    lines = text.split("\n")
    if lines[0].startswith("# "):
        lines[0] = lines[0].replace(TITLE_SUFFIX, "")
    return "\n".join(lines).strip("\n")


def stubbed_functions(source: str) -> set[str]:
    """Names of the top-level functions of a (solution) cell that contain a solution block."""
    lines = source.split("\n")
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = lines[node.lineno - 1: node.end_lineno]
            if any(line.strip() == BEGIN for line in body):
                names.add(node.name)
    return names


def _names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(names read anywhere in the cell, names bound at its top level)."""
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    bound = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        else:
            bound |= {n.id for n in ast.walk(node)
                      if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return used, bound


def _has_stub(node: ast.AST) -> bool:
    """True if ``node`` contains a ``raise NotImplementedError("Task ...")`` written by strip_code."""
    return any(isinstance(n, ast.Raise) and ast.unparse(n).startswith("raise NotImplementedError('Task ")
               for n in ast.walk(node))


DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _only_definitions(tree: ast.Module) -> bool:
    return all(isinstance(n, DEFINITIONS) for n in tree.body)


def build(solution) -> nbformat.NotebookNode:
    """The student notebook for a solution notebook (read with ``nbformat``)."""
    cells, task, tainted = [], None, set()
    for cell in solution.cells:
        if cell.cell_type == "markdown":
            found = TASK_HEADING.findall(cell.source)
            task = int(found[-1]) if found else task
            new = nbformat.v4.new_markdown_cell(strip_markdown(cell.source))
        elif cell.cell_type == "code":
            source = strip_code(cell.source, task)
            tainted |= stubbed_functions(cell.source)
            tree = ast.parse(source)
            used, bound = _names(tree)
            top_level_stub = any(_has_stub(n) for n in tree.body
                                 if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
            new = nbformat.v4.new_code_cell(source)
            if top_level_stub or used & tainted:
                tainted |= bound
                if not _only_definitions(tree):
                    new.metadata["tags"] = [RAISES]
            tags = [t for t in cell.metadata.get("tags", []) if t != RAISES]
            if tags:
                new.metadata["tags"] = tags + new.metadata.get("tags", [])
        else:
            new = nbformat.v4.new_raw_cell(cell.source)
        new.id = cell.get("id", new.id)
        cells.append(new)
    nb = nbformat.v4.new_notebook(cells=cells, metadata=dict(solution.metadata))
    nb.metadata.pop("widgets", None)
    nbformat.validate(nb)
    return nb


def render(nb) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a notebook is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the student copy differs from what would be written")
    parser.add_argument("--solution", type=Path, default=SOLUTION)
    parser.add_argument("--student", type=Path, default=STUDENT)
    args = parser.parse_args(argv)
    text = render(build(nbformat.read(args.solution, as_version=4)))
    if args.check:
        current = args.student.read_text(encoding="utf-8") if args.student.exists() else None
        if current != text:
            state = "is missing" if current is None else "is out of date"
            print(f"{args.student.name} {state}: run python tools/make_student.py and commit the result.",
                  file=sys.stderr)
            return 1
        print(f"{args.student.name} is up to date.")
        return 0
    write_atomic(args.student, text)
    print(f"wrote {args.student.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
