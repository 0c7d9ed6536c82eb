"""Consistency-based pseudo-labeling (FixMatch) for the homework's 100 labels.

Taught in: 06, "Going further" (the instructors' copy; not graded). Measured by
``bench/homework.py --stages fixmatch``.

FixMatch (Sohn et al., 2020) in one step: the model labels a **weakly** augmented view of each
unlabeled image (a small shift); where it is confident (largest probability ``>= threshold``) that
hard label becomes the target of a **strongly** augmented view of the same image (rotation, shear,
scaling, a larger shift, a contrast change and a cut-out square). The labeled images add the usual
cross-entropy on their weak views. Unlike task 2's rounds, the pseudo-labels are refreshed at every
step, and the loss asks for the same answer on two very different views of an image: a consistency
objective with a confidence filter instead of a curriculum.

One change from the paper, FlexMatch's (Zhang et al., 2021): the confidence bar is set per class,
lower for a class whose images the model is slow to be sure of (``class_thresholds``), so a class
that the few labels show poorly is not left behind while the others claim its images.

The augmentations act on whole batches of standardized images ``[N, 1, H, W]`` (one affine grid per
image, no per-image Python loop). What they uncover or cut out is filled with each image's own
minimum, the background of a digit whatever the standardization.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from course_utils.augment import shift_crop
from course_utils.runtime import model_device


def _check_images(x: torch.Tensor) -> None:
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"expected float images [N, C, H, W], got {x.dtype} {tuple(x.shape)}.")


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def affine_warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp each image by its own ``2 x 3`` affine matrix (``affine_grid`` coordinates, [-1, 1]);
    pixels from outside the image take the image's minimum (its background)."""
    _check_images(x)
    fill = x.amin(dim=(1, 2, 3), keepdim=True)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x - fill, grid, padding_mode="zeros", align_corners=False) + fill


def weak_augment(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """The weak view: each image shifted by a whole number of pixels in ``[-max_shift, max_shift]``
    along each axis, an exact copy of its pixels (``augment.shift_crop``, which repeats the edge
    pixels: background on MNIST)."""
    _check_images(x)
    if max_shift == 0:
        return x.clone()
    top, left = torch.randint(0, 2 * max_shift + 1, (2, len(x)), generator=generator).to(x.device)
    return shift_crop(x, max_shift, top, left)


def strong_affine(n: int, generator: torch.Generator, size: int = 28, p: float = 0.5) -> torch.Tensor:
    """``n`` random affine matrices: each of rotation (±30°), shear (±0.3), scaling (0.75-1.25) and
    shift (±4 px per axis) is switched on with probability ``p``, with a uniform magnitude."""
    on = (torch.rand(n, 4, generator=generator) < p).float()
    angle = on[:, 0] * math.radians(30) * _uniform(n, -1, 1, generator)
    shear = on[:, 1] * 0.3 * _uniform(n, -1, 1, generator)
    scale = torch.exp(on[:, 2] * _uniform(n, math.log(0.75), math.log(1.25), generator))
    shift = on[:, 3:4] * _uniform(2 * n, -4, 4, generator).view(n, 2) * (2 / size)
    cos, sin, zero, one = torch.cos(angle), torch.sin(angle), torch.zeros(n), torch.ones(n)
    rotation = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    shearing = torch.stack([torch.stack([one, shear], 1), torch.stack([zero, one], 1)], 1)
    linear = rotation @ shearing / scale.view(n, 1, 1)
    return torch.cat([linear, shift.unsqueeze(2)], 2)


def cutout(x: torch.Tensor, generator: torch.Generator, size: int = 10) -> torch.Tensor:
    """Fill one ``size x size`` square per image, centred at a random pixel (clipped at the borders),
    with the image's minimum."""
    _check_images(x)
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1), generator=generator)
    cx = torch.randint(0, w, (n, 1, 1), generator=generator)
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    square = ((rows - cy).abs() * 2 < size) & ((cols - cx).abs() * 2 < size)
    fill = x.amin(dim=(1, 2, 3), keepdim=True)
    return torch.where(square.unsqueeze(1).to(x.device), fill, x)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each image's deviation from its background (its minimum) by its own ``factor``."""
    _check_images(x)
    fill = x.amin(dim=(1, 2, 3), keepdim=True)
    return fill + factor.view(-1, 1, 1, 1).to(x) * (x - fill)


