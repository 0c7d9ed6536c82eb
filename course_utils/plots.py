"""Plots that several lessons draw (the training diagnostics: lesson 03 only). Each returns the figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn
import torch
from matplotlib.colors import LogNorm


def show_images(images: torch.Tensor, labels=None, class_names=None, ncols: int = 8,
                size: float = 1.4, title: str | None = None, titles=None):
    """A grid of images: uint8 or float, ``[N, H, W]`` or ``[N, C, H, W]`` (C = 1 or 3).

    Each image is titled by its label (a class name when ``class_names`` is given), or by
    ``titles[i]`` when ``titles`` (one string per image, lines split by ``\\n``) is given.
    """
    images = images.detach().cpu()
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"show_images expects [N, H, W] or [N, 1|3, H, W], got {tuple(images.shape)}.")
    n = len(images)
    if titles is not None and len(titles) != n:
        raise ValueError(f"show_images got {len(titles)} titles for {n} images: give one per image.")
    nrows = -(-n // ncols)
    height = nrows * size * (1.15 + 0.12 * max((t.count("\n") for t in titles or [""]), default=0))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, height), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i].float()
        img = (img - img.min()) / (img.max() - img.min() + 1e-12)  # display range only
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if img.shape[0] == 1 else None)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
        elif labels is not None:
            lab = int(labels[i])
            ax.set_title(class_names[lab] if class_names else str(lab), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: dict, title: str | None = None):
    """Train/validation loss and accuracy per epoch from ``fit``'s history."""
    has_acc = any(a is not None for a in history["train_acc"])
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 5, 3.5), squeeze=False)
    for ax, key in zip(axes.flat, ["loss", "acc"]):
        for split in ("train", "val"):
            values = history[f"{split}_{key}"]
            if any(v is not None for v in values):
                ax.plot(history["epoch"], values, marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if key == "acc" else "loss")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_per_class(acc: torch.Tensor, class_names, title: str = "Accuracy per class"):
    """Horizontal bars of per-class accuracy, with the overall mean as a line."""
    acc = torch.as_tensor(acc).cpu()
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(acc) + 1))
    ax.barh(list(class_names), acc.numpy(), color="tab:blue")
    ax.axvline(float(acc.nanmean()), color="k", ls="--", label="mean over classes")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_confusion_matrix(matrix: torch.Tensor, class_names, title: str | None = None):
    """Heatmap of a confusion matrix: row = true class, column = predicted class, counts in the cells.

    The colour scale is logarithmic, so that the few dozen confusions between two classes stand
    out next to the diagonal's hundreds of correct predictions; empty cells stay white.
    """
    matrix = torch.as_tensor(matrix).detach().cpu()
    k = len(class_names)
    if matrix.shape != (k, k):
        raise ValueError(f"plot_confusion_matrix expects a {k} x {k} matrix for {k} class names, "
                         f"got {tuple(matrix.shape)}.")
    if matrix.is_floating_point() or (matrix < 0).any():
        raise ValueError("plot_confusion_matrix expects counts: non-negative integers.")
    counts = matrix.numpy()
    fig, ax = plt.subplots(figsize=(0.62 * k + 2.2, 0.55 * k + 1.2))
    seaborn.heatmap(counts, mask=counts == 0, norm=LogNorm(vmin=1, vmax=max(int(counts.max()), 2)),
                    annot=True, fmt="d", annot_kws={"fontsize": 7}, cmap="rocket_r", linewidths=0.5,
                    linecolor="0.9", xticklabels=class_names, yticklabels=class_names, ax=ax,
                    cbar_kws={"label": "images (log scale)"})
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.tick_params(labelsize=8)
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


# --- Training diagnostics (lesson 03), drawn from course_utils.hooks' records ---------------------
# They read what course_utils.hooks records: ``rec`` is a ``Recorder`` (from ``record``/``diagnose``),
# ``upd`` an ``UpdateTracker`` (from ``track_updates``). Each draws on ``ax`` when given (to put
# several networks side by side), else on a new figure, and returns the figure.


def _diagnostic_axes(ax, title: str | None, xlabel: str, ylabel: str):
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return ax


def _histogram_lines(ax, samples: dict, labels: dict, bins: int) -> None:
    """One line per entry: the share of its values in each of ``bins`` shared bins."""
    samples = {k: v for k, v in samples.items() if v.numel()}
    if not samples:
        raise ValueError("No nonzero values were recorded: run a forward and backward pass "
                         "inside record() (or diagnose()) before plotting.")
    lo = min(float(torch.quantile(v[:100_000], 0.001)) for v in samples.values())
    hi = max(float(torch.quantile(v[:100_000], 0.999)) for v in samples.values())
    hi = hi if hi > lo else lo + 1e-6
    centers = torch.linspace(lo, hi, bins + 1)[:-1] + (hi - lo) / bins / 2
    for k, v in samples.items():
        counts = torch.histc(v, bins=bins, min=lo, max=hi)
        ax.plot(centers.numpy(), (counts / v.numel()).numpy(), label=labels[k])
    ax.legend(fontsize=7)


