"""The learning-rate range test (Smith 2015; popularised by fastai), taught in lesson 05.

Which learning rates can train this model?

Train for a few hundred batches while the learning rate grows exponentially
from tiny to huge, and record the loss. Too small an LR leaves the loss flat;
a good one makes it fall fast; too large a one makes it blow up. The test stops
as soon as the smoothed loss exceeds ``diverge_factor`` times its best value.

The test trains the real model, so it saves the model's ``state_dict``, the
optimizer's ``state_dict`` (deep copies), every ``.grad`` and the train/eval
flag first, and puts them all back when it ends, also when it fails midway.
The data iterator is consumed, and the global random state moves on if the
model uses dropout; nothing else is touched.

The suggestion is the LR at the minimum of the smoothed loss divided by 10
(see ``suggest_lr``); the steepest-descent LR is reported too.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from course_utils.runtime import model_device


@dataclass
class LRFinderResult:
    """What ``lr_range_test`` measured: one entry per batch, in order."""

    lrs: list[float]
    losses: list[float]      # exponential moving average, bias-corrected
    raw_losses: list[float]  # the loss of each batch as measured
    suggested_lr: float      # lr at the smoothed minimum / 10
    min_loss_lr: float       # lr at the smoothed minimum
    steepest_lr: float       # lr where the smoothed loss falls fastest (per log10 lr)
    diverged: bool           # stopped early because the loss blew up


def _check_args(start_lr, end_lr, num_steps, smoothing, diverge_factor) -> None:
    if not 0 < start_lr < end_lr:
        raise ValueError(f"Need 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}; "
                         "a typical range is 1e-7 to 10.")
    if num_steps < 10:
        raise ValueError(f"num_steps must be >= 10 (a few hundred is typical), got {num_steps}.")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), e.g. 0.98; got {smoothing}.")
    if not diverge_factor > 1:
        raise ValueError(f"diverge_factor must be > 1, e.g. 4; got {diverge_factor}.")


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    return {"model": copy.deepcopy(model.state_dict()),
            "optimizer": copy.deepcopy(optimizer.state_dict()),
            "grads": [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()],
            "training": model.training}


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Put everything back in place (same tensors, so the optimizer still holds the parameters)."""
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    for p, g in zip(model.parameters(), saved["grads"]):
        p.grad = g
    model.train(saved["training"])


def _endless(data):
    """Yield batches from ``data`` epoch after epoch."""
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            raise ValueError("lr_range_test got no batches: the data is empty.")


def suggest_lr(lrs, losses, skip_start: int = 10) -> tuple[float, float, float]:
    """``(suggested, at_min, steepest)`` from a smoothed loss-vs-LR curve.

    Suggested = the LR of the lowest smoothed loss divided by 10. At the minimum
    the loss has just stopped improving, so the minimum itself is already too
    hot to train at; one decade lower the loss is still falling steeply. It is
    robust: the minimum of a smoothed curve moves little between runs, while
    the steepest point (the most negative slope of a noisy curve) can jump by
    a decade. The steepest point between ``skip_start`` and the minimum is
    returned too (the first points average only a few batches: their slope is noise).
    """
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    i_min = int(np.nanargmin(losses))
    start = min(skip_start, i_min // 2)
    if i_min - start >= 2:
        slope = np.gradient(losses[start: i_min + 1], np.log10(lrs[start: i_min + 1]))
        steepest = float(lrs[start + int(np.argmin(slope))])
    else:
        steepest = float(lrs[i_min])
    return float(lrs[i_min]) / 10, float(lrs[i_min]), steepest


def lr_range_test(model: nn.Module, data, optimizer: torch.optim.Optimizer, loss_fn=None,
                  start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 200,
                  smoothing: float = 0.98, diverge_factor: float = 4.0,
                  progress: bool = True) -> LRFinderResult:
    """Run the LR range test and return an ``LRFinderResult``; model and optimizer are restored.

    Step ``i`` (of ``num_steps``) trains one batch at
    ``lr = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))`` (every param
    group). ``data`` yields ``(x, y)`` and is cycled if it runs out. The loss is
    smoothed with a bias-corrected moving average (``smoothing`` = its beta).
    """
    _check_args(start_lr, end_lr, num_steps, smoothing, diverge_factor)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    if next(model.parameters(), None) is None:
        raise ValueError("lr_range_test needs a model with parameters to train.")
    device = model_device(model)
    saved = _snapshot(model, optimizer)
    lrs, raw, smooth, avg, best, diverged = [], [], [], 0.0, math.inf, False
    try:
        model.train()
        batches = _endless(data)
        for i in tqdm(range(num_steps), desc="LR range test", leave=False, disable=not progress):
            lr = start_lr * (end_lr / start_lr) ** (i / (num_steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = next(batches)
            loss = loss_fn(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            avg = smoothing * avg + (1 - smoothing) * loss.item()
            lrs.append(lr)
            raw.append(loss.item())
            smooth.append(avg / (1 - smoothing ** (i + 1)))  # bias correction: avg starts at 0
            if not math.isfinite(smooth[-1]) or smooth[-1] > diverge_factor * best:
                diverged = True
                break
            best = min(best, smooth[-1])
    finally:
        _restore(model, optimizer, saved)
    finite = [s if math.isfinite(s) else math.inf for s in smooth]
    skip = int(1 / (1 - smoothing))  # until the moving average has seen ~1/(1-beta) batches
    return LRFinderResult(lrs, smooth, raw, *suggest_lr(lrs, finite, skip), diverged)


def plot_lr_finder(result: LRFinderResult, ax=None, title: str = "LR range test"):
    """Smoothed (and raw) loss against the LR on a log axis, with the suggestions marked."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3.5))
    ax.plot(result.lrs, result.raw_losses, color="tab:blue", alpha=0.25, lw=0.8, label="loss per batch")
    ax.plot(result.lrs, result.losses, color="tab:blue", label="smoothed loss")
    ax.axvline(result.min_loss_lr, color="tab:red", ls=":", label=f"minimum {result.min_loss_lr:.2g}")
    ax.axvline(result.steepest_lr, color="tab:orange", ls="--", label=f"steepest {result.steepest_lr:.2g}")
    ax.axvline(result.suggested_lr, color="tab:green", lw=2, label=f"suggested {result.suggested_lr:.2g}")
    finite = [v for v in result.losses + result.raw_losses if math.isfinite(v)]
    if finite:  # zoom on the useful part: from the lowest loss to a bit above the start
        ax.set_ylim(min(finite) - 0.1 * abs(min(finite)), 1.5 * result.losses[0] + 0.05)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
