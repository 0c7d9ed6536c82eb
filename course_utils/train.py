"""A small, readable training loop: ``fit`` = ``train_epoch`` + ``evaluate``, and checkpoints.

Lesson 02 writes the loop by hand first; later lessons call ``fit`` so that
each notebook can focus on its own topic. ``data`` may be anything that yields
``(inputs, targets)`` batches: ``course_utils.data.Batches`` or a ``DataLoader``.
"""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from course_utils.runtime import atomic_write, model_device


def _check_types(x, y) -> None:
    if not torch.is_tensor(x) or not torch.is_tensor(y):
        raise TypeError(f"Each batch must be a pair of tensors (inputs, targets); got "
                        f"({type(x).__name__}, {type(y).__name__}).")


def _check_batch(model: nn.Module, x, y, out) -> None:
    """Clear errors for the mistakes a first batch reveals."""
    if out.shape[0] != x.shape[0]:
        raise ValueError(f"The model returned {out.shape[0]} rows for a batch of {x.shape[0]}: "
                         "check a reshape/view in forward() (use x.flatten(1), not x.view(-1)).")
    if out.ndim == 2 and y.ndim == 1 and y.dtype != torch.long:
        raise TypeError(f"The targets are {y.dtype} but a [N, {out.shape[1]}] output needs class "
                        "indices as int64 (torch.long): convert the labels once with y.long().")
    if out.ndim == 2 and y.ndim == 1 and y.numel():
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


class _Totals:
    """Running sums over the batches of one pass: what ``evaluate`` and ``train_epoch`` report.

    The accuracy is defined for class-index targets only (``None`` otherwise,
    e.g. for mixup's soft targets).
    """

    def __init__(self):
        self.count, self.loss_sum, self.correct = 0, 0.0, 0

    def add(self, loss: float, out: torch.Tensor, y: torch.Tensor) -> None:
        """Add one batch: its mean ``loss`` and its outputs ``out`` against targets ``y``."""
        n = out.shape[0]
        self.loss_sum += loss * n
        hits = int((out.argmax(1) == y).sum()) if out.ndim == 2 and y.ndim == 1 else None
        self.correct = None if hits is None or self.correct is None else self.correct + hits
        self.count += n

    def means(self, caller: str) -> dict:
        """``{"loss": mean loss, "acc": accuracy or None}`` over every example added."""
        if self.count == 0:
            raise ValueError(f"{caller} got no batches: the data is empty.")
        acc = None if self.correct is None else self.correct / self.count
        return {"loss": self.loss_sum / self.count, "acc": acc}


@torch.no_grad()
def evaluate(model: nn.Module, data, loss_fn=None) -> dict:
    """Mean loss and accuracy of ``model`` over ``data``, in eval mode, without gradients."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    device, was_training = model_device(model), model.training
    model.eval()
    totals = _Totals()
    try:
        for x, y in data:
            _check_types(x, y)
            out = _forward(model, x, device)
            y = y.to(device)
            _check_batch(model, x, y, out)
            totals.add(float(loss_fn(out, y)), out, y)
    finally:
        model.train(was_training)
    return totals.means("evaluate()")


def train_epoch(model: nn.Module, data, optimizer: torch.optim.Optimizer, loss_fn=None, *,
                scheduler=None, on_step=None, step: int = 0, desc: str = "train",
                progress: bool = True) -> dict:
    """One pass over ``data`` in train mode, one optimizer step per batch; ``evaluate``'s twin.

    Each step is lesson 02's loop: forward, loss, ``zero_grad``, ``backward``,
    ``step``. ``scheduler`` (if given) steps after every batch, ``on_step(step)``
    is called after every optimizer step, counting on from ``step``. Returns the
    mean training loss and accuracy (measured while the weights moved) and the
    step count reached: ``{"loss", "acc", "step"}``.
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    device, totals = model_device(model), _Totals()
    model.train()
    bar = tqdm(data, desc=desc, leave=False, disable=not progress)
    for x, y in bar:
        _check_types(x, y)
        out = _forward(model, x, device)
        y = y.to(device, non_blocking=True)
        if totals.count == 0:
            _check_batch(model, x, y, out)
        loss = loss_fn(out, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"The loss became {loss.item()} at step {step} ({desc}): "
                                     "lower the learning rate or check the inputs.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if on_step is not None:
            on_step(step)
        if scheduler is not None:
            scheduler.step()
        totals.add(loss.item(), out.detach(), y)
        bar.set_postfix(loss=f"{totals.loss_sum / totals.count:.4f}")
    return {**totals.means("train_epoch()"), "step": step}


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
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write(path, buf.getvalue())


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


HISTORY_KEYS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc")


def fit(model: nn.Module, train_data, optimizer: torch.optim.Optimizer, epochs: int = 1,
        loss_fn=None, val_data=None, scheduler=None, scheduler_per_batch: bool = False,
        checkpoint: str | Path | None = None, patience: int | None = None,
        live_plot: bool = False, progress: bool = True, on_step=None) -> dict[str, list]:
    """Train ``model`` and return its history: a dict of per-epoch lists (``HISTORY_KEYS``).

    Each epoch is ``train_epoch``, then ``evaluate`` on ``val_data`` (if given).

    - ``loss_fn`` defaults to cross-entropy on logits.
    - ``scheduler`` steps once per epoch (``ReduceLROnPlateau`` gets the
      validation loss), or once per batch with ``scheduler_per_batch=True``
      (``OneCycleLR``, ``CyclicLR``, warm-up).
    - ``checkpoint``: keep the best epoch (lowest validation loss) in this file
      and load it back at the end; ``history["best_epoch"]`` says which. ``patience``:
      stop after that many epochs without improvement (early stopping; needs ``val_data``).
    - ``on_step(step)`` is called after every optimizer step (for diagnostics).
    """
    _check_fit_args(epochs, val_data, scheduler, checkpoint, patience)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    history: dict[str, list] = {key: [] for key in HISTORY_KEYS}
    plot = _live_plot() if live_plot else None
    best, step = _BestEpoch(checkpoint, patience), 0
    for epoch in range(1, epochs + 1):
        train = train_epoch(model, train_data, optimizer, loss_fn, on_step=on_step, step=step,
                            scheduler=scheduler if scheduler_per_batch else None,
                            desc=f"epoch {epoch}/{epochs}", progress=progress)
        step = train["step"]
        val = evaluate(model, val_data, loss_fn) if val_data is not None else {"loss": None, "acc": None}
        row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": train["loss"],
               "train_acc": train["acc"], "val_loss": val["loss"], "val_acc": val["acc"]}
        for key, value in row.items():
            history[key].append(value)
        if scheduler is not None and not scheduler_per_batch:
            _scheduler_epoch_step(scheduler, row["val_loss"])
        if plot is not None:
            _plot_row(plot, row)
        if val_data is not None and best.update(epoch, row["val_loss"], model, optimizer):
            history["best_epoch"] = epoch
        if best.should_stop():
            break
    best.restore(model, optimizer)
    return history


