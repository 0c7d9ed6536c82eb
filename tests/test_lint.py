"""ruff over the package, tests, tools, benchmarks and notebooks (redefinitions included), and the
package's own rule that every function fits on one screen: at most 50 lines and a cyclomatic
complexity of at most 10 (ruff's C901 at its default)."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "course_utils"
MAX_LINES = 50


def _ruff(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ruff", "check", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True)


def test_ruff_clean():
    result = _ruff(".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_functions_are_simple():
    result = _ruff("--select", "C901", "--config", "lint.mccabe.max-complexity = 10", "course_utils")
    assert result.returncode == 0, result.stdout + result.stderr


def long_functions(folder: Path, max_lines: int = MAX_LINES) -> list[str]:
    """``path:line name (N lines)`` for every function longer than ``max_lines``, counted from its
    ``def`` line (decorators excluded) to its last line, docstring included; ``path`` starts at
    ``folder``'s own name."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > max_lines:
                    found.append(f"{path.relative_to(folder.parent)}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_package_functions_fit_on_one_screen():
    assert long_functions(PACKAGE) == []


def test_long_functions_finds_a_long_one(tmp_path):
    """The measuring stick itself: 51 lines is caught, 50 is not."""
    body = "\n".join(f"    x{i} = {i}" for i in range(48))
    source = f"def ok():\n    '\'\'Doc.'\'\'\n{body}\n\n\ndef bad():\n{body}\n    y = 1\n    z = 2\n"
    (tmp_path / "m.py").write_text(source)
    assert long_functions(tmp_path) == [f"{tmp_path.name}/m.py:53 bad (51 lines)"]
