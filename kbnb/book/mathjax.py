"""Serve MathJax from the built book itself, so formulas render without a network.

A Sphinx extension, listed in ``_config.yml`` (``sphinx.extra_extensions``). MathJax 3.2.2
comes from the PyPI package ``sphinx-mathjax-offline`` (a dependency in ``pyproject.toml``),
whose folder ``static/mathjax`` holds MathJax's ``es5`` build. This extension adds that
package's ``static`` folder to ``html_static_path``, so every build copies it to
``_build/html/_static/mathjax``, and ``_config.yml`` sets ``mathjax_path`` to a file in it
(``mathjax/tex-mml-chtml.js``, the component Sphinx loads from a CDN by default), which
Sphinx then loads from ``_static``. Sphinx's own MathJax 3 settings (``mathjax3_config``,
the ``\\(...\\)`` delimiters of MyST's dollar math) apply unchanged.

Only the package's files are used, not its own Sphinx hook (which hard-codes
``tex-chtml.js`` and copies after the build).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE = "sphinx-mathjax-offline"  # its import name has hyphens, as on PyPI


def static_dir() -> Path:
    """The installed package's ``static`` folder (it holds ``mathjax/``)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"MathJax for the book comes from the package {PACKAGE}, which is not "
                           f"installed: pip install -e . (or pip install {PACKAGE})")
    return Path(list(spec.submodule_search_locations)[0]) / "static"


def is_local(path: str) -> bool:
    """Whether ``mathjax_path`` names a file under ``_static`` (no URL, no CDN)."""
    return "://" not in path and not path.startswith("//")


def vendored_file(mathjax_path: str) -> Path:
    """Where the file ``mathjax_path`` (relative to ``_static``) is copied from."""
    return static_dir() / mathjax_path.split("?", 1)[0]


def _add_static(app, config) -> None:
    if not is_local(config.mathjax_path):
        return  # a CDN or other URL was chosen on purpose: nothing to copy
    src = vendored_file(config.mathjax_path)
    if not src.is_file():
        raise RuntimeError(f"mathjax_path {config.mathjax_path!r}: no such file in {static_dir()}")
    config.html_static_path = [*config.html_static_path, str(static_dir())]


def setup(app):
    app.connect("config-inited", _add_static)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
