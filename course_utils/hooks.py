"""Look inside a network while it runs: per-layer activation and gradient statistics (lesson 03).

    with record(model) as rec:              # hooks on every activation layer
        loss_fn(model(x), y).backward()
    rec.summary()                           # mean, std, saturation, gradient std per layer

``record`` puts a forward hook (sees each chosen layer's output), a full
backward hook (sees the gradient of the loss with respect to that output) and,
on every weight matrix, a tensor hook (sees its gradient). Everything is
removed when the ``with`` block ends, also when it ends with an exception.
Statistics are pooled over every batch seen inside the block: one batch can
mislead, so ``diagnose`` runs several.

``track_updates`` measures what the optimizer actually does to each weight:
log10(std(update) / std(weight)) after every step (about -3 is healthy).

``dead_units`` counts, per ReLU layer, the units that output 0 for every input seen
(a "dead" unit passes no gradient back, whatever the input).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from course_utils.runtime import model_device

ACTIVATIONS = (nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus)

# Where each activation passes (almost) no gradient back, as a test on its OUTPUT:
# - Sigmoid: outside [0.03, 0.97]; there s' = s(1 - s) < 0.03, under 12% of its maximum 1/4.
# - Tanh: |t| > 0.97; there t' = 1 - t^2 < 0.06, under 6% of its maximum 1.
# - ReLU: exactly 0; the gradient is exactly 0 (a unit that is 0 for every input is "dead").
SATURATED = {
    "Sigmoid": lambda v: (v < 0.03) | (v > 0.97),
    "Tanh": lambda v: v.abs() > 0.97,
    "ReLU": lambda v: v == 0,
}

# A full backward hook on a layer whose inputs need no gradient (e.g. the first Linear) still
# receives the gradient of its output, which is all we record; PyTorch warns about it on every
# call. Only that message is silenced, and only inside a ``record`` block.
HOOK_WARNING = "Full backward hook is firing when gradients are computed"


def saturation(values: torch.Tensor, kind: str) -> float:
    """Fraction of ``values`` (outputs of a ``kind`` layer, e.g. "Sigmoid") in its flat zone.

    See ``SATURATED`` for the definition per activation; NaN for a kind without one.
    """
    test = SATURATED.get(kind)
    if test is None or values.numel() == 0:
        return math.nan
    return float(test(values).float().mean())


def _choose_layers(model: nn.Module, layers) -> dict[str, nn.Module]:
    """``layers``: None (every activation), a module type or tuple of types, or a list of names."""
    named = {name: m for name, m in model.named_modules() if name}
    if layers is None:
        layers = ACTIVATIONS
    if isinstance(layers, type) or (isinstance(layers, tuple) and all(isinstance(t, type) for t in layers)):
        chosen = {n: m for n, m in named.items() if isinstance(m, layers)}
    else:
        if isinstance(layers, str):
            layers = [layers]
        missing = [n for n in layers if n not in named]
        if missing:
            raise ValueError(f"No layer named {missing} in the model; its layers are "
                             f"{list(named)} (see model.named_modules()).")
        chosen = {n: named[n] for n in layers}
    if not chosen:
        raise ValueError(f"record() found no layer to watch for layers={layers!r}; pass module "
                         "types (e.g. nn.Linear) or names from model.named_modules().")
    return chosen


class Recorder:
    """Samples of each chosen layer's outputs and output gradients, and of each weight's gradient.

    Made by ``record(...)``; read it after the ``with`` block:

    - ``acts[name]`` / ``grads[name]``: one 1-D CPU tensor per batch (at most ``max_values``
      values each, a seeded random sample when the layer has more);
    - ``weight_grads[name]``: the same for the gradient of each weight matrix (ndim >= 2),
      and ``grad_data[name]``: std(gradient) / std(weight) for each batch;
    - ``summary()`` and ``weight_summary()``: the statistics, pooled over all batches.

    Every forward pass inside the block is recorded, evaluation passes too; a module used
    twice in one forward pass (a shared activation) is recorded twice.
    """

    def __init__(self, model: nn.Module, layers=None, max_values: int = 20_000, seed: int = 0):
        if not isinstance(model, nn.Module):
            raise TypeError(f"record() expects an nn.Module, got {type(model).__name__}.")
        if max_values < 1:
            raise ValueError(f"max_values must be >= 1, got {max_values}.")
        self.layers = _choose_layers(model, layers)
        self.kinds = {n: type(m).__name__ for n, m in self.layers.items()}
        self.weights = {n: p for n, p in model.named_parameters() if p.ndim >= 2 and p.requires_grad}
        self.acts: dict[str, list[torch.Tensor]] = {n: [] for n in self.layers}
        self.grads: dict[str, list[torch.Tensor]] = {n: [] for n in self.layers}
        self.weight_grads: dict[str, list[torch.Tensor]] = {n: [] for n in self.weights}
        self.grad_data: dict[str, list[float]] = {n: [] for n in self.weights}
        self.max_values = max_values
        self._generator = torch.Generator().manual_seed(seed)
        self._handles: list = []

    def _sample(self, t: torch.Tensor) -> torch.Tensor:
        t = t.detach().flatten()
        if t.numel() > self.max_values:
            idx = torch.randint(t.numel(), (self.max_values,), generator=self._generator)
            t = t[idx.to(t.device)]
        return t.float().cpu()

    def __enter__(self) -> Recorder:
        self._quiet = warnings.catch_warnings()
        self._quiet.__enter__()
        warnings.filterwarnings("ignore", message=HOOK_WARNING)
        try:
            for name, module in self.layers.items():
                self._handles.append(module.register_forward_hook(self._forward_hook(name)))
                self._handles.append(module.register_full_backward_hook(self._backward_hook(name)))
            for name, p in self.weights.items():
                self._handles.append(p.register_hook(self._weight_hook(name, p)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> bool:
        self.remove()
        return False  # never swallow an exception from the block

    def remove(self) -> None:
        """Remove every hook this recorder put on the model (``__exit__`` calls it)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if getattr(self, "_quiet", None) is not None:
            self._quiet.__exit__(None, None, None)
            self._quiet = None

    def _forward_hook(self, name):
        def hook(module, inputs, output):
            self.acts[name].append(self._sample(output))
        return hook

    def _backward_hook(self, name):
        def hook(module, grad_input, grad_output):
            if grad_output[0] is not None:
                self.grads[name].append(self._sample(grad_output[0]))
        return hook

    def _weight_hook(self, name, p):
        def hook(grad):
            self.weight_grads[name].append(self._sample(grad))
            data_std = float(p.detach().std())
            self.grad_data[name].append(float(grad.std()) / data_std if data_std > 0 else math.nan)
        return hook  # returns None: the gradient itself is left unchanged

    def summary(self) -> dict[str, dict[str, float]]:
        """Per layer, pooled over every recorded batch: the outputs' mean, std and
        saturated fraction (see ``SATURATED``), and the std of their gradients."""
        out = {}
        for n in self.layers:
            a = torch.cat(self.acts[n]) if self.acts[n] else torch.empty(0)
            g = torch.cat(self.grads[n]) if self.grads[n] else torch.empty(0)
            out[n] = {"mean": a.mean().item() if a.numel() else math.nan,
                      "std": a.std().item() if a.numel() > 1 else math.nan,
                      "saturated": saturation(a, self.kinds[n]),
                      "grad_std": g.std().item() if g.numel() > 1 else math.nan}
        return out

    def weight_summary(self) -> dict[str, dict[str, float]]:
        """Per weight matrix: std of its gradient (pooled) and the grad:data ratio
        std(grad) / std(weight), averaged over the recorded batches."""
        out = {}
        for n in self.weights:
            g = torch.cat(self.weight_grads[n]) if self.weight_grads[n] else torch.empty(0)
            r = self.grad_data[n]
            out[n] = {"grad_std": g.std().item() if g.numel() > 1 else math.nan,
                      "grad_data": sum(r) / len(r) if r else math.nan}
        return out


