"""Optimizers written from scratch with the ``torch.optim.Optimizer`` interface (lesson 05).

Each class is a short copy of one update rule of ``torch.optim``, with the same
hyperparameter names, defaults and state names, so it drops into ``fit()`` and
works with every ``torch.optim.lr_scheduler`` (schedulers only rewrite
``param_groups[i]["lr"]``, and ``step`` reads it afresh every time).
``tests/test_optim.py`` checks each one against ``torch.optim``, step for step.

The pattern is the same in every class: ``__init__`` checks the hyperparameters
and hands them to ``Optimizer`` as defaults (which builds ``param_groups``);
``step`` walks the groups and the parameters that have a gradient, keeps
per-parameter buffers in ``self.state[p]`` and updates ``p`` in place, under
``torch.no_grad()`` so the update itself is not recorded by autograd.

Weight decay: SGD, Adagrad, RMSprop and Adam add it to the gradient as an L2
penalty (``g + wd * p``); AdamW shrinks the weights directly
(``p *= 1 - lr * wd``), decoupled from the adaptive scaling.

Also here: ``ema``, the exponential moving average that momentum and Adam keep (lesson 05,
momentum as a moving average); ``adam_step`` (one Adam step as a pure function), the mistakes
students (and published notes) make in it, and ``check_adam_step``, which names
the mistake it finds; and ``train_side_by_side``, which trains two copies of a
model with two optimizers to compare them.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Callable

import torch
from torch import nn
from torch.optim import Optimizer

from course_utils.runtime import model_device


def _check(lr: float, **others: float) -> None:
    """Clear errors for negative hyperparameters, the mistake a typo makes."""
    for name, value in {"lr": lr, **others}.items():
        if not (isinstance(value, (int, float)) and value >= 0):
            raise ValueError(f"{name} must be a number >= 0, got {value!r}.")


def _check_betas(betas: tuple[float, float]) -> None:
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), e.g. (0.9, 0.999); got {betas!r}.")


def _loss_of(closure: Callable[[], torch.Tensor] | None):
    """Re-evaluate the model when a closure is given (as ``torch.optim`` does)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum or Nesterov momentum.

    Same as ``torch.optim.SGD`` with ``dampening=0``: the momentum buffer starts
    as the first gradient, then ``buf = momentum * buf + g``.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        _check(lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0 (e.g. momentum=0.9).")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _loss_of(closure)
        for group in self.param_groups:
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in (p for p in group["params"] if p.grad is not None):
                g = p.grad.add(p, alpha=wd) if wd else p.grad        # L2 penalty in the gradient
                if mu:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = g.clone()          # first step: buf = g
                    else:
                        state["momentum_buffer"].mul_(mu).add_(g)     # buf = mu * buf + g
                    buf = state["momentum_buffer"]
                    g = g.add(buf, alpha=mu) if group["nesterov"] else buf
                p.add_(g, alpha=-lr)
        return loss


class Adagrad(Optimizer):
    """Adagrad: divide by the root of the *sum* of all squared gradients so far.

    Same as ``torch.optim.Adagrad`` with ``lr_decay=0`` and
    ``initial_accumulator_value=0``.
    """

    def __init__(self, params, lr: float = 1e-2, eps: float = 1e-10, weight_decay: float = 0.0):
        _check(lr, eps=eps, weight_decay=weight_decay)
        super().__init__(params, dict(lr=lr, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _loss_of(closure)
        for group in self.param_groups:
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in (p for p in group["params"] if p.grad is not None):
                g = p.grad.add(p, alpha=wd) if wd else p.grad
                state = self.state[p]
                if not state:
                    state["step"], state["sum"] = 0, torch.zeros_like(p)
                state["step"] += 1
                state["sum"].addcmul_(g, g)                           # G += g^2
                p.addcdiv_(g, state["sum"].sqrt().add_(eps), value=-lr)
        return loss


class RMSprop(Optimizer):
    """RMSprop: divide by the root of a *moving average* of squared gradients.

    Same as ``torch.optim.RMSprop`` without ``centered`` or ``momentum``; eps is
    added after the square root.
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        _check(lr, alpha=alpha, eps=eps, weight_decay=weight_decay)
        if alpha >= 1:
            raise ValueError(f"alpha must be in [0, 1), e.g. 0.99; got {alpha}.")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _loss_of(closure)
        for group in self.param_groups:
            lr, a, eps, wd = group["lr"], group["alpha"], group["eps"], group["weight_decay"]
            for p in (p for p in group["params"] if p.grad is not None):
                g = p.grad.add(p, alpha=wd) if wd else p.grad
                state = self.state[p]
                if not state:
                    state["step"], state["square_avg"] = 0, torch.zeros_like(p)
                state["step"] += 1
                v = state["square_avg"].mul_(a).addcmul_(g, g, value=1 - a)  # v = a v + (1-a) g^2
                p.addcdiv_(g, v.sqrt().add_(eps), value=-lr)
        return loss


class Adam(Optimizer):
    """Adam: momentum (first moment) divided by the root of the second moment,
    both bias-corrected; eps is added after the square root.

    Same as ``torch.optim.Adam`` (``amsgrad=False``). Weight decay is an L2
    penalty added to the gradient; ``AdamW`` below decouples it.
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        _check(lr, eps=eps, weight_decay=weight_decay)
        _check_betas(betas)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _loss_of(closure)
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in (p for p in group["params"] if p.grad is not None):
                g = p.grad
                if wd and self.decoupled_weight_decay:
                    p.mul_(1 - lr * wd)                               # AdamW: shrink the weights
                elif wd:
                    g = g.add(p, alpha=wd)                            # Adam: L2 in the gradient
                state = self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(g, alpha=1 - b1)                      # raw moments are stored...
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)       # ...corrected ones only used
                p.addcdiv_(m_hat, v_hat.sqrt().add_(eps), value=-lr)
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``: before the Adam
    update, ``p *= 1 - lr * weight_decay`` (default 1e-2), untouched by the
    per-parameter scaling that weakens an L2 penalty inside Adam."""

    decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


# --- The moving average inside momentum and Adam -------------------------------------

def ema(values: torch.Tensor, beta: float, bias_correction: bool = False) -> torch.Tensor:
    """Exponential moving average of ``values`` along dim 0, started at 0.

    ``e_t = beta * e_{t-1} + (1 - beta) * values[t-1]`` for ``t = 1..n``, with ``e_0 = 0``;
    returns ``[e_1, ..., e_n]`` (same shape as ``values``). With ``bias_correction`` each
    ``e_t`` is divided by ``1 - beta**t``, the total weight it has had so far (Adam's ``m_hat``).
    Adam's ``exp_avg`` is ``e_t``; SGD's momentum buffer (``dampening=0``) is ``e_t / (1 - beta)``.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), e.g. 0.9; got {beta!r}.")
    values = torch.as_tensor(values)
    if values.ndim == 0 or len(values) == 0:
        raise ValueError("ema needs a sequence of at least one value (a tensor of shape [n, ...]).")
    values = values if values.is_floating_point() else values.double()
    out, avg = torch.empty_like(values), torch.zeros_like(values[0])
    for t in range(len(values)):
        avg = beta * avg + (1 - beta) * values[t]
        out[t] = avg / (1 - beta ** (t + 1)) if bias_correction else avg
    return out


# --- Adam as a pure function, and the mistakes people make in it ----------------------

def adam_step(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: int,
              lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
    """One Adam step; ``t`` is the step number starting at 1. Returns new ``(param, m, v)``."""
    b1, b2 = betas
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    return param - lr * m_hat / (v_hat.sqrt() + eps), m, v


ADAM_MISTAKES = {
    "no bias correction": "divide m by (1 - beta1**t) and v by (1 - beta2**t) before the update.",
    "eps inside the square root": "use sqrt(v_hat) + eps, not sqrt(v_hat + eps).",
    "bias-corrected m with the raw v": "correct both moments: v_hat = v / (1 - beta2**t).",
    "raw m with the bias-corrected v": "correct both moments: m_hat = m / (1 - beta1**t).",
    "corrected moments stored back": "return the RAW running averages m and v; the corrected "
                                     "m_hat and v_hat are used only in this step's update.",
}


def _wrong_adam(*mistakes: str):
    """An ``adam_step`` that makes the named mistakes (keys of ``ADAM_MISTAKES``)."""
    unknown = set(mistakes) - set(ADAM_MISTAKES)
    if unknown:
        raise ValueError(f"unknown mistakes {sorted(unknown)}; choose from {list(ADAM_MISTAKES)}.")

    def step(param, grad, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        b1, b2 = betas
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad**2
        raw_m = {"no bias correction", "raw m with the bias-corrected v"} & set(mistakes)
        raw_v = {"no bias correction", "bias-corrected m with the raw v"} & set(mistakes)
        m_hat = m if raw_m else m / (1 - b1**t)
        v_hat = v if raw_v else v / (1 - b2**t)
        inside = "eps inside the square root" in mistakes
        new_param = param - lr * m_hat / ((v_hat + eps).sqrt() if inside else v_hat.sqrt() + eps)
        if "corrected moments stored back" in mistakes:
            m, v = m_hat, v_hat  # the next step then averages already-corrected moments
        return new_param, m, v
    return step


def _candidate_mistakes() -> list[tuple[str, ...]]:
    """Each mistake alone, then 'eps inside the square root' together with each other one."""
    eps = "eps inside the square root"
    return [(k,) for k in ADAM_MISTAKES] + [(eps, k) for k in ADAM_MISTAKES if k != eps]


def _run_adam(fn, steps: int = 6, seed: int = 0, **hp):
    """Run ``fn`` for a few steps on fixed gradients; return the stacked (param, m, v) per step."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.randn(8, generator=gen, dtype=torch.float64)
    grads = 0.01 * torch.randn(steps, 8, generator=gen, dtype=torch.float64)
    m, v, out = torch.zeros_like(p), torch.zeros_like(p), []
    for t in range(1, steps + 1):
        p, m, v = fn(p.clone(), grads[t - 1].clone(), m.clone(), v.clone(), t, **hp)
        p, m, v = (torch.as_tensor(a, dtype=torch.float64) for a in (p, m, v))
        out.append(torch.stack([p, m, v]))
    return torch.stack(out)


CHECK_HP = dict(lr=0.1, betas=(0.9, 0.999), eps=1e-3)  # eps large enough that its place shows


def check_adam_step(fn) -> None:
    """Check a student's ``adam_step(param, grad, m, v, t, lr, betas, eps) -> (param, m, v)``.

    Runs it for six steps next to the reference; when it differs, compares it
    with the known mistakes in ``ADAM_MISTAKES`` (alone, and each together with
    eps inside the square root) and names the ones it makes.
    """
    expected = _run_adam(adam_step, **CHECK_HP)
    try:
        actual = _run_adam(fn, **CHECK_HP)
    except (TypeError, ValueError, RuntimeError) as e:
        raise AssertionError(f"Not yet: adam_step must return three tensors (param, m, v), each "
                             f"shaped like param; calling yours failed with: {e}") from None
    if actual.shape != expected.shape:
        raise AssertionError(f"Not yet: adam_step must return (param, m, v), each shaped like param; "
                             f"got stacked shape {tuple(actual.shape[1:])}.")
    if torch.allclose(actual, expected, rtol=1e-9, atol=1e-12):
        print("✓ your adam_step matches Adam over six steps (parameters and both moments).")
        return
    for mistakes in _candidate_mistakes():
        if torch.allclose(actual, _run_adam(_wrong_adam(*mistakes), **CHECK_HP), rtol=1e-9, atol=1e-12):
            named = " and ".join(f"'{k}'" for k in mistakes)
            fixes = " ".join(ADAM_MISTAKES[k] for k in mistakes)
            raise AssertionError(f"Not yet: your adam_step makes the mistake{'s' * (len(mistakes) > 1)} "
                                 f"{named}. Fix: {fixes}")
    bad = (actual - expected).abs().amax(dim=(1, 2)).gt(1e-9).nonzero()[0, 0].item()
    part = ["param", "m", "v"][(actual[bad] - expected[bad]).abs().amax(dim=1).argmax().item()]
    raise AssertionError(f"Not yet: your adam_step first differs at step t={bad + 1}, in the returned "
                         f"{part}. Check m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g**2, the bias "
                         "corrections and param - lr * m_hat / (sqrt(v_hat) + eps).")


# --- Comparing two optimizers on the same model and data ------------------------------

def train_side_by_side(model: nn.Module, make_ours: Callable, make_theirs: Callable, data,
                       steps: int = 100, loss_fn=None) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Train two float64 copies of ``model``, one per optimizer, on the same batches.

    ``make_ours``/``make_theirs`` take an iterable of parameters and return an
    optimizer, e.g. ``lambda ps: Adam(ps, lr=1e-3)``. ``data`` yields ``(x, y)``
    batches and is cycled until ``steps`` steps are done. Returns both copies'
    final parameters as flat vectors and the largest difference seen at any step.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    a, b = copy.deepcopy(model).double(), copy.deepcopy(model).double()
    opt_a, opt_b = make_ours(a.parameters()), make_theirs(b.parameters())
    device, worst = model_device(a), 0.0
    for x, y in itertools.islice(itertools.cycle(data), steps):
        x, y = x.to(device, torch.float64), y.to(device)
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x), y).backward()
            opt.step()
        diff = max((pa - pb).abs().max().item() for pa, pb in zip(a.parameters(), b.parameters()))
        worst = diff if math.isnan(diff) else max(worst, diff)
    flat = lambda net: torch.cat([p.detach().flatten() for p in net.parameters()])
    return flat(a), flat(b), worst
