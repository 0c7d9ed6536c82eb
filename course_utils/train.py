"""A small, readable training loop: ``fit``, ``evaluate`` and checkpoints.

Lesson 02 writes the loop by hand first; later lessons call ``fit`` so that
each notebook can focus on its own topic. ``data`` may be anything that yields
``(inputs, targets)`` batches: ``course_utils.data.Batches`` or a ``DataLoader``.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _check_types(x, y) -> None:
    if not torch.is_tensor(x) or not torch.is_tensor(y):
        raise TypeError(f"Each batch must be a pair of tensors (inputs, targets); got "
                        f"({type(x).__name__}, {type(y).__name__}).")


def _check_batch(model: nn.Module, x, y, out) -> None:
    """Clear errors for the mistakes a first batch reveals."""
    if out.shape[0] != x.shape[0]:
        raise ValueError(f"The model returned {out.shape[0]} rows for a batch of {x.shape[0]}: "
                         "check a reshape/view in forward() (use x.flatten(1), not x.view(-1)).")
    if out.ndim == 2 and y.ndim == 1 and not y.is_floating_point() and y.numel():
        if int(y.max()) >= out.shape[1] or int(y.min()) < 0:
            raise ValueError(f"Targets run from {int(y.min())} to {int(y.max())} but the model "
                             f"outputs {out.shape[1]} classes; the last layer needs "
                             f"{int(y.max()) + 1} outputs.")


def _forward(model, x, device):
    if not torch.is_tensor(x):
        raise TypeError(f"Batch inputs must be a tensor, got {type(x).__name__}.")
    x = x.to(device, non_blocking=True)
    try:
        return model(x)
    except RuntimeError as e:
        if "shape" in str(e) or "size" in str(e) or "dtype" in str(e) or "device" in str(e):
            raise RuntimeError(f"The model could not take a batch of shape {tuple(x.shape)}, "
                               f"dtype {x.dtype}, on {x.device} (model on {device}). "
                               f"PyTorch said: {e}") from None
        raise


def _accuracy_count(out: torch.Tensor, y: torch.Tensor) -> int | None:
    if out.ndim == 2 and y.ndim == 1 and not y.is_floating_point():
        return int((out.argmax(1) == y).sum())
    return None


@torch.no_grad()
def evaluate(model: nn.Module, data, loss_fn=None) -> dict:
    """Mean loss and accuracy of ``model`` over ``data``, in eval mode, without gradients."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    device, was_training = model_device(model), model.training
    model.eval()
    total, loss_sum, correct = 0, 0.0, 0
    try:
        for x, y in data:
            _check_types(x, y)
            out = _forward(model, x, device)
            y = y.to(device)
            _check_batch(model, x, y, out)
            loss_sum += float(loss_fn(out, y)) * len(x)
            c = _accuracy_count(out, y)
            correct = None if c is None or correct is None else correct + c
            total += len(x)
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate() got no batches: the data is empty.")
    return {"loss": loss_sum / total, "acc": None if correct is None else correct / total}


@torch.no_grad()
def predict(model: nn.Module, data) -> tuple[torch.Tensor, torch.Tensor]:
    """All outputs and targets of ``model`` over ``data``, concatenated on the CPU."""
    device, was_training = model_device(model), model.training
    model.eval()
    outs, ys = [], []
    try:
        for x, y in data:
            outs.append(_forward(model, x, device).cpu())
            ys.append(y.cpu())
    finally:
        model.train(was_training)
    if not outs:
        raise ValueError("predict() got no batches: the data is empty.")
    return torch.cat(outs), torch.cat(ys)


def per_class_accuracy(model: nn.Module, data, num_classes: int) -> torch.Tensor:
    """Accuracy on each class, shape ``[num_classes]`` (NaN for a class absent from ``data``).

    Their plain mean is the *balanced* (macro) accuracy, which differs from the
    usual accuracy when classes have different sizes.
    """
    out, y = predict(model, data)
    hits = (out.argmax(1) == y).float()
    counts = torch.bincount(y, minlength=num_classes).float()
    right = torch.bincount(y, weights=hits, minlength=num_classes)
    return right / counts  # 0/0 gives NaN for an absent class, on purpose


