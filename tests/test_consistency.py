"""course_utils.consistency: the confidence mask, FixMatch's loss by hand, the two views, one step."""

import math

import pytest
import torch
import torch.nn.functional as F

from course_utils import consistency as C
from course_utils.homework import new_model


def digits(n: int = 6, seed: int = 0) -> torch.Tensor:
    """Standardized-looking images: background -0.42, a bright random blob in the middle."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((n, 1, 28, 28), -0.42)
    x[:, :, 8:20, 10:18] = 2.8 * torch.rand(n, 1, 12, 8, generator=g)
    return x


def test_mask_keeps_exactly_the_confident_rows():
    probs = torch.tensor([[0.96, 0.04], [0.5, 0.5], [0.05, 0.95], [0.2, 0.8], [0.0, 1.0]])
    labels, mask = C.confident_pseudo_labels(probs, threshold=0.95)
    assert labels.tolist() == [0, 0, 1, 1, 1]
    assert mask.tolist() == [True, False, True, False, True]  # 0.95 itself is confident (>=)
    assert C.confident_pseudo_labels(probs, 0.0)[1].all()
    assert not C.confident_pseudo_labels(probs[:4], 0.99)[1].any()
    with pytest.raises(ValueError, match="threshold"):
        C.confident_pseudo_labels(probs, 1.5)
    with pytest.raises(ValueError, match=r"\[N, classes\]"):
        C.confident_pseudo_labels(probs[0], 0.5)


def test_a_per_class_threshold_is_that_of_the_rows_argmax():
    probs = torch.tensor([[0.6, 0.4], [0.4, 0.6], [0.95, 0.05], [0.05, 0.95]])
    labels, mask = C.confident_pseudo_labels(probs, torch.tensor([0.5, 0.9]))
    assert labels.tolist() == [0, 1, 0, 1]
    assert mask.tolist() == [True, False, True, True]  # class 0 needs 0.5, class 1 needs 0.9
    for bad in (torch.tensor([0.5, 0.9, 0.9]), torch.tensor([0.5, 1.2]), torch.ones(2, 2)):
        with pytest.raises(ValueError, match="one per class"):
            C.confident_pseudo_labels(probs, bad)


def test_class_thresholds_by_hand_with_the_warm_up():
    # 4 images learned as class 0, 2 as class 1, none as class 2, 2 not yet: effect 1, 1/2, 0
    learned = torch.tensor([0, 0, 0, 0, 1, 1, -1, -1])
    thresholds = C.class_thresholds(learned, 3, threshold=0.9)
    torch.testing.assert_close(thresholds, torch.tensor([0.9, 0.9 * 0.5 / 1.5, 0.0]))
    # warm-up: while most images are not learned yet, effects are relative to their number (3)
    warm = C.class_thresholds(torch.tensor([0, -1, -1, -1]), 3, threshold=0.9)
    torch.testing.assert_close(warm, torch.tensor([0.9 * (1 / 3) / (5 / 3), 0.0, 0.0]))
    assert C.class_thresholds(torch.full((5,), -1), 3, 0.95).tolist() == [0.0, 0.0, 0.0]


def test_fixmatch_loss_equals_a_hand_computation():
    # weak logits: rows 0 and 2 are confident (softmax max >= 0.9), row 1 is not
    logits_weak = torch.tensor([[4.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    logits_strong = torch.tensor([[1.0, 2.0, 0.0], [0.0, 3.0, 0.0], [0.5, 0.0, 1.5]], requires_grad=True)
    loss, mask = C.fixmatch_loss(logits_weak, logits_strong, threshold=0.9)
    assert mask.tolist() == [True, False, True]

    def ce(row, target):  # -log softmax(row)[target], written out
        return -(row[target] - math.log(sum(math.exp(v) for v in row)))

    expected = (ce([1.0, 2.0, 0.0], 0) + 0.0 + ce([0.5, 0.0, 1.5], 2)) / 3  # mean over all 3 rows
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert logits_strong.grad[1].abs().sum() == 0  # the unconfident row trains nothing
    weak = logits_weak.clone().requires_grad_()  # no gradient reaches the weak view
    assert not C.fixmatch_loss(weak, logits_strong.detach(), 0.9)[0].requires_grad
    with pytest.raises(ValueError, match="same shape"):
        C.fixmatch_loss(logits_weak, logits_strong[:2], 0.9)


def test_weak_view_is_a_whole_pixel_shift_of_the_same_shape_and_dtype():
    x = digits()
    weak = C.weak_augment(x, torch.Generator().manual_seed(0), max_shift=2)
    assert weak.shape == x.shape and weak.dtype == x.dtype
    assert not torch.equal(weak, x)
    for a, b in zip(x[:, 0], weak[:, 0]):  # each view equals its image rolled by (dy, dx) in [-2, 2]
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                  if torch.equal(torch.roll(a, (dy, dx), (0, 1)), b)]
        assert shifts, "a weak view is not a whole-pixel shift of its image"
    assert torch.equal(C.weak_augment(x, torch.Generator(), max_shift=0), x)


def test_strong_view_has_the_shape_dtype_and_background_and_differs_from_the_weak_one():
    x = digits(32)
    g = torch.Generator().manual_seed(0)
    weak, strong = C.weak_augment(x, g), C.strong_augment(x, g)
    assert strong.shape == x.shape and strong.dtype == torch.float32
    assert all(not torch.allclose(s, w) for s, w in zip(strong, weak))  # every image differs
    assert strong.amin().item() == pytest.approx(-0.42, abs=1e-5)  # uncovered pixels are background
    def seeded(seed):
        return C.strong_augment(x, torch.Generator().manual_seed(seed))

    assert torch.equal(seeded(1), seeded(1)) and not torch.equal(seeded(1), seeded(2))
    with pytest.raises(ValueError, match="float images"):
        C.strong_augment(x[:, 0], g)


def test_cutout_and_contrast_by_hand():
    x = digits(2)
    cut = C.cutout(x, torch.Generator().manual_seed(0), size=10)
    changed = (cut != x).flatten(1).sum(1)
    assert (cut <= x.amax()).all() and (changed > 0).any()
    filled = (cut == -0.42) & (x != -0.42)
    assert filled.flatten(1).sum(1).max() <= 100  # at most one 10 x 10 square per image
    assert torch.allclose(C.contrast(x, torch.tensor([1.0, 0.5]))[0], x[0])
    assert torch.allclose(C.contrast(x, torch.tensor([1.0, 0.5]))[1], -0.42 + 0.5 * (x[1] + 0.42))


def test_affine_warp_with_the_identity_changes_nothing_and_a_shift_moves_pixels():
    x = digits(3)
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(3, 2, 3)
    assert torch.allclose(C.affine_warp(x, identity), x, atol=1e-5)
    right = identity.clone()
    right[:, 0, 2] = -2 * 3 / 28  # sample 3 pixels to the left: the content moves 3 pixels right
    assert torch.allclose(C.affine_warp(x, right)[..., 3:], x[..., :-3], atol=1e-5)


def test_fixmatch_config_rejects_unknown_settings():
    assert C.FixMatchConfig.with_settings(threshold=0.9).threshold == 0.9
    with pytest.raises(ValueError, match="no setting tau"):
        C.FixMatchConfig.with_settings(tau=0.9)
    with pytest.raises(ValueError, match="optimizer must be one of sgd, adam, got 'rmsprop'"):
        C.FixMatchConfig.with_settings(optimizer="rmsprop")


def test_a_short_fixmatch_run_learns_the_labels_and_logs_the_mask_rate():
    torch.manual_seed(0)
    x = digits(40, seed=1)
    y = torch.arange(40) % 2
    x[y == 1, :, 8:20, 10:14] = -0.42  # class 1: only the right half of the blob
    config = C.FixMatchConfig.with_settings(steps=60, labeled_batch=8, mu=2, ema=0.0)
    model = C.train_fixmatch(new_model(), x[:10], y[:10], x[10:], seed=0, config=config, log_every=20)
    assert not model.training and [h["step"] for h in model.history] == [20, 40, 60]
    assert all(0 <= h["mask_rate"] <= 1 for h in model.history)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() >= 0.9
        assert F.softmax(model(x[10:]), 1).amax(1).mean() > 0.9  # confident on the unlabeled images
    with pytest.raises(ValueError, match="as many labels"):
        C.train_fixmatch(new_model(), x[:10], y[:9], x[10:])


@pytest.mark.parametrize("strong_labeled", [False, True])
def test_one_step_updates_the_weights_and_reports_the_mask_rate(strong_labeled):
    torch.manual_seed(0)
    model, x = new_model(), digits(12)
    before = [p.detach().clone() for p in model.parameters()]
    config = C.FixMatchConfig.with_settings(threshold=0.0, strong_labeled=strong_labeled)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    row = C.fixmatch_step(model, optimizer, x[:4], torch.arange(4), x[4:], torch.Generator(), config)
    assert row["mask_rate"] == 1.0  # threshold 0: every pseudo-label counts
    assert row["supervised"] > 0 and row["unlabeled"] > 0 and model.training
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_a_flexible_step_records_the_class_of_each_confident_image():
    torch.manual_seed(0)
    model, x = new_model(), digits(12)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    learned = torch.full((20,), -1)
    index = torch.tensor([3, 7, 11, 12, 19, 0, 5, 8])  # positions in a 20-image unlabeled set
    config = C.FixMatchConfig.with_settings(threshold=0.0, max_shift=0)  # all confident; weak view = x
    with torch.no_grad():
        expected = model.eval()(x[4:]).argmax(1)  # the pseudo-labels come from the weights before the step
    row = C.fixmatch_step(model, optimizer, x[:4], torch.arange(4), x[4:], torch.Generator(), config,
                          learned, index)
    assert row["mask_rate"] == 1.0 and row["thresholds"] == [0.0] * 10  # nothing learned yet
    assert torch.equal(learned[index], expected)
    others = torch.ones(20, dtype=torch.bool)
    others[index] = False
    assert (learned[others] == -1).all()  # images not in the batch keep their record
    sure = C.FixMatchConfig.with_settings(threshold=1.0)  # no image reaches 1.0: nothing recorded
    before = learned.clone()
    C.fixmatch_step(model, optimizer, x[:4], torch.arange(4), x[4:], torch.Generator(), sure, learned, index)
    assert torch.equal(learned, before)
    with pytest.raises(ValueError, match="learned needs index"):
        C.fixmatch_step(model, optimizer, x[:4], torch.arange(4), x[4:], torch.Generator(), config, learned)


def test_ema_returns_the_moving_average_of_the_weights_after_each_step():
    x, y = digits(12), torch.arange(4)

    def weights(steps: int, ema: float) -> list[torch.Tensor]:
        torch.manual_seed(0)  # the same initial weights and dropout masks in every run
        config = C.FixMatchConfig.with_settings(steps=steps, labeled_batch=4, mu=2, threshold=0.0, ema=ema)
        model = C.train_fixmatch(new_model(), x[:4], y, x[4:], config=config)
        return [p.detach() for p in model.parameters()]

    after_1, after_2 = weights(1, 0.0), weights(2, 0.0)  # step 1 is the same in both (lr starts equal)
    averaged = weights(2, 0.75)  # the average starts at the weights after step 1
    assert not torch.equal(after_1[0], after_2[0])
    for a1, a2, e in zip(after_1, after_2, averaged):
        torch.testing.assert_close(e, 0.75 * a1 + 0.25 * a2)
    with pytest.raises(ValueError, match="ema"):
        weights(1, 1.0)
