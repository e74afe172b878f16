"""Sphinx configuration for the nursery_io documentation."""

project = "nursery_io"
author = "nursery_io developers"
copyright = "2026, nursery_io developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
