"""Sphinx settings of the reading version (python -m mdmlib.tools.book copies this folder)."""
project = "Masked diffusion models and inaccurate categorical sampling"
author = "the mdmlib authors"
extensions = ["myst_nb", "sphinx-mathjax-offline"]
nb_execution_mode = "off"  # the committed outputs are the book's content
nb_ipywidgets_js = {}  # progress bars are removed; no widget scripts from a CDN
myst_enable_extensions = ["dollarmath", "amsmath"]
html_theme = "sphinx_book_theme"
html_theme_options = {"show_toc_level": 2}
html_context = {"default_mode": "light"}
html_favicon = "favicon.svg"
html_title = "Executable companion to arXiv 2409.02908"
exclude_patterns = ["_build"]
