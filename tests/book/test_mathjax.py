"""The book loads MathJax from its own build (_static/mathjax), not a CDN, so formulas
render without a network (kbnb/book/mathjax.py). No book build here."""
from types import SimpleNamespace

import pytest
import yaml

from kbnb.book import mathjax


def _sphinx(repo_root) -> dict:
    return yaml.safe_load((repo_root / "_config.yml").read_text())["sphinx"]


def test_configured_mathjax_is_local_and_vendored(repo_root):
    sphinx = _sphinx(repo_root)
    assert "kbnb.book.mathjax" in sphinx["extra_extensions"]
    path = sphinx["config"]["mathjax_path"]
    assert mathjax.is_local(path) and "cdn" not in path, path
    src = mathjax.vendored_file(path)
    assert src.is_file() and src.stat().st_size > 100_000, src  # the whole MathJax component
    # the build copies static_dir() into _static, so _static/<mathjax_path> is that file
    assert src == mathjax.static_dir() / path
    # MathJax 3, as Sphinx's mathjax3_config (and MyST's \(...\) delimiters) expect
    assert (mathjax.static_dir() / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()


def test_the_extension_adds_the_vendored_folder_to_the_static_path(repo_root):
    path = _sphinx(repo_root)["config"]["mathjax_path"]
    config = SimpleNamespace(mathjax_path=path, html_static_path=["book/_static"])
    mathjax._add_static(None, config)
    assert config.html_static_path == ["book/_static", str(mathjax.static_dir())]

    cdn = SimpleNamespace(mathjax_path="https://cdn.example/tex-chtml.js", html_static_path=[])
    mathjax._add_static(None, cdn)
    assert cdn.html_static_path == []  # a URL chosen on purpose: nothing to copy

    with pytest.raises(RuntimeError, match="no such file"):
        mathjax._add_static(None, SimpleNamespace(mathjax_path="mathjax/none.js", html_static_path=[]))