def record(model: nn.Module, layers=None, max_values: int = 20_000, seed: int = 0) -> Recorder:
    """Watch ``layers`` of ``model`` inside a ``with`` block; see ``Recorder``.

    ``layers``: None for every activation layer (``ACTIVATIONS``), a module type or a tuple
    of types (e.g. ``nn.Linear``), or a list of names from ``model.named_modules()``.
    """
    return Recorder(model, layers, max_values, seed)


def diagnose(model: nn.Module, data, n_batches: int = 10, loss_fn=None, layers=None) -> Recorder:
    """Forward and backward ``n_batches`` batches of ``data`` under ``record`` and return it.

    No optimizer step is taken, so the weights do not change; the gradients this leaves
    in ``.grad`` are cleared (set to None) at the end. Pooling several batches keeps one
    odd batch from passing for the state of the network.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}.")
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    device = model_device(model)
    with record(model, layers) as rec:
        for i, (x, y) in enumerate(data):
            if i == n_batches:
                break
            loss_fn(model(x.to(device)), y.to(device)).backward()
    model.zero_grad(set_to_none=True)
    return rec


def dead_fraction(outputs: torch.Tensor) -> float:
    """Fraction of units that are 0 for every row of ``outputs`` ([N, *unit_shape], one row
    per input): a unit is one entry of ``outputs[i]``, e.g. one column of a [N, 128] batch."""
    if outputs.ndim < 2 or outputs.shape[0] == 0:
        raise ValueError(f"dead_fraction expects a batch [N, units...] with N >= 1, got shape "
                         f"{tuple(outputs.shape)}.")
    return 1.0 - (outputs != 0).flatten(1).any(dim=0).float().mean().item()


def dead_units(model: nn.Module, data, n_batches: int = 1, layers=nn.ReLU) -> dict[str, float]:
    """Per chosen layer (default: every ``nn.ReLU``), the fraction of its units that output
    exactly 0 for every input of the first ``n_batches`` batches of ``data``.

    Forward passes only, in eval mode and without gradients (the mode is restored after);
    every hook is removed at the end. A unit counts as dead only if it is 0 on every input
    of every batch seen, as ``dead_fraction`` would say of the concatenated outputs.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}.")
    chosen = _choose_layers(model, layers)
    alive: dict[str, torch.Tensor] = {}

    def watch(name):
        def hook(module, inputs, output):
            seen = (output.detach() != 0).flatten(1).any(dim=0)
            alive[name] = seen if name not in alive else alive[name] | seen
        return hook

    handles = [m.register_forward_hook(watch(n)) for n, m in chosen.items()]
    device, was_training = model_device(model), model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, (x, _) in enumerate(data):
                if i == n_batches:
                    break
                model(x.to(device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not alive:
        raise ValueError("dead_units() saw no batch: the data is empty, or the chosen layers "
                         "were never called.")
    return {n: 1.0 - alive[n].float().mean().item() for n in chosen if n in alive}


class UpdateTracker:
    """log10(std(update) / std(weight)) of every weight matrix after each optimizer step.

    Made by ``track_updates(...)``. The update is what the optimizer really did (weight
    after the step minus weight before), so it is right for SGD, momentum and Adam alike.
    It hooks the optimizer (``register_step_pre_hook`` / ``register_step_post_hook``), so
    ``fit`` needs no change; the hooks are removed when the ``with`` block ends.

    - ``steps``: the optimizer step numbers measured (every ``every``-th step);
    - ``ratios[name]``: the log10 ratio at those steps (NaN when the weight's std is 0 or
      the update is exactly 0).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, every: int = 1):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"track_updates() expects a torch.optim optimizer, got "
                            f"{type(optimizer).__name__}.")
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}.")
        self.weights = {n: p for n, p in model.named_parameters() if p.ndim >= 2 and p.requires_grad}
        self.optimizer, self.every = optimizer, every
        self.steps: list[int] = []
        self.ratios: dict[str, list[float]] = {n: [] for n in self.weights}
        self._count, self._before, self._handles = 0, None, []

    def __enter__(self) -> UpdateTracker:
        self._handles = [self.optimizer.register_step_pre_hook(self._pre_step),
                         self.optimizer.register_step_post_hook(self._post_step)]
        return self

    def __exit__(self, *exc) -> bool:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return False

    def _pre_step(self, optimizer, args, kwargs):
        if self._count % self.every == 0:
            self._before = {n: p.detach().clone() for n, p in self.weights.items()}

    def _post_step(self, optimizer, args, kwargs):
        self._count += 1
        if self._before is None:
            return
        for n, p in self.weights.items():
            before = self._before[n]
            ratio = float((p.detach() - before).std() / before.std())
            self.ratios[n].append(math.log10(ratio) if 0 < ratio < math.inf else math.nan)
        self.steps.append(self._count)
        self._before = None


def track_updates(model: nn.Module, optimizer: torch.optim.Optimizer, every: int = 1) -> UpdateTracker:
    """Measure the update:data ratio of each weight during training; see ``UpdateTracker``.

        with track_updates(model, optimizer) as upd:
            fit(model, train, optimizer, epochs=2)
        plot_update_ratios(upd)
    """
    return UpdateTracker(model, optimizer, every)
