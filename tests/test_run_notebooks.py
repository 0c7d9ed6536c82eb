"""tools.run_notebooks.clean: finished tqdm bars become their final text, closed ones vanish,
widget state goes, and the kernelspec is JupyterLab's; tools.catalogue lists the notebooks."""

import shutil

import nbformat
import pytest

from tools import catalogue, run_notebooks

WIDGET = run_notebooks.WIDGET


def bar(state: dict, key: str, left: str, value: int, total: int, right: str, style: str) -> dict:
    """Add one tqdm notebook bar (HBox of HTML, FloatProgress, HTML) to ``state``; return its output."""
    state[f"{key}l"] = {"model_name": "HTMLModel", "state": {"value": left}}
    state[f"{key}p"] = {"model_name": "FloatProgressModel",
                        "state": {"value": value, "max": total, "bar_style": style}}
    state[f"{key}r"] = {"model_name": "HTMLModel", "state": {"value": right}}
    state[key] = {"model_name": "HBoxModel",
                  "state": {"children": [f"IPY_MODEL_{key}{p}" for p in "lpr"]}}
    return nbformat.v4.new_output("display_data", data={
        WIDGET: {"model_id": key, "version_major": 2, "version_minor": 0},
        "text/plain": f"{left.split(':')[0]}:   0%|          | 0/{total} [00:00<?, ?it/s]"})


def test_clean_writes_final_bars_and_drops_closed_ones():
    state = {}
    cell = nbformat.v4.new_code_cell("fit(...)", outputs=[
        bar(state, "a", "epoch\u20071:\u2007100%", 50, 50, "\u200750/50\u2007[00:01&lt;00:00]", "success"),
        bar(state, "b", "train:\u2007\u20070%", 0, 30, "\u20070/30", ""),  # leave=False: closed
        bar(state, "c", "rounds:\u200740%", 2, 5, "\u20072/5", "danger"),  # stopped early
        nbformat.v4.new_output("stream", text="done\n")])
    cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01"}
    nb = nbformat.v4.new_notebook(cells=[cell], metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "widgets": {run_notebooks.WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}})
    run_notebooks.clean(nb)
    texts = [o.get("data", {}).get("text/plain", o.get("text")) for o in nb.cells[0].outputs]
    assert texts == ["epoch 1: 100%|██████████| 50/50 [00:01<00:00]", "rounds: 40%|████      | 2/5", "done\n"]
    assert "widgets" not in nb.metadata and nb.cells[0].metadata == {}
    assert nb.metadata["kernelspec"]["display_name"] == "Python 3 (ipykernel)"
    nbformat.validate(nb)


def test_catalogue_pairs_solutions_with_student_copies_and_skips_checkpoints(tmp_path):
    folder = tmp_path / "notebooks"
    shutil.copytree(catalogue.NOTEBOOKS, folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (folder / ".ipynb_checkpoints").mkdir()
    for name in ("06_pseudo_labeling.ipynb", "06_pseudo_labeling-checkpoint.ipynb"):
        shutil.copy(folder / "06_pseudo_labeling.ipynb", folder / ".ipynb_checkpoints" / name)
    (folder / "solutions" / ".ipynb_checkpoints").mkdir()
    (folder / "scratch.ipynb").write_text("{}")  # not a course notebook (no NN_ prefix)
    names = [catalogue.display_name(p, folder) for p in catalogue.all_notebooks(folder)]
    assert names == sorted(names) and not any("checkpoint" in n or "scratch" in n for n in names)
    assert "06_pseudo_labeling.ipynb" in names and "solutions/06_pseudo_labeling_solution.ipynb" in names
    solution = folder / "solutions" / "06_pseudo_labeling_solution.ipynb"
    student = folder / "06_pseudo_labeling.ipynb"
    assert catalogue.student_of(solution) == student and catalogue.solution_of(student) == solution
    assert catalogue.is_student_copy(student) and not catalogue.is_student_copy(solution)
    executed = catalogue.executed_notebooks(folder)
    assert student not in executed and solution in executed
    with pytest.raises(ValueError, match="is not a notebooks/solutions/NN_<name>_solution.ipynb file"):
        catalogue.student_of(student)


def test_run_notebooks_refuses_a_student_copy():
    with pytest.raises(SystemExit):
        run_notebooks.main([str(catalogue.NOTEBOOKS / "06_pseudo_labeling.ipynb")])
