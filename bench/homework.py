"""Homework 06 (pseudo-labeling): the seed notebook's protocol vs the reference solution.

    python bench/homework.py                              # everything: 3 seeds, mnist-5k + fashion-mnist
    python bench/homework.py --seeds 1 --datasets mnist-5k   # a quick look
    python bench/homework.py --datasets mnist             # full MNIST, where a copy exists
    # the same seeds in parallel processes (1 thread each), then one report over all of them:
    python bench/homework.py --threads 1 --only-seeds 0,1 --save runs.jsonl &
    python bench/homework.py --threads 1 --only-seeds 2 --save runs.jsonl
    python bench/homework.py --summarize runs.jsonl
    # ablations of the reference (b) only, as quoted in the notebook (raw runs in bench/results/):
    python bench/homework.py --reference-only --stages hard --set train_hard_pseudo.rounds=5 \
        --set train_hard_pseudo.steps=300 --datasets mnist-5k          # 5 x 300 instead of 7 x 200
    python bench/homework.py --reference-only --stages hard --set train_hard_pseudo.augment_pseudo=True
    python bench/homework.py --reference-only --stages soft --set train_soft_pseudo.augment_pseudo=False
    # beyond the homework: FixMatch (course_utils.consistency) beside the reference's stages
    python bench/homework.py --reference-only --stages baseline,hard,soft,fixmatch --datasets mnist-5k
    python bench/homework.py --reference-only --stages fixmatch --set fixmatch.threshold=0.9

Both run in this process on the same data: the same 100 labeled images (``labeled_split``),
the rest of the training split as the unlabeled pool, and the test split, measured by the same
batched evaluation (not timed).

(a) A port, written for this benchmark, of the PROTOCOL of the notebook this homework grew out
    of (its code is not copied). What it does, as the seed did:
    torchvision datasets with per-item ``ToTensor()`` + ``Normalize`` transforms and
    ``DataLoader(batch_size=64, shuffle=True)``; its network (conv 5x5 20 -> conv 5x5 40 ->
    fc 150 -> fc 10, channel dropout on the conv maps, ReLU on the logits); plain SGD with
    lr 0.1; 400 baseline epochs on the 100 labels; then 20 pseudo-label iterations, each of
    which rebuilds the pseudo-labeled set per item (a Python list of every unlabeled image
    tensor, labels predicted in DataLoader batches of 1024, two forward passes per batch,
    no ``no_grad``), trains one epoch on it and one epoch on the 100 labels.
    Substitutions, only where the original no longer runs or is deprecated:
      - ``Dropout2d`` on the flat fc features -> ``nn.Dropout`` (PyTorch deprecates 2-D input
        to ``Dropout2d`` and names ``dropout`` as the equivalent behaviour);
      - ``.cuda()`` -> the model and batches stay on the CPU (``.to(device)``);
      - ``nll_loss(..., size_average=False)`` -> not needed: the shared evaluation is used.
    Left out: the seed's test-set evaluation every 10 epochs (monitoring, not training; it
    would only make (a) slower). The ReLU on the logits is kept: it runs, and it is the
    seed's architecture (one reason its accuracy is lower).
(b) The reference solution: ``train_baseline``, ``train_hard_pseudo`` and ``train_soft_pseudo``
    taken from ``notebooks/solutions/06_pseudo_labeling_solution.ipynb`` at run time (top-level
    imports, constants and definitions parsed with ``ast``, as the grader does), so the notebook
    stays the single source. Its hard and soft stages each train their own baseline inside.
    The optional stage ``fixmatch`` is not the homework's: ``course_utils.consistency.train_fixmatch``
    (FixMatch, the solution's "going further" section) on a fresh ``new_model()`` seeded like the
    baseline, on the same labeled and unlabeled images; it is reported beside (b).

``--set FUNCTION.NAME=VALUE`` changes one literal in a reference function before it runs: the value
assigned to the local variable NAME (also inside ``a, b = 1, 2``) or passed as keyword NAME in a call.
A NAME the function does not have stops the run (so a renamed variable cannot silently measure
the default). ``--set fixmatch.NAME=VALUE`` changes a field of ``FixMatchConfig`` instead.
``--reference-only`` skips (a); ``--stages`` runs only some of (b)'s stages (the hard
and soft stages train their own baseline either way). The settings are saved with each run.

For each dataset and seed: accuracy and wall time of each stage, then mean ± std over seeds.
The last line is
``homework_speedup <total time a / total time b> min_acc_delta <min over stages of acc_b - acc_a>``
with totals over the common stages (a: baseline + hard; b: baseline + hard, so b's baseline is
counted twice) over every dataset and seed run, and the accuracy delta in percentage points
between the per-dataset means. Options that shrink the protocol (``--pseudo-iterations``,
``--baseline-epochs``) are printed as REDUCED in the output.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # the reference's progress bars; set before tqdm loads

import argparse
import ast
import dataclasses
import json
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.consistency import FixMatchConfig, train_fixmatch
from course_utils.data import STATS
from course_utils.grading import extract
from course_utils.homework import labeled_split, load_split, new_model, prepare

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "solutions" / "06_pseudo_labeling_solution.ipynb"
SEED_BASELINE_EPOCHS, SEED_ITERATIONS = 400, 20
COMMON = ("baseline", "hard pseudo")  # the stages both (a) and (b) have


# ---------------------------------------------------------------- (b) the reference, from the notebook
def parse_setting(text: str) -> tuple[str, str, object]:
    """``"train_hard_pseudo.rounds=5"`` -> ("train_hard_pseudo", "rounds", 5); VALUE is a Python literal."""
    target, sep, value = text.partition("=")
    function, dot, name = target.partition(".")
    if not (sep and dot and function and name):
        raise argparse.ArgumentTypeError(f"expected FUNCTION.NAME=VALUE, got {text!r}")
    try:
        return function, name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(f"{value!r} in {text!r} is not a Python literal") from None


def _apply_setting(function: ast.FunctionDef, name: str, value) -> int:
    """Replace the literal given to ``name`` in ``function`` (assignment or keyword); return how many."""
    hits = 0
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, val = node.targets[0], node.value
            both_tuples = isinstance(target, ast.Tuple) and isinstance(val, ast.Tuple)
            pairs = zip(target.elts, val.elts) if both_tuples else [(target, val)]
            for t, v in pairs:
                if isinstance(t, ast.Name) and t.id == name and isinstance(v, ast.Constant):
                    v.value, hits = value, hits + 1
        elif isinstance(node, ast.keyword) and node.arg == name and isinstance(node.value, ast.Constant):
            node.value.value, hits = value, hits + 1
    return hits


def load_reference(path: Path = NOTEBOOK, settings: tuple = ()) -> dict:
    """Execute what the grader keeps of the notebook (``course_utils.grading.extract``: imports,
    constants, definitions); return the namespace.

    ``settings``: (function, name, value) triples applied with ``_apply_setting`` first.
    """
    source, problems, _, review = extract(path)
    if problems or review:
        raise SystemExit(f"the grader would not keep all of {path.name}: {problems or review}")
    keep = ast.parse(source).body
    functions = {n.name: n for n in keep if isinstance(n, ast.FunctionDef)}
    for function, name, value in [s for s in settings if s[0] != FIXMATCH]:
        if function not in functions or not _apply_setting(functions[function], name, value):
            raise SystemExit(f"--set {function}.{name}: no literal {name!r} in the reference's {function}()")
    namespace: dict = {"__name__": "homework_reference"}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path.name), "exec"), namespace)
    return namespace


# ---------------------------------------------------------------- (a) the seed's protocol
class SeedNet(nn.Module):
    """The seed notebook's network, with ``nn.Dropout`` where it put ``Dropout2d`` on flat features."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 40, kernel_size=5)
        self.dropout2d = nn.Dropout2d(p=0.5)  # on [N, 40, 8, 8] maps: a valid use, as in the seed
        self.dropout = nn.Dropout(p=0.5)  # the seed: the same Dropout2d on [N, 150] (deprecated)
        self.fc1 = nn.Linear(640, 150)
        self.fc2 = nn.Linear(150, 10)

    def forward(self, x):
        x = x.view(-1, 1, 28, 28)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.dropout2d(self.conv2(x)), 2))
        x = x.view(-1, 640)
        x = self.dropout(F.relu(self.fc1(x)))
        return F.relu(self.fc2(x))  # the seed's ReLU on the logits, kept