def _check_fit_args(epochs: int, val_data, scheduler, checkpoint, patience) -> None:
    """``fit``'s argument errors, raised before any training is done."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}.")
    if (checkpoint or patience) and val_data is None:
        raise ValueError("checkpoint= and patience= choose the best epoch on val_data; pass val_data.")
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and val_data is None:
        raise ValueError("ReduceLROnPlateau steps on the validation loss; pass val_data.")
    if checkpoint:
        _check_writable(Path(checkpoint))


def _check_writable(path: Path) -> None:
    """Fail now, naming the user's path, if a checkpoint could not be written there later."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"):
            pass
    except OSError as e:
        raise ValueError(f"checkpoint={str(path)!r} cannot be written ({e.strerror or e}): "
                         "pass a path in a folder you can write to, e.g. checkpoint='best.pt'.") from None


def _scheduler_epoch_step(scheduler, val_loss: float | None) -> None:
    """Step a per-epoch scheduler; ``ReduceLROnPlateau`` needs the validation loss."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    else:
        scheduler.step()


class _BestEpoch:
    """The epoch with the lowest validation loss so far: saved to ``checkpoint`` (if any),
    loaded back by ``restore``; ``should_stop`` after ``patience`` epochs without a new best."""

    def __init__(self, checkpoint: str | Path | None, patience: int | None):
        self.checkpoint, self.patience = checkpoint, patience
        self.loss, self.epoch, self.since = math.inf, None, 0

    def update(self, epoch: int, val_loss: float, model: nn.Module, optimizer) -> bool:
        """Record this epoch's validation loss; True (and a checkpoint saved) if it is a new best."""
        if not val_loss < self.loss:  # NaN is never a new best
            self.since += 1
            return False
        self.loss, self.epoch, self.since = val_loss, epoch, 0
        if self.checkpoint:
            save_checkpoint(self.checkpoint, model, optimizer, epoch=epoch)
        return True

    def should_stop(self) -> bool:
        return self.patience is not None and self.since >= self.patience

    def restore(self, model: nn.Module, optimizer) -> None:
        """Load the best epoch's checkpoint back into ``model`` and ``optimizer``."""
        if self.checkpoint and self.epoch is not None:
            load_checkpoint(self.checkpoint, model, optimizer)


def _plot_row(plot, row: dict) -> None:
    """Send one epoch's numbers to the live plot (curves that exist only)."""
    names = {"loss": "train_loss", "val_loss": "val_loss", "acc": "train_acc", "val_acc": "val_acc"}
    logs = {name: row[key] for name, key in names.items() if row[key] is not None}
    plot.update(logs, current_step=row["epoch"])  # epochs count from 1, as in fit's history
    plot.send()


def _live_plot():
    """livelossplot's live curves, drawn inline (matplotlib), no TensorBoard."""
    from livelossplot import PlotLosses
    from livelossplot.outputs import MatplotlibPlot

    return PlotLosses(outputs=[MatplotlibPlot()], groups={"loss": ["loss", "val_loss"],
                                                          "accuracy": ["acc", "val_acc"]})
