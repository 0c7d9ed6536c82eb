"""Per-run secrets: the split, the pool's order, a class relabeling and the pseudo-label check.

A student knows the grader's source, the dataset and every public seed. So each
grading run draws a secret seed (``secrets.randbits``) and derives from it the
100 labeled examples (10 per class, the same for every student in the run), the
order of the unlabeled pool, a permutation of the class ids (the child sees
labels ``perm[y]``; the grader scores against ``perm[y_test]``, so weights
trained elsewhere score near chance), the training seed, and the model and
inputs of the ``pseudo_label`` check. The seed is kept next to the grades file,
readable only by the instructor, so a run can be reproduced and resumed.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import secrets
import shutil
import stat
import tempfile
from functools import lru_cache
from pathlib import Path

import safetensors.torch
import torch

from course_utils import homework
from course_utils.runtime import atomic_write

PL_N, PL_NOISE, PL_SCALE, PROBE_N = 1000, 100, 8.0, 64


def derive(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for one purpose, from the run's secret seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{purpose}".encode()).digest()[:8], "little") >> 1


def generator(seed: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive(seed, purpose))


class GradingData:
    """What one grading run needs: the child's inputs and the grader's own test set."""

    def __init__(self, dataset: str, seed: int):
        if dataset not in homework.DATASETS:
            raise ValueError(f"dataset must be one of {homework.DATASETS}, got {dataset!r}.")
        self.dataset, self.seed = dataset, seed
        self.perm = torch.randperm(homework.NUM_CLASSES, generator=generator(seed, "classes"))
        self.train_seed = derive(seed, "train") % 2**31
        x, y = homework.load_split(dataset, "train")
        lab, unlab = homework.labeled_split(y, seed=derive(seed, "split"))
        unlab = unlab[torch.randperm(len(unlab), generator=generator(seed, "pool"))]
        x = homework.prepare(x, dataset)
        self.child_data = {
            "x_labeled": x[lab].contiguous(),
            "y_labeled": self.perm[y[lab]].contiguous(),
            "x_unlabeled": x[unlab].contiguous(),
        }  # the pool's labels stay here
        x_test, y_test = homework.load_split(dataset, "test")
        self.x_test, self.y_test = homework.prepare(x_test, dataset), self.perm[y_test]
        self.pl_input, self.pl_expected = pseudo_label_case(self.child_data["x_unlabeled"], seed)

    def write_inputs(self, folder: Path) -> None:
        """The files every child reads (bound read-only into its sandbox)."""
        safetensors.torch.save_file(self.child_data, str(folder / "data.safetensors"))
        safetensors.torch.save_file(self.pl_input, str(folder / "pl_input.safetensors"))


@lru_cache(maxsize=2)
def grading_data(dataset: str, seed: int) -> GradingData:
    """Loaded once per process (the CLI, or each Dask worker)."""
    return GradingData(dataset, seed)


@lru_cache(maxsize=2)
def inputs_dir(dataset: str, seed: int) -> Path:
    """A folder holding the run's child inputs, written once per process, removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="course-grade-inputs-"))
    atexit.register(shutil.rmtree, folder, True)
    grading_data(dataset, seed).write_inputs(folder)
    return folder


def check_model(seed: int) -> torch.nn.Module:
    """A secret ``new_model()`` with a sharpened last layer, so its softmax is far from uniform."""
    g = generator(seed, "pl_model")
    model = homework.new_model()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) / max(1, p[0].numel()) ** 0.5)
        model.classifier[-1].weight.mul_(PL_SCALE)
    return model


def pseudo_label_case(x_unlabeled: torch.Tensor, seed: int):
    """Secret inputs (pool images plus noise; N is not a multiple of the batch size) and what the
    grader itself computes on them: eval-mode softmax, and train/eval outputs on a probe batch."""
    g = generator(seed, "pl_inputs")
    real = x_unlabeled[torch.randperm(len(x_unlabeled), generator=g)[:PL_N]]
    x = torch.cat([real, torch.randn(PL_NOISE, *real.shape[1:], generator=g)]).contiguous()
    probe = x_unlabeled[torch.randperm(len(x_unlabeled), generator=g)[:PROBE_N]].contiguous()
    probe_seed = derive(seed, "probe") % 2**31
    model = check_model(seed)
    expected = {}
    with torch.no_grad():
        expected["probs"] = torch.softmax(model.eval()(x), dim=1)
        expected["eval.probe"] = model(probe)
        torch.manual_seed(probe_seed)
        expected["train.probe"] = model.train()(probe)
    pl_input = {
        "x": x,
        "probe": probe,
        "probe_seed": torch.tensor(probe_seed),
        **{f"model.{k}": v.contiguous() for k, v in model.state_dict().items()},
    }
    return pl_input, expected


# ---------------------------------------------------------------- the secret, kept beside the grades


def secret_path(grades: Path) -> Path:
    return grades.with_name(grades.name + ".secret.json")


def load_or_create_secret(grades: Path, dataset: str, seed: int | None) -> int:
    """The run's seed: read back when resuming, else ``seed`` or a fresh secret, saved 0600."""
    path = secret_path(grades)
    if os.path.lexists(path):
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is not a regular file; remove it or choose another --out.")
        saved = json.loads(path.read_text())
        if saved.get("dataset") != dataset:
            raise ValueError(
                f"{grades} was graded on {saved.get('dataset')!r}, not {dataset!r}: pass "
                f"--dataset {saved.get('dataset')} to resume, or choose another --out."
            )
        if seed is not None and seed != saved.get("seed"):
            raise ValueError(f"{grades} was graded with another --seed (see {path}); a run keeps one seed.")
        return int(saved["seed"])
    if grades.exists():
        raise ValueError(
            f"{grades} exists but its secret ({path.name}) does not: it was not made by this "
            "grader version. Move it away or choose another --out."
        )
    seed = secrets.randbits(63) if seed is None else seed
    atomic_write(path, json.dumps({"seed": seed, "dataset": dataset}) + "\n", mode=0o600)
    return seed
