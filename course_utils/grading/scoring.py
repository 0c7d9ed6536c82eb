"""The grader's own numbers: weights checked and measured on the test set, pseudo-labels compared.

Nothing here trusts the child: every accuracy is measured in the grader's
process on data the child never saw, and the pseudo-label check compares the
child's tensors with outputs the grader computed itself.
"""

from __future__ import annotations

import torch

from course_utils import homework

# Test accuracy (%) needed for the points. 91/90 are the rubric's, for full MNIST.
# mnist-5k (100 labels + 3,900 unlabeled, 1,000 test digits; CI): the solution notebook
# measured, seeds 0/1/2: baseline 90.5/90.0/87.5, hard 94.4/94.2/95.4, soft 93.7/94.8/93.9.
# fashion-mnist: the reference's hard pseudo-labels end level with its baseline (about
# 70 %), so no threshold separates them: an instructor must choose (--thresholds HARD SOFT).
THRESHOLDS = {
    "mnist": {"hard": 91.0, "soft": 90.0},
    "mnist-5k": {"hard": 91.0, "soft": 91.0},
    "fashion-mnist": None,
}
# Pseudo-labeling must also beat the student's own baseline, as the grader measures it, by this
# many points. Measured gains of the reference over its baseline on mnist-5k, seeds 0/1/2:
# hard +3.9/+4.2/+7.9, soft +3.2/+4.8/+6.4 (smallest +3.2), so 1.0 point (10 test digits)
# leaves honest work 2+ points of room, while a baseline handed in as "pseudo-labeling" gains
# exactly 0 (same code, same seed, same weights). On fashion-mnist the reference gains ~0.
MARGINS = {"mnist": 1.0, "mnist-5k": 1.0, "fashion-mnist": 0.0}
POINTS = {"hard": 5, "pseudo_label": 1, "soft": 3}  # + 1 written point, graded by hand
MAX_AUTO = sum(POINTS.values())
TOL = 1e-4


def check_weights(weights: dict) -> str | None:
    """None if ``weights`` load into ``new_model()`` exactly (keys, dtypes, shapes) and are finite."""
    expected = homework.new_model().state_dict()
    missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or extra:
        return f"wrong architecture: missing {missing[:3]}, unexpected {extra[:3]} (use new_model())"
    for key, ref in expected.items():
        got = weights[key]
        if got.dtype != ref.dtype or tuple(got.shape) != tuple(ref.shape):
            return (
                f"wrong architecture: {key} is {got.dtype} {tuple(got.shape)}, expected "
                f"{ref.dtype} {tuple(ref.shape)} (use new_model())"
            )
        if not bool(torch.isfinite(got).all()):
            return f"the weights are not finite ({key} holds NaN or inf)"
    return None


@torch.no_grad()
def accuracy(weights: dict, x: torch.Tensor, y: torch.Tensor) -> float:
    """Test accuracy (%) of ``new_model()`` with ``weights``, measured by the grader."""
    model = homework.new_model()
    model.load_state_dict(weights, strict=True)
    model.eval()
    correct = sum(
        int((model(x[i : i + 1000]).argmax(1) == y[i : i + 1000]).sum()) for i in range(0, len(x), 1000)
    )
    return 100.0 * correct / len(y)


def _describe(t) -> str:
    return "nothing" if not isinstance(t, torch.Tensor) else f"{t.dtype} {list(t.shape)}"


def _labels_problem(hard, probs: torch.Tensor, mode: str) -> str | None:
    n = len(probs)
    if not isinstance(hard, torch.Tensor) or hard.dtype != torch.int64 or tuple(hard.shape) != (n,):
        return f"soft=False must give int64 [{n}], got {_describe(hard)}"
    top2 = probs.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > TOL  # ignore near-ties
    wrong = int(((hard != probs.argmax(1)) & clear).sum())
    return (
        f"soft=False, model in {mode} mode: {wrong} of {n} labels differ from the argmax (model.eval()?)"
        if wrong
        else None
    )