def strong_augment(x: torch.Tensor, generator: torch.Generator, p: float = 0.5,
                   cutout_size: int = 10) -> torch.Tensor:
    """The strong view, RandAugment-like for digits: a random affine warp (``strong_affine``), a
    contrast factor in [0.5, 1.5] with probability ``p``, then always one cut-out square."""
    _check_images(x)
    n = len(x)
    x = affine_warp(x, strong_affine(n, generator, size=x.shape[-1], p=p))
    on = torch.rand(n, generator=generator) < p
    x = contrast(x, torch.where(on, _uniform(n, 0.5, 1.5, generator), torch.ones(n)))
    return cutout(x, generator, cutout_size)


def confident_pseudo_labels(probs: torch.Tensor,
                            threshold: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels, mask)``: the argmax of each row, and whether its probability is ``>= threshold``
    (one number, or one per class: a row then needs the threshold of its own argmax)."""
    if probs.ndim != 2:
        raise ValueError(f"probs must be [N, classes], got shape {tuple(probs.shape)}.")
    bar = torch.as_tensor(threshold, dtype=probs.dtype, device=probs.device)
    if bar.ndim > 1 or (bar.ndim == 1 and len(bar) != probs.shape[1]) or not ((0 <= bar) & (bar <= 1)).all():
        raise ValueError(f"threshold must be one number in [0, 1] or one per class ({probs.shape[1]}), "
                         f"got {threshold}.")
    confidence, labels = probs.max(dim=1)
    return labels, confidence >= (bar[labels] if bar.ndim else bar)


def class_thresholds(learned: torch.Tensor, num_classes: int, threshold: float) -> torch.Tensor:
    """FlexMatch's threshold for each class (Zhang et al., 2021, with its warm-up).

    ``learned[i]`` is the class that unlabeled image ``i`` was last predicted with confidence
    ``>= threshold`` (-1: never yet). A class's learning effect is the number of images it holds,
    relative to the best-learned class, or to the images not learned yet while they are more (the
    warm-up); its threshold is ``threshold * M(effect)`` with the convex ``M(x) = x / (2 - x)``.
    A class the model is slow to be sure of (7 on the MNIST subset, whose labeled images miss the
    crossbar style) gets a lower bar, so its images train the model before other classes claim them.
    """
    counts = torch.bincount(learned[learned >= 0], minlength=num_classes).float()
    effect = counts / max(counts.max().item(), int((learned < 0).sum()), 1)
    return threshold * effect / (2 - effect)


def fixmatch_loss(logits_weak: torch.Tensor, logits_strong: torch.Tensor,
                  threshold: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FixMatch's unlabeled loss and its mask.

    ``mean_i mask_i * CE(logits_strong_i, argmax softmax(logits_weak_i))`` over **all** N images
    (as in the paper: unconfident images count as zeros, so the loss grows with the share the model
    is sure about); no gradient flows through the weak view. ``threshold``: one number, or one per
    class (``class_thresholds``).
    """
    if logits_weak.shape != logits_strong.shape:
        raise ValueError(f"weak {tuple(logits_weak.shape)} and strong {tuple(logits_strong.shape)} "
                         f"logits must have the same shape.")
    labels, mask = confident_pseudo_labels(F.softmax(logits_weak.detach(), dim=1), threshold)
    per_image = F.cross_entropy(logits_strong, labels, reduction="none")
    return (per_image * mask).mean(), mask


OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class FixMatchConfig:
    """The settings of ``train_fixmatch`` (``bench/homework.py --set fixmatch.NAME=VALUE`` changes one)."""

    steps: int = 2000
    labeled_batch: int = 32  # labeled images per step (drawn with replacement from the 100)
    mu: int = 3  # unlabeled images per step = mu * labeled_batch, each seen weak and strong
    threshold: float = 0.95  # tau: the confidence a pseudo-label needs
    flexible: bool = True  # FlexMatch: per-class thresholds below tau for classes learned slowly
    unlabeled_weight: float = 1.0  # lambda_u
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum 0.9, as in the paper) or "adam"
    lr: float = 0.03  # cosine-decayed to 0 over the steps
    weight_decay: float = 5e-4
    max_shift: int = 2  # the weak view's shift, in pixels
    strong_p: float = 0.5  # probability of each strong operation
    cutout: int = 10  # side of the cut-out square, in pixels
    strong_labeled: bool = False  # True: the labeled images get the strong view instead of the weak one
    ema: float = 0.999  # return the moving average of the weights (decay per step; 0: the last weights)

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}.")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema is a decay per step in [0, 1) (0: off), got {self.ema}.")

    @classmethod
    def with_settings(cls, **changes) -> FixMatchConfig:
        """The defaults with ``changes``; an unknown name is an error (no silent default)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"FixMatchConfig has no setting {', '.join(unknown)}; "
                             f"it has {', '.join(sorted(names))}.")
        return replace(cls(), **changes)


def fixmatch_step(model: nn.Module, optimizer: torch.optim.Optimizer, x_lab: torch.Tensor,
                  y_lab: torch.Tensor, x_unlab: torch.Tensor, generator: torch.Generator,
                  config: FixMatchConfig, learned: torch.Tensor | None = None,
                  index: torch.Tensor | None = None) -> dict:
    """One FixMatch step on a labeled and an unlabeled batch; returns the losses and the mask rate.

    The pseudo-labels come from the weak views in eval mode (dropout off) without gradients; the
    labeled images (weak views, or strong ones with ``config.strong_labeled``) and the unlabeled
    strong views then go through the model in one batch. With ``learned`` (FlexMatch's record of
    the whole unlabeled set, see ``class_thresholds``) the thresholds are per class, and the record
    of the batch's images (their positions ``index`` in that set) is updated in place; the
    returned row then holds the thresholds used too.
    """
    if learned is not None and (index is None or len(index) != len(x_unlab)):
        raise ValueError("learned needs index: each unlabeled image's position in the unlabeled set.")
    device = model_device(model)
    if config.strong_labeled:
        view_lab = strong_augment(x_lab, generator, config.strong_p, config.cutout).to(device)
    else:
        view_lab = weak_augment(x_lab, generator, config.max_shift).to(device)
    weak = weak_augment(x_unlab, generator, config.max_shift).to(device)
    strong = strong_augment(x_unlab, generator, config.strong_p, config.cutout).to(device)
    model.eval()
    with torch.no_grad():
        logits_weak = model(weak)
    model.train()
    out = model(torch.cat([view_lab, strong]))
    threshold = config.threshold
    if learned is not None:
        threshold = class_thresholds(learned, out.shape[1], config.threshold).to(device)
    supervised = F.cross_entropy(out[:len(x_lab)], y_lab.to(device))
    unlabeled, mask = fixmatch_loss(logits_weak, out[len(x_lab):], threshold)
    loss = supervised + config.unlabeled_weight * unlabeled
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if learned is not None:
        labels, sure = confident_pseudo_labels(F.softmax(logits_weak, dim=1), config.threshold)
        learned[index[sure.cpu()]] = labels[sure].cpu()
    row = {"supervised": supervised.item(), "unlabeled": unlabeled.item(),
           "mask_rate": mask.float().mean().item()}
    if learned is not None:
        row["thresholds"] = threshold.tolist()
    return row


def make_optimizer(model: nn.Module, config: FixMatchConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum 0.9 (the paper's) or Adam, at ``config.lr`` and ``config.weight_decay``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def train_fixmatch(model: nn.Module, x_labeled: torch.Tensor, y_labeled: torch.Tensor,
                   x_unlabeled: torch.Tensor, seed: int = 0, config: FixMatchConfig | None = None,
                   log_every: int = 0) -> nn.Module:
    """Train ``model`` in place with FixMatch for ``config.steps`` steps; return it in eval mode.

    With ``config.flexible`` the thresholds are FlexMatch's, one per class (``class_thresholds``).
    With ``config.ema > 0`` the returned weights are the exponential moving average of the weights
    after each step (as the paper evaluates): the last weights of a run jump with every noisy
    batch of pseudo-labels, their average does not. Batches are drawn with a generator seeded by
    ``seed`` (the model's initial weights are the caller's). ``model.history`` holds, every
    ``log_every`` steps (0: never), the step, the losses and the share of unlabeled images that
    passed their threshold.
    """
    config = config or FixMatchConfig()
    if len(x_labeled) != len(y_labeled) or not len(x_labeled) or not len(x_unlabeled):
        raise ValueError(f"need as many labels as labeled images and some unlabeled images, got "
                         f"{len(x_labeled)} images, {len(y_labeled)} labels, {len(x_unlabeled)} unlabeled.")
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(model, config)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    average = None
    if config.ema:  # use_buffers: batch norm running statistics are averaged along with the weights
        average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
    learned = torch.full((len(x_unlabeled),), -1) if config.flexible else None  # no class yet
    history = []
    for step in range(1, config.steps + 1):
        i = torch.randint(len(x_labeled), (config.labeled_batch,), generator=generator)
        j = torch.randint(len(x_unlabeled), (config.mu * config.labeled_batch,), generator=generator)
        row = fixmatch_step(model, optimizer, x_labeled[i], y_labeled[i], x_unlabeled[j], generator,
                            config, learned, j)
        schedule.step()
        if average is not None:
            average.update_parameters(model)
        if log_every and step % log_every == 0:
            history.append({"step": step, **row})
    if average is not None:
        model.load_state_dict(average.module.state_dict())
    model.history = history
    return model.eval()
