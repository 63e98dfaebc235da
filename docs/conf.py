"""Sphinx configuration for the sklearn_iic documentation.

Build (from the repository root; warnings are errors)::

    SKLEARN_IIC_EXAMPLES_FAST=1 python -m sphinx -W --keep-going -b html docs docs/_build/html

``SKLEARN_IIC_EXAMPLES_FAST=1`` makes the gallery examples that compare
settings run with fewer samples and epochs (the quickstart only shortens its
t-SNE embedding; the images example is unaffected); leave it unset for the
full-size figures.
"""

import os
import sys
from pathlib import Path

# The gallery examples are small: one OpenMP thread is fastest for them and
# keeps the build from oversubscribing a busy machine. Set before numpy,
# scikit-learn or torch are imported; an explicit setting by the builder wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Import the package from this checkout even when it is not installed, and
# make the local Sphinx helpers (docs/sphinxext) importable.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "sphinxext"))

import sklearn_iic  # noqa: E402

# -- Project information -----------------------------------------------------

project = "sklearn_iic"
author = "The sklearn_iic developers"
copyright = "the sklearn_iic developers, BSD 3-Clause licence"
version = sklearn_iic.__version__
release = sklearn_iic.__version__

# -- General configuration ---------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

templates_path = ["_templates"]
# docs/benchmarks/*.md are pulled into benchmarks.rst with ``.. include::``;
# they are not pages of their own.
exclude_patterns = [
    "_build",
    "benchmarks/*.md",
    "sphinxext",
    "Thumbs.db",
    ".DS_Store",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
default_role = "literal"

# MyST: tables and maths in the benchmark pages written by benchmarks/*.py.
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
# Headings in the included benchmark pages nest under the section that
# includes them whatever their level; MyST's note that a page "starts at H2"
# is then irrelevant, and generated files should not break a -W build over it.
suppress_warnings = ["myst.header"]

# -- autodoc / autosummary / numpydoc ------------------------------------------

autosummary_generate = True
autodoc_typehints = "none"

# Method tables come from the autosummary class templates, not from numpydoc,
# so that torch.nn.Module's many methods are not listed under MLP/ConvNet.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- sphinx-gallery ------------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # Only examples/plot_*.py are gallery examples; other scripts in
    # examples/ (demo_digits.py) are neither shown nor run.
    "filename_pattern": r"plot_",
    "ignore_pattern": r"^(?!plot_)",
    "within_subsection_order": "gallery_order.sort_key",
    "doc_module": ("sklearn_iic",),
    "backreferences_dir": "gen_modules/backreferences",
    "reference_url": {"sklearn_iic": None},
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "show_memory": False,
    "capture_repr": ("_repr_html_", "__repr__"),
}

# -- HTML output ---------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"sklearn_iic {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "header_links_before_dropdown": 6,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
}
html_sidebars = {"index": [], "benchmarks": []}
html_static_path = []
html_show_sourcelink = True
