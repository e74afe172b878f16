"""Sphinx configuration for the nursery_io documentation.

Build: ``sphinx-build -W -q -b html docs docs/_build/html`` (CI runs exactly this; warnings
are errors). The build needs no network: no intersphinx, no remote images.
"""

import json
import sys
from pathlib import Path
from typing import Any

import nursery_io

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

project = "nursery_io"
author = "nursery_io developers"
copyright = "2026, nursery_io developers"
release = nursery_io.__version__
version = release

extensions = ["sphinx.ext.autodoc"]

# The API reference is generated from the docstrings; keep members in source order, which
# is the order their authors chose to explain them in.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# Library modules spell forward references as strings; don't try to resolve them for links.
nitpicky = False

default_role = "py:obj"
highlight_language = "python3"
pygments_style = "sphinx"

html_theme = "alabaster"
html_title = f"nursery_io {release}"
html_theme_options = {
    "description": "Trio-style structured concurrency with epoll for sockets and io_uring "
    "for files",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_static_path: list[str] = []

# docs/snippets/ holds the runnable examples the pages include; they are not pages.
# docs/_generated/ holds text written at build time (see below) for pages to include.
exclude_patterns = ["_build", "snippets", "_generated"]


def write_benchmark_tables(app: Any) -> None:
    """Turn benchmarks/results/latest.json into reST tables for benchmarks.rst to include.

    Written on every build (into docs/_generated/, which git ignores), so the page always
    shows the results the repository holds, with the same ratio convention and formatting
    as ``python -m benchmarks.run`` prints (the code is shared: benchmarks/harness.py).
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.harness import render_rst

    results = ROOT / "benchmarks" / "results" / "latest.json"
    report = json.loads(results.read_text()) if results.exists() else None
    generated = DOCS / "_generated"
    generated.mkdir(exist_ok=True)
    target = generated / "benchmark_results.rst"
    text = render_rst(report)
    # Rewrite only on change: Sphinx would otherwise see a new file and rebuild the page.
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


def setup(app: Any) -> None:
    app.connect("builder-inited", write_benchmark_tables)
