"""The grader's child process: runs one student's extracted code, under limits, in a sandbox-ish.

``course_utils.grading`` starts this in a fresh working directory holding
``config.json``, ``data.safetensors`` (x_labeled, y_labeled, x_unlabeled),
``pl_input.safetensors`` (inputs and a model for the pseudo-label check) and
``submission.py`` (the definitions extracted from the notebook). For each task
it writes ``out_<task>.safetensors`` (plain tensors only) and reports progress
as JSON lines on a pipe. Nothing here is trusted by the parent: it re-checks
every file and measures every number itself. This file only makes cheating
harder (defense in depth); what it cannot stop is listed in the README.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback

PL_BATCH = 256
ALWAYS_OK = ("/dev/null", "/dev/urandom")
DENY_EVENTS = {
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen",
    "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill", "resource.setrlimit", "resource.prlimit",
    "sys.addaudithook", "gc.get_objects", "gc.get_referrers", "gc.get_referents", "os.chdir",
    "os.link", "os.symlink", "sqlite3.connect", "sqlite3.enable_load_extension", "webbrowser.open",
    "urllib.Request", "os.startfile", "sys.remote_exec",
}
DENY_PREFIXES = ("socket.", "ctypes.", "ftplib.", "smtplib.", "http.", "imaplib.", "poplib.", "telnetlib.")
# Installed libraries a notebook may import: imported before the hook (their import-time file
# access, e.g. matplotlib's font scan or torchvision's native ops, is not the student's doing).
TRUSTED_ROOTS = {"torch", "torchvision", "numpy", "matplotlib", "tqdm", "seaborn", "course_utils",
                 "livelossplot", "torchinfo", "safetensors", "scipy", "sklearn", "PIL", "skimage", "pandas"}
PATH_EVENTS = {"os.remove", "os.rmdir", "os.rename", "os.truncate", "os.chmod", "os.chown", "os.mkdir",
               "os.utime", "os.chflags", "os.lchflags", "os.listxattr", "os.setxattr", "os.removexattr",
               "shutil.rmtree", "shutil.copyfile", "shutil.copymode", "shutil.copystat", "shutil.move"}


def set_limits(cfg: dict) -> None:
    """Memory (RLIMIT_DATA; RLIMIT_AS only as a loose backstop), CPU seconds, file size, no core."""
    data = cfg["memory_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (data, data))
    vm = data + cfg["address_slack_mb"] * 2**20  # torch reserves GBs of address space it never uses
    resource.setrlimit(resource.RLIMIT_AS, (vm, vm))
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_seconds"], cfg["cpu_seconds"] + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["max_file_mb"] * 2**20,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:  # Linux: die with the grader, even if it is killed
        import ctypes

        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except Exception:
        pass


class Policy:
    """The audit hook: which files, processes and sockets student code may touch."""

    def __init__(self, work: str, read_roots: list[str], deny: list[str], report):
        real = os.path.realpath
        self.work, self.report = real(work), report
        self.read_roots = [real(p) for p in read_roots]
        self.deny = [real(p) for p in deny]
        self.active = False  # switched on right before student code runs

    @staticmethod
    def _under(path: str, roots) -> bool:
        return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)

    def may_open(self, path, flags) -> bool:
        if isinstance(path, int):
            return True
        p = os.path.realpath(os.fsdecode(path))
        if self._under(p, self.deny):
            return False
        if p in ALWAYS_OK or self._under(p, [self.work]):
            return True
        writing = flags is None or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
        return not writing and not os.path.isdir(p) and self._under(p, self.read_roots)

    def __call__(self, event: str, args: tuple) -> None:
        if not self.active:
            return
        bad = (event in DENY_EVENTS or event.startswith(DENY_PREFIXES)
               or (event == "open" and not self.may_open(args[0], args[2]))
               or (event == "mmap.__new__" and args[0] == -1)
               or (event == "import" and args[0] in ("_posixsubprocess", "_ctypes"))
               or (event in PATH_EVENTS and not self._paths_inside(args)))
        if bad:
            what = f"{event} {args[0]!r}"[:200] if args else event
            self.report({"event": "denied", "what": what})
            raise PermissionError(f"The grader's sandbox does not allow {what}.")

    def _paths_inside(self, args) -> bool:
        paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
        return all(self._under(os.path.realpath(os.fsdecode(a)), [self.work]) for a in paths)


def close_known_escapes(policy: Policy) -> None:
    """Python-level doors to native file access and process creation: wrap or remove them.

    (Their C-level originals remain reachable; see the README's list of what is not stopped.)
    """
    import subprocess

    import safetensors.torch
    import torch

    for mod, name in ((subprocess, "_fork_exec"), (subprocess, "_posixsubprocess")):
        if hasattr(mod, name):
            delattr(mod, name)
    sys.modules["_posixsubprocess"] = None

    def checked(fn, write=False):
        def wrapper(*args, **kwargs):
            path = kwargs.get("filename", kwargs.get("f", args[1] if write and len(args) > 1 else
                                                     args[0] if args else None))
            if isinstance(path, (str, bytes, os.PathLike)):
                flags = os.O_RDWR if write or kwargs.get("shared") else os.O_RDONLY
                sys.audit("open", os.fspath(path), None, flags)
            return fn(*args, **kwargs)
        return wrapper

    torch.from_file = checked(torch.from_file)
    torch.UntypedStorage.from_file = staticmethod(checked(torch.UntypedStorage.from_file))
    torch.save = checked(torch.save, write=True)
    safetensors.torch.load_file = checked(safetensors.torch.load_file)
    safetensors.torch.save_file = checked(safetensors.torch.save_file, write=True)
    safetensors.safe_open = checked(safetensors.safe_open)

def preimport(source: str) -> None:
    """Import the trusted libraries the submission imports, before the hook is switched on."""
    import ast
    import importlib

    for node in ast.parse(source).body:
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        for name in names:
            if name.split(".")[0] in TRUSTED_ROOTS:
                try:
                    importlib.import_module(name)
                except Exception:
                    pass


def run_submission(source: str, report) -> dict:
    """Execute the extracted definitions statement by statement; failing statements are reported."""
    import ast

    import torch

    namespace = {"__name__": "submission", "__builtins__": __builtins__, "device": torch.device("cpu")}
    for node in ast.parse(source).body:
        try:
            exec(compile(ast.Module([node], []), "<submission>", "exec"), namespace)
        except BaseException as e:  # an import the grader lacks, a bad decorator...
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
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise TypeError(f"expected str -> torch.Tensor, got {type(key).__name__} -> "
                            f"{type(value).__name__}")
        clean[str(key)] = value.detach().as_subclass(torch.Tensor).cpu().contiguous().clone()
    safetensors.torch.save_file(clean, path)


def task_train(fn, name: str, data: dict, out: str) -> None:
    import torch

    args = (data["x_labeled"].clone(), data["y_labeled"].clone())
    if name != "train_baseline":
        args += (data["x_unlabeled"].clone(),)
    model = fn(*args, seed=0)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{name} returned {type(model).__name__}; expected an nn.Module (new_model()).")
    save_tensors(out, dict(model.state_dict()))


def task_pseudo_label(fn, pl: dict, out: str) -> None:
    from course_utils.homework import new_model

    weights = {k[len("model."):]: v for k, v in pl.items() if k.startswith("model.")}
    outputs = {}
    for soft in (False, True):
        model = new_model()
        model.load_state_dict(weights)
        model.train()  # the function must switch to eval itself
        outputs["soft" if soft else "hard"] = fn(model, pl["x"].clone(), soft=soft, batch_size=PL_BATCH)
    save_tensors(out, outputs)


def run_task(ns: dict, task: str, data: dict, pl: dict, work: str) -> None:
    from course_utils.runtime import seed_everything

    fn = ns.get(task)
    if not callable(fn):
        raise NameError(f"{task} is not defined at the top level of the notebook.")
    out = os.path.join(work, f"out_{task}.safetensors")
    if os.path.lexists(out):
        os.remove(out)
    seed_everything(0)
    if task == "pseudo_label":
        task_pseudo_label(fn, pl, out)
    else:
        task_train(fn, task, data, out)


def main() -> None:
    work, fd = sys.argv[1], int(sys.argv[2])
    with open(os.path.join(work, "config.json")) as f:
        cfg = json.load(f)
    set_limits(cfg)
    pipe = os.fdopen(fd, "w", buffering=1)
    report = lambda msg: pipe.write(json.dumps(msg) + "\n")  # noqa: E731

    import safetensors.torch
    import torch

    import course_utils.homework  # noqa: F401  (imported before the hook, like torch)

    torch.set_num_threads(cfg["threads"])
    data = safetensors.torch.load_file(os.path.join(work, "data.safetensors"))
    pl = safetensors.torch.load_file(os.path.join(work, "pl_input.safetensors"))
    with open(os.path.join(work, "submission.py")) as f:
        source = f.read()
    preimport(source)
    policy = Policy(work, cfg["read_roots"], cfg["deny"], report)
    sys.addaudithook(policy)
    close_known_escapes(policy)
    policy.active = True
    ns = run_submission(source, report)
    report({"event": "ready"})
    for task in cfg["tasks"]:
        report({"event": "start", "task": task, "time": time.time()})
        try:
            run_task(ns, task, data, pl, work)
            report({"event": "done", "task": task, "error": None})
        except BaseException as e:
            tb = traceback.extract_tb(e.__traceback__)
            where = next((f" (line {fr.lineno} of the submission)" for fr in reversed(tb)
                          if fr.filename == "<submission>"), "")
            report({"event": "done", "task": task, "error": describe(e) + where})
    pipe.flush()
    os._exit(0)  # skip atexit handlers and finalizers the student may have registered


if __name__ == "__main__":
    main()
