"""Sphinx configuration of the course website (built by ``python docs/build.py``, never by hand).

The engine is Sphinx with myst-nb (the stack Jupyter Book 1 is made of), configured here so
that the build needs no network: notebooks are rendered from their saved outputs and never
executed, MathJax is the copy that ``docs/build.py`` takes from the npm registry, and the theme
ships its own fonts and icons. ``docs/build.py`` stages the pages into a source folder and
passes the repository's address (from ``pyproject.toml``) in ``COURSE_REPOSITORY_URL``.
"""

from __future__ import annotations

import os

project = "Deep learning with PyTorch, hands-on"
author = "the course authors"
copyright = "the course authors, MIT licence"  # noqa: A001 (Sphinx's name)

extensions = ["myst_nb"]
myst_enable_extensions = ["dollarmath", "amsmath"]
# Jupyter renders `$$...$$` inside a paragraph (no blank line around it) as display math; so must we.
myst_dmath_double_inline = True

# Never execute a notebook: the site shows the outputs committed with it.
nb_execution_mode = "off"
nb_merge_streams = True
# The notebooks carry no widget state (tests/test_notebooks.py); without this myst-nb would add
# require.js and the widget manager from a CDN whenever a page had some.
nb_ipywidgets_js: dict = {}

exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["myst.header"]  # a notebook's first heading is an h1 followed by h3s

# Math: the bundled MathJax 3 (docs/build.py copies it into _static/mathjax), never a CDN.
mathjax_path = "mathjax/tex-chtml.js"

html_theme = "sphinx_book_theme"
html_title = "PyTorch, hands-on"
html_static_path = ["_static"]
html_copy_source = True  # the download button hands out the .ipynb itself
html_last_updated_fmt = None
html_theme_options = {
    "repository_url": os.environ.get("COURSE_REPOSITORY_URL", ""),
    "repository_branch": "main",
    "path_to_docs": "",  # staged pages keep their repository paths (notebooks/NN_name.ipynb)
    "use_download_button": True,
    "use_repository_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com", "notebook_interface": "jupyterlab"},
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "home_page_in_toc": True,
    # No analytics, no version switcher, no external icons: nothing that reaches another host.
    "analytics": {},
}