def _probs_problem(soft, probs: torch.Tensor, mode: str) -> str | None:
    shape = (len(probs), homework.NUM_CLASSES)
    if not isinstance(soft, torch.Tensor) or not soft.is_floating_point() or tuple(soft.shape) != shape:
        return f"soft=True must give float {list(shape)}, got {_describe(soft)}"
    if not bool(torch.isfinite(soft).all()):
        return "soft=True: the probabilities are not finite"
    soft = soft.double()
    row_err = float((soft.sum(1) - 1).abs().max())
    if row_err > TOL or float(soft.min()) < -1e-6:
        return f"soft=True: rows are not probabilities (a row sums to 1 +- {row_err:.3g})"
    diff = float((soft - probs.double()).abs().max())
    return (
        f"soft=True, model in {mode} mode: probabilities differ from the model's softmax by up to "
        f"{diff:.3g} (model.eval()?)"
        if diff > TOL
        else None
    )


def _mode_problem(probe, expected: torch.Tensor, mode: str) -> str | None:
    if (
        isinstance(probe, torch.Tensor)
        and probe.shape == expected.shape
        and float((probe.double() - expected.double()).abs().max()) <= TOL
    ):
        return None
    return f"the model was handed over in {mode} mode and was not left in {mode} mode (restore it)"


def check_pseudo_labels(out: dict, expected: dict) -> list[str]:
    """Problems with ``pseudo_label`` on a model handed over in train mode, then in eval mode."""
    problems = []
    for mode in ("train", "eval"):
        found = [
            _labels_problem(out.get(f"{mode}.hard"), expected["probs"], mode),
            _probs_problem(out.get(f"{mode}.soft"), expected["probs"], mode),
            *(
                _mode_problem(out.get(f"{mode}.{k}.probe"), expected[f"{mode}.probe"], mode)
                for k in ("hard", "soft")
            ),
        ]
        problems += [p for p in dict.fromkeys(found) if p and p not in problems]
    return problems


def score(results: dict, data, limits: dict, margin: float) -> tuple[dict, list[str]]:
    """Points and measured accuracies from the child's outputs; a reason for every lost point."""
    row, reasons, acc = {}, [], {}
    for task, key in (
        ("train_baseline", "baseline"),
        ("train_hard_pseudo", "hard"),
        ("train_soft_pseudo", "soft"),
    ):
        got = results.get(task, f"{task} is not defined at the top level of the notebook")
        problem = got if isinstance(got, str) else check_weights(got)
        acc[key] = None if problem else accuracy(got, data.x_test, data.y_test)
        row[f"{key}_acc"] = "" if acc[key] is None else f"{acc[key]:.2f}"
        if problem:
            reasons.append(f"{key} ({'0 points' if key == 'baseline' else f'-{POINTS[key]}'}): {problem}")
    for key in ("hard", "soft"):
        row[f"points_{key}"] = 0
        if acc[key] is None:
            continue
        if acc[key] < limits[key]:
            reasons.append(f"{key} (-{POINTS[key]}): test accuracy {acc[key]:.2f}% < {limits[key]}%")
        elif acc["baseline"] is None:
            reasons.append(
                f"{key} (-{POINTS[key]}): no working train_baseline to compare with "
                "(pseudo-labeling must beat your own baseline)"
            )
        elif acc[key] < acc["baseline"] + margin:
            reasons.append(
                f"{key} (-{POINTS[key]}): {acc[key]:.2f}% does not beat your baseline "
                f"{acc['baseline']:.2f}% by {margin} points"
            )
        else:
            row[f"points_{key}"] = POINTS[key]
    got = results.get("pseudo_label", "pseudo_label is not defined at the top level of the notebook")
    problems = [got] if isinstance(got, str) else check_pseudo_labels(got, data.pl_expected)
    row["points_pseudo_label"] = 0 if problems else POINTS["pseudo_label"]
    reasons += [f"pseudo_label (-1): {p}" for p in problems]
    row["points_auto_total"] = sum(row[f"points_{k}"] for k in POINTS)
    return row, reasons