def save_checkpoint(path: str | Path, model: nn.Module, optimizer=None, **extra) -> Path:
    """Save weights (and optimizer state) atomically: a temp file, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), **extra}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, model: nn.Module, optimizer=None, map_location=None) -> dict:
    """Load a checkpoint written by ``save_checkpoint`` into ``model`` (and ``optimizer``).

    ``map_location`` defaults to the model's device, so a checkpoint saved on a
    GPU loads on a laptop. Only tensors and plain types are unpickled
    (``weights_only=True``).
    """
    state = torch.load(path, map_location=map_location or model_device(model), weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    return state


def fit(model: nn.Module, train_data, optimizer: torch.optim.Optimizer, epochs: int = 1,
        loss_fn=None, val_data=None, scheduler=None, scheduler_per_batch: bool = False,
        checkpoint: str | Path | None = None, patience: int | None = None,
        live_plot: bool = False, progress: bool = True, on_step=None) -> dict[str, list]:
    """Train ``model`` and return its history: a dict of per-epoch lists.

    - ``loss_fn`` defaults to cross-entropy on logits.
    - ``scheduler`` steps once per epoch (``ReduceLROnPlateau`` gets the
      validation loss), or once per batch with ``scheduler_per_batch=True``
      (``OneCycleLR``, ``CyclicLR``, warm-up).
    - ``checkpoint``: keep the best epoch (lowest validation loss) in this file
      and load it back at the end. ``patience``: stop after that many epochs
      without improvement (early stopping; needs ``val_data``).
    - ``on_step(step)`` is called after every optimizer step (for diagnostics).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}.")
    if (checkpoint or patience) and val_data is None:
        raise ValueError("checkpoint= and patience= choose the best epoch on val_data; pass val_data.")
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    device = model_device(model)
    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    history: dict[str, list] = {"epoch": [], "lr": [], "train_loss": [], "train_acc": [],
                                "val_loss": [], "val_acc": []}
    plot = _live_plot() if live_plot else None
    best, since_best, step = math.inf, 0, 0
    for epoch in range(1, epochs + 1):
        model.train()
        total, loss_sum, correct = 0, 0.0, 0
        bar = tqdm(train_data, desc=f"epoch {epoch}/{epochs}", leave=False, disable=not progress)
        for x, y in bar:
            _check_types(x, y)
            out = _forward(model, x, device)
            y = y.to(device, non_blocking=True)
            if step == 0:
                _check_batch(model, x, y, out)
            loss = loss_fn(out, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"The loss became {loss.item()} at epoch {epoch}, step "
                                         f"{step}: lower the learning rate or check the inputs.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if on_step is not None:
                on_step(step)
            if scheduler is not None and scheduler_per_batch:
                scheduler.step()
            loss_sum += loss.item() * len(x)
            c = _accuracy_count(out.detach(), y)
            correct = None if c is None or correct is None else correct + c
            total += len(x)
            bar.set_postfix(loss=f"{loss_sum / total:.4f}")
        if total == 0:
            raise ValueError("fit() got no training batches: the data is empty.")
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": loss_sum / total,
               "train_acc": None if correct is None else correct / total,
               "val_loss": None, "val_acc": None}
        if val_data is not None:
            metrics = evaluate(model, val_data, loss_fn)
            row["val_loss"], row["val_acc"] = metrics["loss"], metrics["acc"]
        for k, v in row.items():
            history[k].append(v)
        if scheduler is not None and not scheduler_per_batch:
            scheduler.step(row["val_loss"]) if plateau else scheduler.step()
        if plot is not None:
            plot.update({k: v for k, v in [("loss", row["train_loss"]), ("val_loss", row["val_loss"]),
                                          ("acc", row["train_acc"]), ("val_acc", row["val_acc"])]
                         if v is not None})
            plot.send()
        if val_data is not None and row["val_loss"] < best:
            best, since_best = row["val_loss"], 0
            history["best_epoch"] = epoch
            if checkpoint:
                save_checkpoint(checkpoint, model, optimizer, epoch=epoch)
        else:
            since_best += 1
        if patience is not None and since_best >= patience:
            break
    if checkpoint and "best_epoch" in history:
        load_checkpoint(checkpoint, model, optimizer)
    return history


def _live_plot():
    """livelossplot's live curves, drawn inline (matplotlib), no TensorBoard."""
    from livelossplot import PlotLosses
    from livelossplot.outputs import MatplotlibPlot

    return PlotLosses(outputs=[MatplotlibPlot()], groups={"loss": ["loss", "val_loss"],
                                                          "accuracy": ["acc", "val_acc"]})
