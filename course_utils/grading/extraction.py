"""Reading a submission without running it: the definitions to keep, the written answer, caps.

The rule is that nothing a student writes runs at definition time. Kept are
imports, ``NAME = <literal>`` (``pick(smoke, full)`` becomes its full value),
and function and class definitions whose decorators, default values, base
classes and class bodies cannot call student code: defaults are literals or
names, decorators come from a short list, classes take no keywords (no
metaclass) and hold only methods and literals. Everything else is dropped and
named in the problems. Big literals or a big source are listed for hand review.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from course_utils.homework import ANSWER_MARK, ANSWER_PLACEHOLDER

MAX_SOURCE_BYTES = 32_000  # the honest reference extracts to about 8 KB
MAX_LITERAL_CHARS = 2_000  # one string or bytes literal
MAX_LITERAL_ITEMS = 256  # one list/tuple/set/dict display
MAX_NOTEBOOK_BYTES = 50 * 2**20
SAFE_DECORATORS = {
    "staticmethod",
    "classmethod",
    "property",
    "torch.no_grad",
    "torch.inference_mode",
    "torch.enable_grad",
    "torch.no_grad()",
    "torch.inference_mode()",
    "torch.enable_grad()",
}
FORBIDDEN_METHODS = {"__init_subclass__", "__set_name__", "__prepare__", "__mro_entries__"}


def _is_literal(node: ast.AST) -> bool:
    """A literal, or arithmetic and containers of literals: evaluating it runs no student code
    (and cannot be made huge: ``*``, ``**`` and ``<<`` only between small numbers)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_is_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(
            k is not None and _is_literal(k) and _is_literal(v) for k, v in zip(node.keys, node.values)
        )
    if isinstance(node, ast.UnaryOp):
        return _is_literal(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Pow, ast.LShift)):
        small = [
            isinstance(n, ast.Constant) and type(n.value) in (int, float) and abs(n.value) <= 1e6
            for n in (node.left, node.right)
        ]
        return all(small) and (not isinstance(node.op, (ast.Pow, ast.LShift)) or abs(node.right.value) <= 64)
    if isinstance(node, ast.BinOp):
        return _is_literal(node.left) and _is_literal(node.right)
    return False


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _full_value(node: ast.AST) -> ast.AST:
    """``pick(smoke, full)`` -> ``full``: the grader always uses the full settings."""
    if isinstance(node, ast.Call) and _dotted(node.func) in (
        "pick",
        "runtime.pick",
        "course_utils.runtime.pick",
    ):
        full = [k.value for k in node.keywords if k.arg == "full"] or node.args[1:2]
        if full and len(node.args) + len(node.keywords) == 2:
            return full[0]
    return node


def _bound_names(body: list[ast.stmt]) -> set[str]:
    """Names a block binds (definitions, assignments, imports)."""
    names = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {a.asname or a.name.split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


class Checker:
    """Decides what is kept. ``rebound``: top-level names the submission binds, so a decorator
    or default that uses one of them might be the student's code in disguise."""

    def __init__(self, tree: ast.Module):
        self.rebound = _bound_names(tree.body)
        plain_torch = all(
            a.name == "torch" and a.asname is None
            for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for a in node.names
            if (a.asname or a.name.split(".")[0]) == "torch"
        )
        if plain_torch and not any(
            isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign))
            and "torch" in _bound_names([n])
            for n in tree.body
        ):
            self.rebound.discard("torch")

    def decorator_ok(self, dec: ast.AST, local: set[str], properties: set[str]) -> bool:
        if isinstance(dec, ast.Call):
            name = _dotted(dec.func)
            name = f"{name}()" if name and not dec.args and not dec.keywords else None
        else:
            name = _dotted(dec)
        if name is None:
            return False
        root = name.split(".")[0].rstrip("()")
        if name.endswith((".setter", ".getter", ".deleter")):
            return name.rsplit(".", 1)[0] in properties
        return name in SAFE_DECORATORS and root not in self.rebound and root not in local

    def defaults_ok(self, args: ast.arguments) -> bool:
        """Literals or plain names/attributes (a lookup, never a call)."""
        values = args.defaults + [d for d in args.kw_defaults if d is not None]
        return all(_is_literal(v) or _dotted(v) is not None for v in values)

    def function_problem(self, node, local: set[str] = frozenset(), properties: set[str] = frozenset()):
        if not all(self.decorator_ok(d, local, properties) for d in node.decorator_list):
            return f"a decorator on {node.name}() would run code at definition time"
        if not self.defaults_ok(node.args):
            return f"a default value of {node.name}() would run code at definition time (use None)"
        return None

    def class_problem(self, node: ast.ClassDef) -> str | None:
        if node.keywords or node.decorator_list:
            return f"class {node.name} takes keywords or decorators (a metaclass) that run code"
        if not all(_dotted(b) for b in node.bases):
            return f"class {node.name} has a base class that is not a plain name"
        local, properties = _bound_names(node.body), set()
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if item.name in FORBIDDEN_METHODS:
                    return f"class {node.name} defines {item.name}, which runs at definition time"
                problem = self.function_problem(item, local, properties)
                if problem:
                    return problem
                if [_dotted(d) for d in item.decorator_list] == ["property"]:
                    properties.add(item.name)
            elif isinstance(item, ast.Pass) or (
                isinstance(item, ast.Expr) and isinstance(item.value, ast.Constant)
            ):
                continue
            elif not (
                isinstance(item, ast.Assign)
                and all(isinstance(t, ast.Name) for t in item.targets)
                and _is_literal(item.value)
            ):
                return f"class {node.name} has a statement in its body that would run at definition time"
        return None

    def keep(self, node: ast.stmt) -> tuple[ast.stmt | None, str | None]:
        """``(node to keep or None, why it was dropped or None)``."""
        if isinstance(node, ast.Import):
            return node, None
        if isinstance(node, ast.ImportFrom):
            return (node, None) if not node.level else (None, "a relative import")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            problem = self.function_problem(node)
            return (None, problem) if problem else (node, None)
        if isinstance(node, ast.ClassDef):
            problem = self.class_problem(node)
            return (None, problem) if problem else (node, None)
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            node.value = _full_value(node.value)
            return (node, None) if _is_literal(node.value) else (None, None)
        return None, None  # other top-level code (calls, loops, prints) is simply not part of grading


