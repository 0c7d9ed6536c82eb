"""Re-run notebooks top to bottom and save them with their outputs.

    python tools/run_notebooks.py                 # every notebook, full settings
    python tools/run_notebooks.py notebooks/02_*.ipynb
    python tools/run_notebooks.py --smoke ...     # CI's tiny settings (for a quick look)

The committed notebooks are made by this script (full settings), so they read
on GitHub with their figures. Progress-bar widgets are replaced by their text
form and widget state is dropped, because GitHub cannot render widgets.
Each notebook is written atomically; its wall time is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
WIDGET = "application/vnd.jupyter.widget-view+json"


def clean(nb) -> None:
    """Drop widget state and widget outputs (keep their text), and empty stderr noise."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET in data:
                data.pop(WIDGET)
                if not data.get("text/plain", "").strip() or data.get("text/plain", "").startswith(
                        ("HBox(", "VBox(", "FloatProgress(", "IntProgress(")):
                    continue
            outputs.append(out)
        cell.outputs = outputs


def run(path: Path, smoke: bool, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    env_before = os.environ.get("COURSE_SMOKE")
    os.environ["COURSE_SMOKE"] = "1" if smoke else "0"
    start = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        if env_before is None:
            os.environ.pop("COURSE_SMOKE", None)
        else:
            os.environ["COURSE_SMOKE"] = env_before
    elapsed = time.perf_counter() - start
    clean(nb)
    nbformat.validate(nb)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".ipynb.tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        nbformat.write(nb, f)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--smoke", action="store_true", help="tiny CI settings instead of full ones")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").rglob("[0-9]*.ipynb"))
    total = 0.0
    for path in paths:
        seconds = run(path.resolve(), args.smoke, args.timeout)
        total += seconds
        print(f"{path.name:45s} {seconds / 60:6.2f} min", flush=True)
    print(f"total {total / 60:.2f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
