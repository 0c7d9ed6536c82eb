"""Re-run notebooks top to bottom and save them with their outputs.

    python -m tools.run_notebooks                  # every executed notebook (tools.catalogue), full settings
    python -m tools.run_notebooks notebooks/solutions/02_first_network_solution.ipynb
    python -m tools.run_notebooks --smoke ...      # CI's tiny settings (for a quick look)

The committed notebooks are made by this script (full settings), so they read on GitHub with
their figures. Student copies are never run here: ``python -m tools.make_student`` writes them
from the executed solutions afterwards.

What is saved besides the outputs:

- Progress bars: tqdm's notebook widgets are replaced by the text of their *final* state
  (e.g. ``epoch 3/3: 100%|██████████| 422/422 [00:09<00:00]``), read from the widget state the
  kernel reported; bars closed with ``leave=False`` (the package's training loops) vanish on
  screen and are dropped (the loop prints its own one-line summary). Widget state is dropped
  too: GitHub cannot render widgets, and a saved widget shows its first frame, ``0%``, forever.
- Notebook metadata in the form JupyterLab writes (kernelspec "Python 3 (ipykernel)"), so that
  opening and saving a notebook in JupyterLab makes no diff.

A full run also exports the figures the notebook passes to ``course_utils.figures.save_figure``
into ``figures/`` (``COURSE_FIGURES``); a smoke run exports nothing.

Each notebook is written atomically; its wall time is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from course_utils.runtime import atomic_write
from tools import catalogue

WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
BAR_WIDTH = 10


def bar_text(model_id: str, state: dict) -> str | None:
    """The text of a tqdm notebook bar (an HBox of label, progress, label) in its final state.

    ``state`` maps model ids to ``{"model_name": ..., "state": {...}}``. Returns None if
    ``model_id`` is not such a bar, and "" for a bar that tqdm closed with ``leave=False``
    (it vanishes from the screen, so it is not kept): only a bar left on screen, finished
    (``bar_style`` "success") or stopped early ("danger"), is written.
    """
    children = state.get(model_id, {}).get("state", {}).get("children", [])
    parts = [state.get(str(c).removeprefix("IPY_MODEL_"), {}).get("state", {}) for c in children]
    if len(parts) != 3 or "max" not in parts[1]:
        return None
    left, progress, right = parts
    if progress.get("bar_style") not in ("success", "danger"):
        return ""
    total, value = progress["max"], progress.get("value", 0)
    filled = BAR_WIDTH if not total else min(BAR_WIDTH, int(BAR_WIDTH * value / total))
    bar = "█" * filled + " " * (BAR_WIDTH - filled)
    text = f"{html.unescape(left.get('value', ''))}|{bar}|{html.unescape(right.get('value', ''))}"
    return text.replace("\u2007", " ")


def clean(nb) -> None:
    """Widgets -> final text (or nothing), widget state dropped, JupyterLab's kernelspec."""
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET in data:
                text = bar_text(data.pop(WIDGET).get("model_id", ""), state)
                if text == "":
                    continue
                if text is not None:
                    data["text/plain"] = text
                elif not data.get("text/plain", "").strip() or data["text/plain"].startswith(
                        ("HBox(", "VBox(", "FloatProgress(", "IntProgress(")):
                    continue
            outputs.append(out)
        cell.outputs = outputs


def _set_env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def environment(**values: str | None):
    """Set (or, for None, unset) environment variables for the kernel, then restore them."""
    before = {key: os.environ.get(key) for key in values}
    _set_env(values)
    try:
        yield
    finally:
        _set_env(before)


def run(path: Path, smoke: bool, timeout: int) -> float:
    """Execute ``path`` in place (smoke or full settings), clean it, write it; return the seconds.

    A full run also exports the notebook's ``save_figure`` figures into ``figures/``.
    """
    nb = nbformat.read(path, as_version=4)
    in_repo = path.resolve().is_relative_to(catalogue.ROOT)  # bench.course runs temporary copies
    figures = str(catalogue.ROOT / "figures") if in_repo and not smoke else None
    start = time.perf_counter()
    with environment(COURSE_SMOKE="1" if smoke else "0", COURSE_FIGURES=figures):
        NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    elapsed = time.perf_counter() - start
    clean(nb)
    nbformat.validate(nb)
    text = nbformat.writes(nb)
    atomic_write(path, text if text.endswith("\n") else text + "\n")
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: catalogue.executed_notebooks()")
    parser.add_argument("--smoke", action="store_true", help="tiny CI settings instead of full ones")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or catalogue.executed_notebooks()
    for path in paths:
        if catalogue.is_student_copy(path.resolve()):
            parser.error(f"{path} is a student copy: run its solution, then python -m tools.make_student")
    total = 0.0
    for path in paths:
        seconds = run(path.resolve(), args.smoke, args.timeout)
        total += seconds
        print(f"{path.name:45s} {seconds / 60:6.2f} min", flush=True)
    print(f"total {total / 60:.2f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
