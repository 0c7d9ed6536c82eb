"""figures/: every figure a notebook exports is on disk and listed, and save_figure writes whole files."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from course_utils.figures import FIGURES_ENV, save_figure  # noqa: E402
from tools import figures  # noqa: E402


def test_every_exported_figure_is_on_disk_and_listed():
    listed = figures.collect()
    assert len(listed) >= 8, "each lesson exports its key figures with save_figure"
    assert figures.problems(listed) == []


def test_index_names_the_cell_that_makes_each_figure():
    for figure in figures.collect():
        cells = [c for c in nbformat.read(figure.notebook, as_version=4).cells
                 if c.cell_type == "code" and c.execution_count == figure.cell]
        assert len(cells) == 1 and f'"{figure.name}"' in cells[0].source
        images = [o for o in cells[0].get("outputs", []) if "image/png" in o.get("data", {})]
        assert images, f"{figure.name}: its cell In [{figure.cell}] shows no figure in the committed notebook"


def test_a_removed_call_or_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "FOLDER", tmp_path)
    monkeypatch.setattr(figures, "INDEX", tmp_path / "README.md")
    one = figures.Figure("03_x", "a caption", figures.catalogue.solutions()[0], 4)
    (tmp_path / "README.md").write_text(figures.render([one]))
    (tmp_path / "03_x.png").write_bytes(b"png")
    assert figures.problems([one]) == ["figures/03_x.svg is listed but missing: "
                                       "run its notebook with python -m tools.run_notebooks"]
    (tmp_path / "03_x.svg").write_text("svg")
    assert figures.problems([one]) == []
    stale = figures.problems([])  # the notebook no longer calls save_figure("03_x", ...)
    assert any("stale" in p for p in stale) and any("03_x.png is made by no notebook" in p for p in stale)


def test_calls_read_literal_arguments_only():
    assert figures.calls('save_figure(fig, "02_a", "Caption.")\nx = 1') == [("02_a", "Caption.")]
    assert figures.calls("%matplotlib inline\nplots.save_figure(f, '02_b', 'c')") == [("02_b", "c")]
    with pytest.raises(ValueError, match="literal"):
        figures.calls("save_figure(fig, name, 'c')")


def test_save_figure_is_a_no_op_without_the_variable(monkeypatch):
    monkeypatch.delenv(FIGURES_ENV, raising=False)
    fig, _ = plt.subplots()
    assert save_figure(fig, "01_nothing", "not written") == []
    plt.close(fig)


def test_save_figure_writes_png_and_svg_whole(tmp_path, monkeypatch):
    monkeypatch.setenv(FIGURES_ENV, str(tmp_path))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    written = save_figure(fig, "05_line", "A line.")
    plt.close(fig)
    assert [p.name for p in written] == ["05_line.png", "05_line.svg"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in written[1].read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["05_line.png", "05_line.svg"]  # no temp file left


@pytest.mark.parametrize("name, caption, match", [("line", "c", "lesson"), ("5_line", "c", "lesson"),
                                                  ("05-Line", "c", "lesson"), ("05_line", " ", "caption")])
def test_save_figure_rejects_bad_names_before_writing(tmp_path, monkeypatch, name, caption, match):
    monkeypatch.setenv(FIGURES_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=match):
        save_figure(None, name, caption)
    assert list(tmp_path.iterdir()) == []
