"""The book runner: dependency order, run folders passed on, no stale page published."""
import json

import nbformat
import pytest

from kbnb import book


def _notebook(path, params_src, body_src):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(params_src, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(body_src)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


WRITE = """
import json, pathlib, time
d = pathlib.Path(output_dir) / ("NAME-" + tag)
d.mkdir(parents=True, exist_ok=True)
(d / "metrics.json").write_text(json.dumps({"tag": tag, "up": UP}))
"""


@pytest.fixture
def root(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: x\n    chapters:\n"
        "      - file: book/chapters/b\n      - file: book/chapters/a\n"
        "      - file: book/chapters/c\n")
    _notebook(tmp_path / "notebooks" / "c.ipynb", 'tag = "c"\noutput_dir = "runs"',
              WRITE.replace("NAME", "c").replace("UP", "None"))
    _notebook(tmp_path / "notebooks" / "a.ipynb", 'tag = "one"\noutput_dir = "runs"',
              WRITE.replace("NAME", "a").replace("UP", "None"))
    _notebook(tmp_path / "notebooks" / "b.ipynb", 'tag = "b"\na_dir = ""\noutput_dir = "runs"',
              "import pathlib\nassert (pathlib.Path(a_dir) / 'metrics.json').exists(), a_dir\n"
              + WRITE.replace("NAME", "b").replace("UP", "a_dir"))
    (tmp_path / "book" / "params.yml").write_text("a: {}\nb: {}\nc: {}\n")
    monkeypatch.setattr(book, "DEPENDS", {"b": {"a": "a_dir"}})
    return tmp_path


def test_order_and_upstream():
    names = ["results", "tinyworld", "lunar_attacks", "lunar", "rait"]
    order = book.in_order(names)
    assert order.index("lunar") < order.index("lunar_attacks") and order[-1] == "results"
    assert book.upstream("results", names) == {n: None for n in names if n != "results"}
    assert book.upstream("lunar_attacks", names) == {"lunar": "lunar_dir"}


@pytest.mark.slow
def test_runner_passes_run_folders_and_refuses_stale_pages(root):
    args = ["--root", str(root), "--no-html"]
    book.main(args)  # runs a before b (b depends on a), though _toc.yml lists b first
    chapters = root / "book" / "chapters"
    meta_a = json.loads((chapters / "a.ipynb").read_text())["metadata"]["kbnb"]
    meta_b = json.loads((chapters / "b.ipynb").read_text())["metadata"]["kbnb"]
    assert meta_a["run_dir"] == "runs/a-one"
    assert meta_b["params"]["a_dir"] == "runs/a-one"
    assert json.loads((root / "runs" / "b-b" / "metrics.json").read_text())["up"] == "runs/a-one"

    # a changes: --only a re-executes a and, because b builds on it, b too
    _notebook(root / "notebooks" / "a.ipynb", 'tag = "two"\noutput_dir = "runs"',
              WRITE.replace("NAME", "a").replace("UP", "None"))
    book.main(args + ["--only", "a"])
    meta_b = json.loads((chapters / "b.ipynb").read_text())["metadata"]["kbnb"]
    assert meta_b["params"]["a_dir"] == "runs/a-two"

    # c (independent of a) changes, but only a is asked for: no stale c is published
    nb = nbformat.read(root / "notebooks" / "c.ipynb", as_version=4)
    nb.cells[0].source = 'tag = "c2"\noutput_dir = "runs"'
    nbformat.write(nb, root / "notebooks" / "c.ipynb")
    with pytest.raises(SystemExit, match="copies of c are missing or stale"):
        book.main(["--root", str(root), "--only", "a"])
    with pytest.raises(SystemExit, match="not in _toc.yml"):
        book.main(args + ["--only", "zzz"])
