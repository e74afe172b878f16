"""Sphinx configuration for the nursery_io documentation.

Build: ``sphinx-build -W -q -b html docs docs/_build/html`` (CI runs exactly this; warnings
are errors). The build needs no network: no intersphinx, no remote images.
"""

import nursery_io

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
exclude_patterns = ["_build", "snippets"]
