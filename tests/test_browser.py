"""The course as a student meets it: every notebook run through JupyterLab's own UI in a real browser.

One JupyterLab server (token auth, a random free port, smoke settings) serves a temporary
copy of ``notebooks/`` (so autosave never touches the repository); one headless Chromium
(Debian's ``/usr/bin/chromium``, driven by Playwright; no browser is ever downloaded) opens
each notebook in turn, clicks "Kernel > Restart Kernel and Run All Cells...", confirms the
dialog and waits. Then it checks what the student would see:

- every code cell ran, in order (prompts ``[1]`` .. ``[n]``, none left at ``[*]``);
- no error output (JupyterLab 4 renders a traceback as a ``jp-RenderedText`` with
  ``data-mime-type="application/vnd.jupyter.stderr"``, the same as a warning, so it is told
  apart by IPython's "Traceback (most recent call last)" header), no "Error displaying widget";
- figures are there and decoded (``img`` in output areas, count > 0, ``naturalWidth > 0``),
  local images in markdown load too;
- no "Select Kernel" dialog on opening (the notebook names its kernel).

The notebook is then saved through the UI and the saved file is checked as well (execution
counts, no ``error`` outputs, as many rendered images as image outputs).

Which notebooks: every solution (``tools.catalogue.executed_notebooks()``), plus the student
copies of the first lesson and of the homework. A student copy raises ``NotImplementedError``
by design: there every error must be raised in an exercise cell (tagged ``exercise`` by
``tools.make_student``; JupyterLab runs past it because it is also tagged ``raises-exception``),
or be the one-line ``needs(...)`` NameError of a cell that says what to run first; every other
cell must run cleanly. (nbval runs every student copy; the browser adds the UI on top.)
A screenshot of each notebook is saved under the test's tmp_path.

Without a Chromium the tests are skipped (fail instead when ``CI`` is set); set
``COURSE_CHROMIUM=/path/to/chromium`` to use another build.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from tools.catalogue import NOTEBOOKS as NOTEBOOK_DIR
from tools.catalogue import ROOT, all_notebooks, executed_notebooks, is_student_copy
from tools.make_student import EXERCISE_TAG, RAISES

STUDENT_COPIES = [p for p in all_notebooks() if is_student_copy(p) and p.name.startswith(("01_", "06_"))]
NOTEBOOKS = sorted(executed_notebooks() + STUDENT_COPIES)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RUN_TIMEOUT = 600  # seconds for one notebook's smoke run (about 30-60 s on an idle 2-core CPU)
TRACEBACK = "Traceback (most recent call last)"
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook tab in front
# JupyterLab user settings for the test server: no news/update pop-ups, every cell kept in the DOM.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def find_chromium() -> str | None:
    candidates = [os.environ.get("COURSE_CHROMIUM"), "/usr/bin/chromium",
                  shutil.which("chromium"), shutil.which("chromium-browser")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


CHROMIUM = find_chromium()
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("no Chromium: sudo apt-get install chromium (or set COURSE_CHROMIUM)",
                allow_module_level=True)


def code_sources(nb) -> list[str]:
    """The code cells JupyterLab executes (it skips empty ones), by their source."""
    return [c.source for c in nb.cells if c.cell_type == "code"]


# ---------------------------------------------------------------------------- the server
@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path

    def api(self, method: str, path: str):
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_sessions(self) -> None:
        """Stop every kernel, so the next notebook starts on a quiet machine."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """Terminate the server (it shuts its kernels down), then kill whatever is left of its group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("lab")
    course = base / "course"
    shutil.copytree(NOTEBOOK_DIR, course / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    if (ROOT / "figures").is_dir():  # markdown may show ../figures/*.png
        shutil.copytree(ROOT / "figures", course / "figures")
    for name, value in LAB_SETTINGS.items():
        target = base / "settings" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(value))
    env = dict(os.environ, COURSE_SMOKE="1", JUPYTER_CONFIG_DIR=str(base / "config"),
               JUPYTER_RUNTIME_DIR=str(base / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"))
    env.pop("MPLBACKEND", None)  # conftest's Agg would hide the figures; kernels use the inline backend
    # Chromium renders while the kernel computes: with one torch thread per kernel, OpenMP's
    # spinning threads cannot starve each other on a 2-core machine (10x slower otherwise).
    env["OMP_NUM_THREADS"] = "1"
    port, token = free_port(), secrets.token_hex(16)
    log = base / "lab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={course}", "--ServerApp.open_browser=False", "--ServerApp.allow_root=True",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=course, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}", token, course, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                server.api("GET", "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer in 120 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield server
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.fail("no Chromium found: sudo apt-get install chromium (or set COURSE_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 1000})
        try:
            yield context
        finally:
            context.close()


# ------------------------------------------------------------------------ the UI steps
def open_notebook(page, lab: Lab, rel: str) -> bool:
    """Open ``rel`` in a fresh workspace and wait for an idle kernel; True if a kernel dialog showed."""
    page.goto(f"{lab.url}/lab/tree/{rel}?reset&token={lab.token}")
    page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-Cell", timeout=120_000)
    asked = False
    deadline = time.monotonic() + 120
    while True:
        if page.locator(".jp-Dialog").count():  # "Select Kernel": the notebook names no kernel
            asked = True
            page.click(".jp-Dialog .jp-mod-accept")
        name = page.locator(f"{PANEL} .jp-Toolbar-kernelName").inner_text()
        status = page.get_attribute(f"{PANEL} .jp-Notebook-ExecutionIndicator", "data-status")
        if "Python" in name and status == "idle":
            return asked
        assert time.monotonic() < deadline, f"the kernel did not start (kernel {name!r}, status {status!r})"
        time.sleep(0.5)


def menu(page, top: str, command: str) -> None:
    """Click a main-menu entry, found by its JupyterLab command id."""
    page.click(f".lm-MenuBar-item:has-text('{top}')")
    page.click(f".lm-Menu-item[data-command='{command}']")


def prompts(page) -> list[str]:
    return page.eval_on_selector_all(f"{PANEL} .jp-CodeCell .jp-InputPrompt",
                                     "els => els.map(e => e.innerText)")


def restart_and_run_all(page, timeout: float = RUN_TIMEOUT) -> float:
    """Kernel > Restart Kernel and Run All Cells..., confirm, wait until nothing runs; return seconds."""
    start = time.monotonic()
    menu(page, "Kernel", "runmenu:restart-and-run-all")
    page.click(".jp-Dialog .jp-mod-accept")  # "Restart Kernel?" -> Restart
    quiet = 0
    while quiet < 3:  # three quiet polls in a row: idle, nothing queued, the run has started
        time.sleep(1)
        p = prompts(page)
        status = page.get_attribute(f"{PANEL} .jp-Notebook-ExecutionIndicator", "data-status")
        started = bool(p) and p[0].strip() == "[1]:"
        quiet = quiet + 1 if status == "idle" and started and not any("*" in x for x in p) else 0
        assert time.monotonic() - start < timeout, f"still running after {timeout} s: prompts {p}"
    return time.monotonic() - start


def look(page) -> dict:
    """What the student sees: prompts, error texts, widget errors, figures, broken markdown images."""
    outputs = f"{PANEL} .jp-OutputArea-output"
    return {
        "prompts": prompts(page),
        "errors": page.eval_on_selector_all(
            f"{outputs}[data-mime-type='application/vnd.jupyter.stderr']",
            f"els => els.map(e => e.innerText).filter(t => t.includes('{TRACEBACK}'))"),
        "widget_errors": page.eval_on_selector_all(
            outputs, "els => els.map(e => e.innerText).filter(t => t.includes('Error displaying widget'))"),
        "images": page.eval_on_selector_all(
            f"{outputs}.jp-RenderedImage img", "els => els.map(e => e.complete ? e.naturalWidth : 0)"),
        "broken_markdown_images": page.eval_on_selector_all(
            f"{PANEL} .jp-MarkdownOutput img",
            "els => els.filter(e => !/^https?:/.test(e.getAttribute('src') || '')"
            " && !(e.complete && e.naturalWidth > 0)).map(e => e.getAttribute('src'))"),
    }


def save(page, path: Path) -> None:
    """File > Save Notebook, then wait until the file on disk is newer."""
    before = path.stat().st_mtime_ns
    menu(page, "File", "docmanager:save")
    deadline = time.monotonic() + 60
    while path.stat().st_mtime_ns == before:
        assert time.monotonic() < deadline, "File > Save Notebook did not write the file"
        time.sleep(0.5)
    time.sleep(0.5)  # let the atomic write finish


def image_outputs(nb) -> int:
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if any(m in o.get("data", {}) for m in ("image/png", "image/jpeg", "image/gif")))


# -------------------------------------------------------------------------------- the test
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(NOTEBOOK_DIR)) for p in NOTEBOOKS])
def test_runs_in_jupyterlab(path, lab, browser, tmp_path):
    rel = path.relative_to(ROOT).as_posix()
    copy = lab.root / rel
    sources = code_sources(nbformat.read(copy, as_version=4))
    page = browser.new_page()
    try:
        asked = open_notebook(page, lab, rel)
        seconds = restart_and_run_all(page)
        seen = look(page)
        if seen["images"]:  # show the first figure in the screenshot
            page.locator(f"{PANEL} .jp-RenderedImage img").first.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / f"{path.stem}.png"))
        save(page, copy)
    finally:
        page.close()
        lab.shutdown_sessions()
    print(f"\nbrowser run of {rel}: {seconds:.1f} s ({len(sources)} code cells, "
          f"{len(seen['images'])} figures); screenshot {tmp_path / (path.stem + '.png')}")
    saved = nbformat.read(copy, as_version=4)
    saved_code = [c for c in saved.cells if c.cell_type == "code"]
    assert [c.source for c in saved_code] == sources, "the saved notebook's code differs from the original"

    assert not asked, ("JupyterLab asked the student to select a kernel: the notebook lacks "
                       "metadata.kernelspec ({'name': 'python3', ...})")
    assert not seen["widget_errors"], f"a widget failed to display: {seen['widget_errors'][0][:300]}"
    assert not seen["broken_markdown_images"], f"images in markdown: {seen['broken_markdown_images']}"
    assert all(w > 0 for w in seen["images"]), f"some figures did not decode: widths {seen['images']}"
    assert len(seen["images"]) == image_outputs(saved), "not every image output was rendered"
    errors = [o for c in saved_code for o in c.get("outputs", []) if o.output_type == "error"]
    ran = [c.execution_count for c in saved_code if c.source.strip()]
    shown = [p.strip() for p, s in zip(seen["prompts"], sources) if s.strip()]

    if is_student_copy(path):
        assert any(e.ename == "NotImplementedError" for e in errors), "no exercise stub raised"
        for c in saved_code:
            tags = c.metadata.get("tags", [])
            for o in (o for o in c.get("outputs", []) if o.output_type == "error"):
                said_what_to_run = (RAISES in tags and c.source.startswith("needs(")
                                    and o.ename == "NameError" and "not defined yet:" in o.evalue)
                assert EXERCISE_TAG in tags or said_what_to_run, \
                    f"an error outside the exercises: {o.ename}: {o.evalue}\n{c.source[:200]}"
        assert ran == list(range(1, len(ran) + 1)), f"not every cell ran in order: {ran}"
        assert shown == [f"[{i}]:" for i in range(1, len(shown) + 1)], shown
        return

    assert not errors, f"error output: {errors[0].ename}: {errors[0].evalue}"
    assert not seen["errors"], f"a traceback is shown:\n{seen['errors'][0][:1500]}"
    assert shown == [f"[{i}]:" for i in range(1, len(shown) + 1)], f"not every cell ran in order: {shown}"
    assert ran == list(range(1, len(ran) + 1)), f"saved execution counts: {ran}"
    assert seen["images"], f"{path.name} shows no figure"