def _without_annotations(node: ast.stmt) -> ast.stmt:
    """Annotations are evaluated at definition time: the grader drops them all."""
    for sub in ast.walk(node):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
            sub.returns = None
            for a in (
                sub.args.posonlyargs + sub.args.args + sub.args.kwonlyargs + [sub.args.vararg, sub.args.kwarg]
            ):
                if a is not None:
                    a.annotation = None
    return node


def literal_problem(tree: ast.AST) -> str | None:
    """A reason for hand review if the source carries a big literal (weights, labels...)."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, (str, bytes))
            and len(node.value) > MAX_LITERAL_CHARS
        ):
            size = f"{len(node.value):,} characters (cap {MAX_LITERAL_CHARS:,})"
            return f"line {node.lineno} holds a literal of {size}"
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)) and len(node.elts) > MAX_LITERAL_ITEMS:
            return f"line {node.lineno} holds a literal of {len(node.elts):,} items (cap {MAX_LITERAL_ITEMS})"
        if isinstance(node, ast.Dict) and len(node.keys) > MAX_LITERAL_ITEMS:
            return f"line {node.lineno} holds a literal of {len(node.keys):,} items (cap {MAX_LITERAL_ITEMS})"
    return None


def cells(notebook: Path | bytes) -> list[dict]:
    """The notebook's cells (a path or its bytes), checked to be a notebook of sane size."""
    raw = notebook if isinstance(notebook, bytes) else notebook.read_bytes()
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise ValueError(f"the notebook is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    nb = json.loads(raw.decode("utf-8"))
    found = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(found, list):
        raise ValueError("not a Jupyter notebook (no list of cells)")
    return [c for c in found if isinstance(c, dict)]


def _text(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(s for s in src if isinstance(s, str)) if isinstance(src, list) else str(src)


def written_answer(text: str) -> str:
    """The answer under the marker, or "" when it is missing or still the placeholder."""
    answer = text.lstrip()[len(ANSWER_MARK) :].strip()
    return "" if answer.replace(ANSWER_PLACEHOLDER, "").strip() == "" else answer


def extract(notebook: Path | bytes) -> tuple[str, list[str], str, str]:
    """``(source, problems, written_answer, review)`` from a notebook, without running any of it.

    Each code cell is parsed on its own (IPython ``%``/``!`` lines blanked); a
    cell that does not parse is skipped and named in ``problems``. ``review`` is
    a reason to grade the submission by hand instead (a cap was exceeded), or "".
    """
    kept, problems, answer, review = [], [], "", ""
    for i, cell in enumerate(cells(notebook), 1):
        text = _text(cell)
        if cell.get("cell_type") == "markdown" and not answer and text.lstrip().startswith(ANSWER_MARK):
            answer = written_answer(text)
        if cell.get("cell_type") != "code":
            continue
        lines = ["" if ln.lstrip().startswith(("%", "!")) else ln for ln in text.splitlines()]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError as e:
            problems.append(f"cell {i} has a syntax error (line {e.lineno}: {e.msg}); it was skipped")
            continue
        except (ValueError, RecursionError, MemoryError) as e:
            problems.append(f"cell {i} could not be parsed ({type(e).__name__}); it was skipped")
            continue
        review = review or (f"cell {i}: {literal_problem(tree)}" if literal_problem(tree) else "")
        checker = Checker(tree)
        for node in tree.body:
            node_kept, why = checker.keep(node)
            if node_kept is not None:
                kept.append(ast.unparse(_without_annotations(node_kept)))
            elif why:
                problems.append(f"cell {i} line {node.lineno}: not kept, {why}")
    source = "\n\n".join(kept) + "\n"
    if not review and len(source.encode()) > MAX_SOURCE_BYTES:
        review = f"the extracted source is {len(source.encode()):,} bytes (cap {MAX_SOURCE_BYTES:,})"
    return source, problems, answer, review


def defined_functions(source: str) -> set[str]:
    return {n.name for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