def plot_activation_histograms(rec, ax=None, title: str | None = None, bins: int = 60):
    """Where each recorded layer's outputs fall, pooled over the recorded batches.

    The legend gives each layer's mean, std and saturated share (``hooks.SATURATED``).
    Healthy: broad curves, little mass at the flat ends (sigmoid 0 or 1, tanh -1 or 1), a
    similar spread in every layer. For ReLU the exact zeros (its "saturated" share) are left
    out of the curve so that the rest stays visible.
    """
    ax = _diagnostic_axes(ax, title, "activation value", "share of values per bin")
    stats, samples, labels = rec.summary(), {}, {}
    for n, kind in rec.kinds.items():
        v = torch.cat(rec.acts[n]) if rec.acts[n] else torch.empty(0)
        samples[n] = v[v != 0] if kind == "ReLU" else v
        s = stats[n]
        labels[n] = (f"{n} {kind}: mean {s['mean']:+.2f}, std {s['std']:.2f}, "
                     f"saturated {s['saturated']:.0%}")
    _histogram_lines(ax, samples, labels, bins)
    return ax.figure


def plot_gradient_histograms(rec, ax=None, title: str | None = None, bins: int = 60):
    """log10 |gradient of the loss w.r.t. each recorded layer's output|, pooled over batches.

    On a log axis a layer whose gradients are 1000 times smaller sits 3 units to the left.
    Healthy: the curves of all layers lie on top of each other. Vanishing gradients: they
    slide left layer by layer towards the input (exploding: to the right).
    """
    ax = _diagnostic_axes(ax, title, "log10 |gradient|", "share of values per bin")
    stats, samples, labels = rec.summary(), {}, {}
    for n, kind in rec.kinds.items():
        g = torch.cat(rec.grads[n]) if rec.grads[n] else torch.empty(0)
        samples[n] = g[g != 0].abs().log10()
        labels[n] = f"{n} {kind}: grad std {stats[n]['grad_std']:.1e}"
    _histogram_lines(ax, samples, labels, bins)
    return ax.figure


def plot_grad_data_ratios(rec, ax=None, title: str | None = None):
    """std(gradient) / std(weight) of each weight matrix (mean over the recorded batches), log scale.

    It says how big a step the gradient suggests relative to the weight itself. Healthy:
    bars of similar height (often the last layer is somewhat taller); a bar orders of
    magnitude below the rest marks a layer that plain SGD will barely move.
    """
    ax = _diagnostic_axes(ax, title, "weight", "grad:data ratio")
    summary = rec.weight_summary()
    names = list(summary)
    ax.bar(range(len(names)), [summary[n]["grad_data"] for n in names], color="tab:blue")
    shapes = ["x".join(map(str, rec.weights[n].shape)) for n in names]
    ax.set_xticks(range(len(names)), [f"{n} {s}" for n, s in zip(names, shapes)], fontsize=7,
                  rotation=30, ha="right")
    ax.set_yscale("log")
    return ax.figure


def plot_update_ratios(upd, ax=None, title: str | None = None, guide: float = -3.0):
    """log10(std(update) / std(weight)) of each weight matrix over the optimizer steps.

    Each step should change a weight by about a thousandth of its spread: the dashed line
    at -3. Far below, that layer is barely learning (learning rate too low for it, or its
    gradient vanished); well above -2, the steps are so large that training is unstable.
    """
    ax = _diagnostic_axes(ax, title, "optimizer step", "log10 update:data")
    for n, ratios in upd.ratios.items():
        ax.plot(upd.steps, ratios, lw=1, label=f"{n} {tuple(upd.weights[n].shape)}")
    ax.axhline(guide, color="k", ls="--", lw=1, label=f"guide ({guide:g})")
    ax.legend(fontsize=7)
    return ax.figure


def plot_histories(histories: dict, key: str = "acc", ncols: int = 4, title: str | None = None):
    """Several runs side by side: one small panel per run with its train (dashed) and
    validation (solid) curve of ``key`` ("acc" or "loss"), on shared axes.

    ``histories`` maps a run's name to a history from ``fit`` (or any dict with
    ``epoch``, ``train_<key>`` and ``val_<key>`` lists). The gap between the two
    curves of a panel is the overfitting of that run.
    """
    if key not in ("acc", "loss"):
        raise ValueError(f"key must be 'acc' or 'loss', got {key!r}.")
    if not histories:
        raise ValueError("plot_histories got no runs.")
    ncols = min(ncols, len(histories))
    nrows = -(-len(histories) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 2.4 * nrows), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (name, h) in zip(axes.flat, histories.items()):
        for split, style in (("train", "--"), ("val", "-")):
            values = h[f"{split}_{key}"]
            if any(v is not None for v in values):
                ax.plot(h["epoch"], values, style, marker=".", label=split)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(histories):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy" if key == "acc" else "loss")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