def seed_train_epoch(model, optimizer, loader) -> None:
    model.train()
    for x, target in loader:
        optimizer.zero_grad()
        loss = F.nll_loss(F.log_softmax(model(x), dim=1), target)
        loss.backward()
        optimizer.step()


def seed_pseudo_loader(model, unlabeled_dataset):
    """The seed's way: a per-item list of every unlabeled image, labels from batches of 1024."""
    from torch.utils.data import DataLoader

    samples = [item[0] for item in list(unlabeled_dataset)]
    labels = []
    for batch, _ in DataLoader(unlabeled_dataset, batch_size=1024):
        model.eval()
        logits = model(batch)
        logits = model(batch)  # the seed computes the forward pass twice
        labels.extend(logits.argmax(axis=1).detach().cpu())
    return DataLoader(list(zip(samples, labels)), batch_size=64, shuffle=True)


def write_idx(path: Path, t: torch.Tensor) -> None:
    """A uint8 tensor as an uncompressed IDX file (what torchvision's MNIST classes read)."""
    header = bytes([0, 0, 0x08, t.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in t.shape)
    path.write_bytes(header + t.contiguous().numpy().tobytes())


def torchvision_datasets(root: Path, data: dict, dataset: str):
    """The real images as torchvision datasets with the seed's per-item transforms."""
    from torchvision import datasets, transforms

    cls = datasets.FashionMNIST if dataset == "fashion-mnist" else datasets.MNIST
    raw = root / cls.__name__ / "raw"
    raw.mkdir(parents=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = data[split]
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y.to(torch.uint8))
    mean, std = STATS["fashion-mnist" if dataset == "fashion-mnist" else "mnist"]
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    return cls(root, train=True, transform=tf, download=False)


def run_seed_protocol(train_ds, lab_idx, unlab_idx, seed, baseline_epochs, iterations, evaluate):
    """(a): returns {stage: (accuracy, seconds)} for the baseline and the hard pseudo-label stage."""
    from torch.utils.data import DataLoader, Subset

    torch.manual_seed(seed)
    labeled, unlabeled = Subset(train_ds, lab_idx.tolist()), Subset(train_ds, unlab_idx.tolist())
    labeled_loader = DataLoader(labeled, batch_size=64, shuffle=True)
    start = time.perf_counter()
    model = SeedNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(baseline_epochs):
        seed_train_epoch(model, optimizer, labeled_loader)
    out = {"baseline": (evaluate(model), time.perf_counter() - start)}
    start = time.perf_counter()
    model_iter = SeedNet()
    model_iter.load_state_dict(model.state_dict())
    optimizer = torch.optim.SGD(model_iter.parameters(), lr=0.1)
    for _ in range(iterations):
        pseudo_loader = seed_pseudo_loader(model_iter, unlabeled)
        seed_train_epoch(model_iter, optimizer, pseudo_loader)
        seed_train_epoch(model_iter, optimizer, labeled_loader)
    out["hard pseudo"] = (evaluate(model_iter), time.perf_counter() - start)
    return out


STAGES = {"baseline": "baseline", "hard": "hard pseudo", "soft": "soft pseudo", "fixmatch": "fixmatch"}
FIXMATCH = "fixmatch"  # --set fixmatch.NAME=VALUE: a FixMatchConfig field, not a notebook literal


def fixmatch_config(settings) -> FixMatchConfig:
    """``FixMatchConfig`` with the ``fixmatch.NAME=VALUE`` settings; an unknown NAME stops the run."""
    try:
        return FixMatchConfig.with_settings(**{n: v for f, n, v in settings if f == FIXMATCH})
    except ValueError as error:
        raise SystemExit(f"--set {FIXMATCH}.NAME: {error}") from None


def fixmatch(x_lab, y_lab, x_unlab, seed=0, config=None):
    """FixMatch on a fresh ``new_model()``, its weights seeded as the reference's baseline seeds them."""
    torch.manual_seed(seed)
    return train_fixmatch(new_model(), x_lab, y_lab, x_unlab, seed=seed, config=config)


def run_reference(ref, x_lab, y_lab, x_unlab, seed, evaluate, stages=("baseline", "hard", "soft"),
                  config: FixMatchConfig | None = None):
    """(b): returns {stage: (accuracy, seconds)} for the chosen of baseline, hard and soft
    pseudo-labels, and FixMatch with ``config``."""
    out = {}
    for stage, fn, args in (("baseline", ref["train_baseline"], (x_lab, y_lab)),
                            ("hard pseudo", ref["train_hard_pseudo"], (x_lab, y_lab, x_unlab)),
                            ("soft pseudo", ref["train_soft_pseudo"], (x_lab, y_lab, x_unlab)),
                            ("fixmatch", partial(fixmatch, config=config), (x_lab, y_lab, x_unlab))):
        if stage not in [STAGES[s] for s in stages]:
            continue
        start = time.perf_counter()
        model = fn(*args, seed=seed)
        out[stage] = (evaluate(model), time.perf_counter() - start)
    return out


@torch.no_grad()
def test_accuracy(model, x, y) -> float:
    model.eval()
    hits = sum(int((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum()) for i in range(0, len(x), 1000))
    return 100 * hits / len(x)


def mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):7.2f} ± {spread:5.2f}"


