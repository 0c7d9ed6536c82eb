"""Plots that several lessons share. Each returns the matplotlib figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


def show_images(images: torch.Tensor, labels=None, class_names=None, ncols: int = 8,
                size: float = 1.4, title: str | None = None):
    """A grid of images: uint8 or float, ``[N, H, W]`` or ``[N, C, H, W]`` (C = 1 or 3)."""
    images = images.detach().cpu()
    if images.ndim == 3:
        images = images.unsqueeze(1)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"show_images expects [N, H, W] or [N, 1|3, H, W], got {tuple(images.shape)}.")
    n = len(images)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = images[i].float()
        img = (img - img.min()) / (img.max() - img.min() + 1e-12)  # display range only
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if img.shape[0] == 1 else None)
        if labels is not None:
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
