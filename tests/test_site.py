"""The course website as a reader meets it: built offline, then read in a real browser.

The module builds the site once with ``docs/build.py`` (Sphinx + myst-nb, warnings are errors,
notebooks are never executed) into a temporary folder, serves it on 127.0.0.1 and opens every
page in headless Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright, as in
``tests/test_browser.py``). Every request to a host other than the local server is blocked
and recorded: a page that needs the network (a CDN, a web font, a remote image) fails.

Each page must show every figure decoded (``naturalWidth > 0``) and, where it has formulas,
every one typeset by the bundled MathJax with no raw ``$...$`` or ``\\(...\\)`` left. Lesson
pages must offer the Colab link and the ``.ipynb`` download; the sidebar lists the pages in
lesson order; search finds a lesson; no solution is published. One screenshot per page type
is saved in the test's temporary folder (or ``COURSE_SCREENSHOTS``) and its path printed
(``pytest -s``).

Without a Chromium the browser tests are skipped (fail instead when ``CI`` is set); set
``COURSE_CHROMIUM=/path/to/chromium`` to use another build.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(ROOT.glob("notebooks/0[1-6]_*.ipynb"))
GUIDES = ["setup", "grading"]
FIGURES = "figures/README"  # the index of figures/, with a download link to each PNG and SVG
PAGES = ["index", *GUIDES, *(f"notebooks/{p.stem}" for p in LESSONS), FIGURES]
SIDEBAR = ["index", "setup", *(f"notebooks/{p.stem}" for p in LESSONS), "grading", FIGURES]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BUILD_TIMEOUT = 600


def find_chromium() -> str | None:
    candidates = [os.environ.get("COURSE_CHROMIUM"), "/usr/bin/chromium",
                  shutil.which("chromium"), shutil.which("chromium-browser")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


CHROMIUM = find_chromium()


def repository() -> str:
    """``owner/name`` of the repository, from ``pyproject.toml`` (as the site build reads it)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["urls"]["Repository"].removeprefix("https://github.com/").strip("/")