def report(records: list[dict]) -> None:
    """Mean ± std per dataset and stage, the speedup per dataset, and the final line.

    Runs of one dataset may come from several files with different stages (``--summarize a b``):
    each row is over the runs that have its stage, and names their seeds if they are not all.
    """
    total_a = total_b = 0.0
    deltas = []
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        runs = [r for r in records if r["dataset"] == dataset]
        seeds = sorted({r["seed"] for r in runs})
        settings = sorted({s for r in runs for s in r.get("settings", [])})
        print(f"\n{dataset}: mean ± std over seeds {seeds}; accuracy in %, time in s"
              + ("  [REDUCED protocol for (a)]" if any(r["reduced"] for r in runs) else "")
              + (f"  [reference with {', '.join(settings)}]" if settings else ""))
        for stage in STAGES.values():
            b_name = "consistency" if stage == "fixmatch" else "reference"
            for who, name in (("a", "seed protocol"), ("b", b_name)):
                having = [r for r in runs if stage in r.get(who, {})]
                if having:
                    accs = [r[who][stage][0] for r in having]
                    secs = [r[who][stage][1] for r in having]
                    own = sorted(r["seed"] for r in having)
                    print(f"  {stage:11s} ({who}) {name:13s} acc {mean_std(accs)}  time {mean_std(secs)}"
                          + (f"  (seeds {own})" if own != seeds else ""))
        both = [r for r in runs if all(s in r.get("a", {}) and s in r["b"] for s in COMMON)]
        if not both:
            continue  # an ablation of (b) alone: no comparison with (a)
        for stage in COMMON:
            deltas.append(statistics.mean(r["b"][stage][0] for r in both)
                          - statistics.mean(r["a"][stage][0] for r in both))
        a = sum(r["a"][s][1] for r in both for s in COMMON)
        b = sum(r["b"][s][1] for r in both for s in COMMON)
        print(f"  baseline + hard: (a) {a:.1f}s, (b) {b:.1f}s, speedup {a / b:.2f} on {dataset}")
        total_a, total_b = total_a + a, total_b + b
    if deltas and total_b:
        print(f"\ntotal time of the common stages (baseline + hard): (a) {total_a:.1f}s, (b) {total_b:.1f}s")
        print(f"homework_speedup {total_a / total_b:.2f} min_acc_delta {min(deltas):.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mnist-5k,fashion-mnist",
                        help="comma-separated, from mnist-5k, fashion-mnist, mnist (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default: %(default)s)")
    parser.add_argument("--only-seeds", default=None, help="comma-separated seeds instead of 0..N-1, "
                        "e.g. to run seeds in parallel processes (with --save) and --summarize them")
    parser.add_argument("--pseudo-iterations", type=int, default=SEED_ITERATIONS,
                        help="(a)'s pseudo-label iterations; fewer than 20 is a REDUCED protocol")
    parser.add_argument("--baseline-epochs", type=int, default=SEED_BASELINE_EPOCHS,
                        help="(a)'s baseline epochs; fewer than 400 is a REDUCED protocol")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--save", type=Path, default=None,
                        help="append each run's numbers to this JSON-lines file")
    parser.add_argument("--set", type=parse_setting, action="append", default=[], dest="settings",
                        metavar="FUNCTION.NAME=VALUE", help="change one literal in a reference function")
    parser.add_argument("--reference-only", action="store_true", help="skip (a), the seed's protocol")
    parser.add_argument("--stages", default="baseline,hard,soft",
                        help="(b)'s stages to run, from baseline, hard, soft, fixmatch "
                        "(default: %(default)s)")
    parser.add_argument("--summarize", type=Path, nargs="+", default=None, metavar="FILE",
                        help="run nothing: report the runs saved in these files")
    args = parser.parse_args(argv)
    if args.summarize:
        report([json.loads(line) for f in args.summarize for line in f.read_text().splitlines() if line])
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    seeds = ([int(s) for s in args.only_seeds.split(",")] if args.only_seeds else list(range(args.seeds)))
    reduced = args.pseudo_iterations != SEED_ITERATIONS or args.baseline_epochs != SEED_BASELINE_EPOCHS
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, seeds {seeds}, datasets {datasets}")
    if reduced:
        print(f"REDUCED protocol for (a): {args.baseline_epochs} baseline epochs (seed: "
              f"{SEED_BASELINE_EPOCHS}), {args.pseudo_iterations} pseudo-label iterations (seed: "
              f"{SEED_ITERATIONS}); its accuracy and time are for this reduced protocol")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if not set(stages) <= set(STAGES):
        parser.error(f"--stages takes {', '.join(STAGES)}; got {args.stages!r}")
    ref = load_reference(settings=args.settings)
    config = fixmatch_config(args.settings)
    settings = [f"{f}.{n}={v!r}" for f, n, v in args.settings]
    records = []
    for dataset in datasets:
        data = {split: load_split(dataset, split) for split in ("train", "test")}
        x_train, y_train = prepare(data["train"][0], dataset), data["train"][1]
        x_test, y_test = prepare(data["test"][0], dataset), data["test"][1]
        lab_idx, unlab_idx = labeled_split(y_train)
        x_lab, y_lab, x_unlab = x_train[lab_idx], y_train[lab_idx], x_train[unlab_idx]
        print(f"\n== {dataset}: {len(lab_idx)} labeled, {len(unlab_idx):,} unlabeled, "
              f"{len(x_test):,} test images")

        def evaluate(model, x_test=x_test, y_test=y_test):
            return test_accuracy(model, x_test, y_test)

        with tempfile.TemporaryDirectory() as tmp:
            train_ds = torchvision_datasets(Path(tmp), data, dataset)
            for seed in seeds:
                record = {"dataset": dataset, "seed": seed, "threads": torch.get_num_threads(),
                          "reduced": reduced, "settings": settings}
                if not args.reference_only:
                    record["a"] = run_seed_protocol(train_ds, lab_idx, unlab_idx, seed, args.baseline_epochs,
                                                    args.pseudo_iterations, evaluate)
                record["b"] = run_reference(ref, x_lab, y_lab, x_unlab, seed, evaluate, stages, config)
                if FIXMATCH in stages:
                    record["fixmatch_config"] = dataclasses.asdict(config)  # all of it, defaults too
                for who in [w for w in ("a", "b") if w in record]:
                    line = ", ".join(f"{stage} {acc:.2f}% in {sec:.1f}s"
                                     for stage, (acc, sec) in record[who].items())
                    print(f"seed {seed} ({who}) {line}", flush=True)
                records.append(record)
                if args.save:
                    with args.save.open("a") as f:
                        f.write(json.dumps(record) + "\n")
    report(records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
