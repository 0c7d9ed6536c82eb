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