# ------------------------------------------------------------------------- build and serve
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built from the committed notebooks with the README's command."""
    base = tmp_path_factory.mktemp("site")
    start = time.monotonic()
    run = subprocess.run([sys.executable, str(ROOT / "docs" / "build.py"), "--out", str(base / "html"),
                          "--src", str(base / "src")], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert run.returncode == 0, f"the site build failed:\n{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    print(f"\nsite build: {time.monotonic() - start:.1f} s; {run.stdout.strip().splitlines()[-1]}")
    return base / "html"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output readable
        pass


@pytest.fixture(scope="module")
def server(site):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=site))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("no Chromium found: sudo apt-get install chromium (or set COURSE_CHROMIUM)")
        pytest.skip("no Chromium: sudo apt-get install chromium (or set COURSE_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where the screenshots go: ``COURSE_SCREENSHOTS`` if set (kept), else the test's tmp folder."""
    if os.environ.get("COURSE_SCREENSHOTS"):
        folder = Path(os.environ["COURSE_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()
        return folder
    return tmp_path_factory.mktemp("site-screenshots")


class Visit:
    """One page opened in a fresh browser context that may reach only the local server."""

    def __init__(self, browser, server: str, path: str):
        self.server, self.outside, self.failed = server, [], []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url} ({r.status})"))
        self.page.goto(f"{server}/{path}", wait_until="load")

    def _route(self, route) -> None:
        if route.request.url.startswith(self.server + "/"):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser, server):
    opened = []

    def open_page(path: str) -> Visit:
        opened.append(Visit(browser, server, path))
        return opened[-1]

    yield open_page
    for v in opened:
        v.close()


# ---------------------------------------------------------------------- what a page shows
WAIT_FOR_MATH = "() => window.MathJax && MathJax.startup && MathJax.startup.promise.then(() => true)"
LOOK = """() => {
  const main = document.querySelector('main') || document.body;
  const imgs = [...main.querySelectorAll('img')].map(e => ({src: e.getAttribute('src'),
      ok: e.complete && e.naturalWidth > 0, output: !!e.closest('.cell_output')}));
  const math = [...main.querySelectorAll('.math')];
  const clone = main.cloneNode(true);
  clone.querySelectorAll('pre, code, .highlight, mjx-container, script, .cell_output')
       .forEach(e => e.remove());
  return {imgs, math: math.length, typeset: math.filter(e => e.querySelector('mjx-container')).length,
          mjx: main.querySelectorAll('mjx-container').length,
          mjxErrors: window.MathJax ? [...MathJax.startup.document.math]
              .filter(m => m.root.toString().includes('merror')).map(m => m.math) : [],
          text: clone.innerText};
}"""
RAW_MATH = re.compile(r"\$[^$\n]{1,200}\$|\\\(|\\\[")


def image_outputs(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if any(m in o.get("data", {}) for m in ("image/png", "image/jpeg", "image/svg+xml")))


def has_math(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    return any(re.search(r"\$[^$\n]+\$", c.source) for c in nb.cells if c.cell_type == "markdown")


def look(v: Visit) -> dict:
    """Wait for MathJax (when the page loads it), then report images, math and the prose text."""
    if v.page.evaluate("() => !!window.MathJax"):
        v.page.wait_for_function(WAIT_FOR_MATH, timeout=60_000)
    return v.page.evaluate(LOOK)


def check_page(v: Visit, path: str, seen: dict) -> None:
    assert not v.outside, f"{path} asked another host: {v.outside[:5]}"
    assert not v.failed, f"{path}: failed requests {v.failed[:5]}"
    broken = [i["src"] for i in seen["imgs"] if not i["ok"]]
    assert not broken, f"{path}: images not shown: {broken}"
    assert seen["typeset"] == seen["math"], f"{path}: {seen['math'] - seen['typeset']} formulas not typeset"
    assert not seen["mjxErrors"], f"{path}: MathJax could not typeset {seen['mjxErrors']}"
    raw = RAW_MATH.findall(seen["text"])
    assert not raw, f"{path}: raw TeX left in the text: {raw[:5]}"


# ------------------------------------------------------------------------------- the tests
def code_sources(path: Path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_solutions_are_not_published(site):
    """The site holds the student copies (their code cells unchanged) and nothing from solutions/."""
    files = [p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()]
    assert not [f for f in files if "solution" in f.lower()], "a solution file is in the site"
    assert sorted(p.name for p in (site / "notebooks").glob("*.html")) == sorted(
        f"{p.stem}.html" for p in LESSONS)
    for lesson in LESSONS:
        published = site / "_sources" / "notebooks" / lesson.name
        assert code_sources(published) == code_sources(lesson), f"{lesson.name} is not the student copy"
        solution = ROOT / "notebooks" / "solutions" / f"{lesson.stem}_solution.ipynb"
        if solution.is_file() and "BEGIN SOLUTION" in "".join(code_sources(solution)):  # answers removed
            assert code_sources(solution) != code_sources(lesson), f"{lesson.name} holds the solutions"


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_offline(path, visit, shots):
    v = visit(f"{path}.html")
    seen = look(v)
    check_page(v, path, seen)
    assert v.page.locator("nav.bd-docs-nav a.reference.internal").count() == len(SIDEBAR)
    if path.startswith("notebooks/"):
        notebook = ROOT / f"{path}.ipynb"
        figures = [i for i in seen["imgs"] if i["output"]]
        assert len(figures) == image_outputs(notebook), f"{path}: not every figure output is on the page"
        if has_math(notebook):
            assert seen["mjx"] > 0, f"{path}: the notebook has formulas but none was typeset"
        colab = f"https://colab.research.google.com/github/{repository()}/blob/main/{path}.ipynb"
        assert v.page.locator(f"a[href='{colab}']").count() >= 1, f"{path}: no Colab link"
        download = v.page.locator(f"a[href$='_sources/{path}.ipynb']")
        assert download.count() == 1, f"{path}: no .ipynb download link"
        got = v.page.evaluate("url => fetch(url).then(r => r.json())", download.get_attribute("href"))
        assert got["cells"] and got["nbformat"] == 4, "the downloaded file is not the notebook"
    if path == "index":  # the README's showcase of the course's figures
        shown = {Path(i["src"]).name for i in seen["imgs"] if i["ok"]}
        assert len(shown & {p.name for p in (ROOT / "figures").glob("*.png")}) >= 3, shown
    kind = page_type(path)
    if kind and not (shots / f"{kind}.png").exists():
        if v.page.locator("main .cell_output img").count():  # a lesson: show its first figure
            v.page.locator("main .cell_output img").first.scroll_into_view_if_needed()
        v.page.screenshot(path=str(shots / f"{kind}.png"))
        print(f"\nscreenshot of a {kind} page ({path}): {shots / f'{kind}.png'}")


def page_type(path: str) -> str | None:
    """Screenshots: one per kind of page."""
    if path == "index":
        return "home"
    if path in GUIDES:
        return "guide"
    if path.startswith("notebooks/06_"):
        return "homework"
    if path == FIGURES:
        return "figures"
    return "lesson" if path.startswith("notebooks/") else None


def test_sidebar_lists_the_pages_in_lesson_order(visit, server):
    v = visit("index.html")
    hrefs = v.page.eval_on_selector_all("nav.bd-docs-nav a.reference.internal", "els => els.map(e => e.href)")
    assert [h.split("#")[0] for h in hrefs] == [f"{server}/{p}.html" for p in SIDEBAR]


def test_search_finds_a_lesson(visit, shots):
    v = visit("search.html?q=broadcasting")
    v.page.wait_for_function("() => /found/.test(document.querySelector('#search-results')?.innerText)",
                             timeout=30_000)
    hits = v.page.eval_on_selector_all("#search-results ul.search li a", "els => els.map(e => e.href)")
    assert any("notebooks/01_tensors.html" in h for h in hits), hits
    assert not v.outside, f"search asked another host: {v.outside[:5]}"
    v.page.screenshot(path=str(shots / "search.png"))
    print(f"\nscreenshot of the search page: {shots / 'search.png'}")
