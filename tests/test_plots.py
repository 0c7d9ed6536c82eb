import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_utils import plots  # noqa: E402
from course_utils.data import FASHION_CLASSES  # noqa: E402


def test_show_images_grid(fashion):
    x, y = fashion
    fig = plots.show_images(x[:10], y[:10], FASHION_CLASSES, ncols=4)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 10 and shown[0].get_title() == FASHION_CLASSES[int(y[0])]
    plt.close(fig)
    rgb = plots.show_images(torch.rand(3, 3, 8, 8))
    assert rgb.axes[0].images[0].get_array().shape == (8, 8, 3)
    plt.close(rgb)
    with pytest.raises(ValueError, match="expects"):
        plots.show_images(torch.rand(2, 2, 8, 8))


def test_plot_history_and_per_class():
    hist = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7],
            "train_acc": [0.5, 0.8], "val_acc": [0.4, 0.7], "lr": [0.1, 0.1]}
    fig = plots.plot_history(hist)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
    plt.close(fig)
    no_acc = dict(hist, train_acc=[None, None], val_acc=[None, None])
    assert len(plots.plot_history(no_acc).axes) == 1
    fig = plots.plot_per_class(torch.linspace(0.5, 1, 10), FASHION_CLASSES)
    assert len(fig.axes[0].patches) == 10
    plt.close("all")


def test_show_images_titles():
    fig = plots.show_images(torch.rand(3, 8, 8), titles=["a\nb", "c", "d"], ncols=3)
    assert [ax.get_title() for ax in fig.axes] == ["a\nb", "c", "d"]
    plt.close(fig)
    with pytest.raises(ValueError, match="2 titles for 3 images"):
        plots.show_images(torch.rand(3, 8, 8), titles=["a", "b"])


def test_plot_confusion_matrix_writes_each_count():
    true = torch.tensor([0, 0, 1, 2, 2, 2])
    pred = torch.tensor([0, 1, 1, 2, 2, 0])
    matrix = torch.bincount(true * 3 + pred, minlength=9).view(3, 3)
    fig = plots.plot_confusion_matrix(matrix, ["a", "b", "c"], title="t")
    ax = fig.axes[0]
    written = sorted(int(t.get_text()) for t in ax.texts)
    assert written == sorted(matrix[matrix > 0].tolist())  # the empty cells carry no number
    at = {(int(t.get_position()[1]), int(t.get_position()[0])): int(t.get_text()) for t in ax.texts}
    assert at == {(r, c): int(matrix[r, c]) for r in range(3) for c in range(3) if matrix[r, c]}  # row = true
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_ylabel() == "true class" and ax.get_xlabel() == "predicted class"
    plt.close(fig)
    with pytest.raises(ValueError, match="3 x 3"):
        plots.plot_confusion_matrix(torch.zeros(2, 2, dtype=torch.long), ["a", "b", "c"])
    with pytest.raises(ValueError, match="counts"):
        plots.plot_confusion_matrix(torch.rand(3, 3), ["a", "b", "c"])
