"""Sphinx configuration: the tutorial, how-tos and design pages in Markdown (MyST),
the API reference from the docstrings (Google style, through napoleon)."""

from __future__ import annotations

import trio_mcp_sessions

project = "trio-mcp-sessions"
author = "trio-mcp-sessions contributors"
release = trio_mcp_sessions.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Offline builds (CI, sandboxes) must pass with -W: no inventories are fetched;
# references to trio and Hypercorn stay plain text.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
nitpicky = False

html_theme = "alabaster"
html_title = f"trio-mcp-sessions {release}"
