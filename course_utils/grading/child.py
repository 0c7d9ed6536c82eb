"""The grading child: runs ONE task of one student's extracted code, inside the sandbox.

``python -m course_utils.grading.child WORK INPUTS``. ``WORK`` (the only
writable folder) holds ``config.json`` and ``submission.py``; ``INPUTS``
(read-only) holds the run's ``data.safetensors`` and ``pl_input.safetensors``.
It imports torch, says ``ready`` (until then no student code has run, so a
failure is the environment's), executes the definitions, runs the task and
writes ``out.safetensors`` (plain tensors). The parent trusts nothing written
after ``ready``: it re-checks the file and measures every number itself.
The audit hook below is a courtesy that turns common mistakes into clear
reasons; the wall is the OS sandbox around this process.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback

PL_BATCH = 256
DENY_EVENTS = {
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "subprocess.Popen",
    "os.kill",
    "os.killpg",
    "resource.setrlimit",
    "sys.addaudithook",
}
DENY_PREFIXES = ("socket.", "ctypes.")
TRUSTED_ROOTS = {
    "torch",
    "torchvision",
    "numpy",
    "matplotlib",
    "tqdm",
    "seaborn",
    "course_utils",
    "livelossplot",
    "torchinfo",
    "safetensors",
    "scipy",
    "sklearn",
    "PIL",
    "skimage",
    "pandas",
}


def set_limits(cfg: dict) -> None:
    """Memory (data, and address space as a backstop), CPU seconds, file size, no core dump."""
    data = cfg["memory_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (data, data))
    vm = data + cfg["address_slack_mb"] * 2**20  # torch reserves GBs of address space it never uses
    resource.setrlimit(resource.RLIMIT_AS, (vm, vm))
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_seconds"], cfg["cpu_seconds"] + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["max_file_mb"] * 2**20,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def courtesy_hook(work: str, data_homes: list[str], report):
    """Clear reasons for common mistakes (reading the dataset, starting processes, sockets)."""

    def hook(event: str, args: tuple) -> None:
        bad = event in DENY_EVENTS or event.startswith(DENY_PREFIXES)
        if event == "open" and isinstance(args[0], (str, bytes)):
            path = os.path.abspath(os.fsdecode(args[0]))
            bad = any(path == h or path.startswith(h.rstrip("/") + "/") for h in data_homes)
        if bad:
            what = f"{event} {args[0]!r}"[:200] if args else event
            report({"event": "denied", "what": what})
            raise PermissionError(f"The grader's sandbox does not allow {what}.")

    return hook


def preimport(source: str) -> None:
    """Import the trusted libraries the submission imports, before any student code runs."""
    import ast
    import importlib

    for node in ast.walk(ast.parse(source)):  # imports inside functions too
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module]
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
            else []
        )
        for name in names:
            if name.split(".")[0] in TRUSTED_ROOTS:
                try:
                    importlib.import_module(name)
                except Exception:
                    pass


def run_definitions(source: str, report) -> dict:
    """Execute the extracted definitions statement by statement; failing ones are reported."""
    import ast

    import torch

    namespace = {"__name__": "submission", "__builtins__": __builtins__, "device": torch.device("cpu")}
    for node in ast.parse(source).body:
        try:
            exec(compile(ast.Module([node], []), "<submission>", "exec"), namespace)
        except BaseException as e:  # an import the grader lacks, a bad base class...
            report({"event": "setup_error", "line": node.lineno, "error": describe(e)})
    return namespace


def describe(e: BaseException) -> str:
    try:
        text = f"{type(e).__name__}: {e}"
    except BaseException:
        text = "an exception whose message could not be shown"
    return text[:300]


def save_tensors(path: str, tensors: dict) -> None:
    import safetensors.torch
    import torch

    clean = {}
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"expected tensors, got {type(value).__name__} for {key!r}")
        clean[str(key)] = value.detach().as_subclass(torch.Tensor).cpu().contiguous().clone()
    safetensors.torch.save_file(clean, path)


def task_train(fn, name: str, data: dict, seed: int) -> dict:
    import torch

    args = (data["x_labeled"].clone(), data["y_labeled"].clone())
    if name != "train_baseline":
        args += (data["x_unlabeled"].clone(),)
    model = fn(*args, seed=seed)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{name} returned {type(model).__name__}; expected an nn.Module (new_model()).")
    return dict(model.state_dict())


def task_pseudo_label(fn, pl: dict) -> dict:
    """Call ``pseudo_label`` on a model handed over in train mode, then in eval mode.

    After each call a probe batch goes through the model with a fixed seed, in
    whatever mode the call left it: the parent compares that with its own train-
    and eval-mode outputs, so a function that does not restore the mode is seen.
    """
    import torch

    from course_utils.homework import new_model

    weights = {k[len("model.") :]: v for k, v in pl.items() if k.startswith("model.")}
    out = {}
    for mode in ("train", "eval"):
        model = new_model()
        model.load_state_dict(weights)
        model.train(mode == "train")
        for soft in (False, True):
            kind = "soft" if soft else "hard"
            out[f"{mode}.{kind}"] = fn(model, pl["x"].clone(), soft=soft, batch_size=PL_BATCH)
            torch.manual_seed(int(pl["probe_seed"]))
            with torch.no_grad():
                out[f"{mode}.{kind}.probe"] = model(pl["probe"].clone())
    return out


def where(e: BaseException) -> str:
    """`` (line N of the submission)`` for the innermost frame in the student's code, or ""."""
    lines = [fr.lineno for fr in traceback.extract_tb(e.__traceback__) if fr.filename == "<submission>"]
    return f" (line {lines[-1]} of the submission)" if lines else ""


def run(task: str, source: str, data: dict, work: str, seed: int, report) -> str | None:
    """Execute the definitions and the task; write ``out.safetensors``. Returns the error, if any."""
    from course_utils.runtime import seed_everything

    try:
        fn = run_definitions(source, report).get(task)
        if not callable(fn):
            raise NameError(f"{task} is not defined at the top level of the notebook.")
        seed_everything(seed)
        result = task_pseudo_label(fn, data) if task == "pseudo_label" else task_train(fn, task, data, seed)
        save_tensors(os.path.join(work, "out.safetensors"), result)
    except BaseException as e:
        return describe(e) + where(e)
    return None


def main() -> None:
    work, inputs = sys.argv[1], sys.argv[2]
    with open(os.path.join(work, "config.json")) as f:
        cfg = json.load(f)
    set_limits(cfg)
    messages = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the student's prints go to the log, not to the message pipe
    report = lambda msg: messages.write(json.dumps(msg) + "\n")  # noqa: E731

    import safetensors.torch
    import torch

    import course_utils.homework  # noqa: F401  (imported before any student code)

    torch.set_num_threads(cfg["threads"])
    task = cfg["task"]
    inputs_file = "pl_input.safetensors" if task == "pseudo_label" else "data.safetensors"
    data = safetensors.torch.load_file(os.path.join(inputs, inputs_file))
    with open(os.path.join(work, "submission.py")) as f:
        source = f.read()
    preimport(source)
    sys.addaudithook(courtesy_hook(work, cfg["data_homes"], report))
    report({"event": "ready", "time": time.time()})  # the grader's start-up check ("probe") ends here
    error = None if task == "probe" else run(task, source, data, work, cfg["seed"], report)
    report({"event": "done", "error": error})
    messages.flush()
    os._exit(0)  # skip atexit handlers and finalizers the student may have registered


if __name__ == "__main__":
    main()
