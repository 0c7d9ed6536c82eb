"""Build the course website from the committed notebooks, offline: ``python docs/build.py``.

What it does, in order:

1. stages the pages in ``build/site-src`` (``--src``): the student copy of every lesson and of
   the homework (``notebooks/0[1-6]_*.ipynb``; ``notebooks/solutions/`` is never read), a home
   page and two guides cut from the README (its intro and lesson table, "Set up" with "Data",
   and "Grading the homework"), and ``figures/`` when it exists (its index is the last page).
   README links to files the site does not hold are pointed at the repository on GitHub;
2. copies MathJax 3 from ``docs/node_modules`` (``npm ci --prefix docs`` fetches it once from
   the npm registry, as pinned by ``docs/package-lock.json``; this script runs it when the copy
   is missing) into the site, so formulas render with no network;
3. runs ``sphinx-build`` with warnings as errors (a broken page or link fails the build); the
   notebooks are rendered from their saved outputs and never executed.

The site is written to ``build/site`` (``--out``); open ``build/site/index.html``, or serve it
with ``python -m http.server -d build/site`` (search needs a server in some browsers).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MATHJAX = DOCS / "node_modules" / "mathjax" / "es5"
# The parts of MathJax's es5 build that tex-chtml.js loads: itself, TeX extensions it loads on
# demand (\boldsymbol, \require{...}), the CommonHTML fonts and the menu with its a11y parts.
# The Colab badge the notebooks show, and the site's own copy of it (no image from another host).
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_BADGE = "../_static/colab-badge.svg"  # relative to notebooks/
MATHJAX_PARTS = ["tex-chtml.js", "input/tex/extensions", "output/chtml/fonts/woff-v2", "ui", "a11y",
                 "adaptors", "sre"]
# Site page -> (title, README sections it is cut from).
README_PAGES = {
    "setup": ("Set up", ["Set up", "Data"]),
    "grading": ("Grading the homework", ["Grading the homework (instructors)"]),
}


def repository_url() -> str:
    """The repository's public address: ``[project.urls] Repository`` in ``pyproject.toml``."""
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("urls", {})
    if "Repository" not in urls:
        raise SystemExit("pyproject.toml has no [project.urls] Repository: the site needs the address")
    return urls["Repository"].rstrip("/")


def student_notebooks() -> list[Path]:
    """The notebooks the site publishes, in lesson order: students' copies, never solutions."""
    found = sorted(ROOT.glob("notebooks/0[1-6]_*.ipynb"))
    if not found:
        raise SystemExit(f"no notebooks/0[1-6]_*.ipynb under {ROOT}")
    return found


def readme_section(readme: str, title: str) -> str:
    """The README's ``## title`` section, up to the next ``## ``."""
    hits = [p for p in re.split(r"(?m)^(?=## )", readme) if p.startswith(f"## {title}\n")]
    if len(hits) != 1:
        raise SystemExit(f"README.md has {len(hits)} sections titled '## {title}', expected 1")
    return hits[0].rstrip() + "\n"


def guide_page(readme: str, title: str, sections: list[str]) -> str:
    """A page cut from README sections: the first one's headings go up a level (its ``## `` becomes
    the page title ``# title``); the sections after it stay ``## `` sections under that title."""
    first = readme_section(readme, sections[0])
    first = re.sub(r"(?m)^#(#+ )", r"\1", first.split("\n", 1)[1])
    rest = [readme_section(readme, s) for s in sections[1:]]
    return "\n".join([f"# {title}\n", first, *rest])


def readme_intro(readme: str) -> str:
    """Everything before the README's first ``## `` section: the title, the pitch, the lessons."""
    return re.split(r"(?m)^## ", readme, maxsplit=1)[0].rstrip() + "\n"


def point_links_home(markdown: str, src: Path, repo: str) -> str:
    """Relative links and images whose target the site lacks -> the file on GitHub."""

    def fix(m: re.Match) -> str:
        target = m.group(2)
        if re.match(r"[a-z]+:|#|/", target):
            return m.group(0)
        path = target.split("#")[0]
        if (src / path).exists():
            return m.group(0)
        kind = "tree" if (ROOT / path).is_dir() else "blob"
        return f"{m.group(1)}({repo}/{kind}/main/{target})"

    return re.sub(r"(!?\[[^\]]*\])\(([^)\s]+)\)", fix, markdown)


def title_page(readme: str, pages: list[Path]) -> str:
    """The home page: the README's intro, then the table of contents that makes the sidebar."""
    guides = list(README_PAGES)
    figures = ["figures/README"] if (ROOT / "figures" / "README.md").is_file() else []
    toc = "\n".join([*guides[:1], *(f"notebooks/{p.stem}" for p in pages), *guides[1:], *figures])
    return (readme_intro(readme) + "\n```{toctree}\n:hidden:\n:maxdepth: 1\n\n" + toc + "\n```\n")


def stage(src: Path, repo: str) -> list[Path]:
    """Write the site's source pages into ``src`` (emptied first); return the notebooks staged."""
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    shutil.copy(DOCS / "conf.py", src / "conf.py")
    shutil.copytree(DOCS / "_static", src / "_static")
    pages = student_notebooks()
    for nb in pages:
        text = nb.read_text().replace(COLAB_BADGE, LOCAL_BADGE)
        (src / "notebooks" / nb.name).write_text(text)
    if (ROOT / "figures").is_dir():
        shutil.copytree(ROOT / "figures", src / "figures")
    readme = (ROOT / "README.md").read_text()
    for name, (title, sections) in README_PAGES.items():
        page = guide_page(readme, title, sections)
        (src / f"{name}.md").write_text(point_links_home(page, src, repo))
    (src / "index.md").write_text(point_links_home(title_page(readme, pages), src, repo))
    return pages


def copy_mathjax(static: Path) -> None:
    """Put the pinned MathJax into ``static/mathjax``, fetching it with npm if it is missing."""
    if not (MATHJAX / "tex-chtml.js").is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("MathJax is missing and npm is not installed: install Node.js and npm, then "
                             "run `npm ci --prefix docs` once (it needs the npm registry)")
        print("fetching MathJax once: npm ci --prefix docs", flush=True)
        subprocess.run([npm, "ci", "--prefix", str(DOCS), "--no-audit", "--no-fund"], check=True)
    for part in MATHJAX_PARTS:
        source, dest = MATHJAX / part, static / "mathjax" / part
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, dest)


def build(out: Path, src: Path, jobs: str = "auto") -> float:
    """Stage, copy MathJax, run sphinx-build into ``out``; return the seconds it took."""
    start = time.monotonic()
    repo = repository_url()
    stage(src, repo)
    copy_mathjax(src / "_static")
    if out.exists():
        shutil.rmtree(out)
    doctrees = src.parent / (src.name + "-doctrees")
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-j", jobs,
           "-d", str(doctrees), str(src), str(out)]
    env = {**os.environ, "COURSE_REPOSITORY_URL": repo}
    run = subprocess.run(cmd, env=env)
    if run.returncode != 0:
        raise SystemExit(f"sphinx-build failed (exit {run.returncode}): see the warnings above")
    return time.monotonic() - start


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="where the site goes")
    parser.add_argument("--src", type=Path, default=ROOT / "build" / "site-src", help="staging folder")
    parser.add_argument("-j", "--jobs", default="auto", help="sphinx-build parallel jobs")
    args = parser.parse_args(argv)
    seconds = build(args.out.resolve(), args.src.resolve(), args.jobs)
    print(f"site built in {seconds:.1f} s: {args.out / 'index.html'} ({folder_mb(args.out):.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
