"""Every chapter runs under papermill with small parameters; the book builds."""
import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, shared_data_dir

FAST = yaml.safe_load((ROOT / "tests" / "params-fast.yml").read_text())


EXECUTED = {}  # (notebook, params without output_dir) -> executed copy, reused by the book test


def _key(name, params):
    return name, json.dumps({k: v for k, v in params.items() if k != "output_dir"}, sort_keys=True)


def run_notebook(name, tmp_path, **params):
    """Execute notebooks/<name>.ipynb with the fast parameters (overridden by ``params``)
    into ``tmp_path``; returns its metrics JSON."""
    import papermill as pm
    given = {**FAST.get(name, {}), **params}
    params = {**given, "output_dir": str(tmp_path / "runs")}
    out = tmp_path / f"{name}.out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                        cwd=str(ROOT), kernel_name="python3", progress_bar=False)
    EXECUTED[_key(name, given)] = out
    metrics = list((tmp_path / "runs").glob(f"{name}-*/metrics.json"))
    assert len(metrics) == 1, metrics
    return json.loads(metrics[0].read_text())


@pytest.mark.slow
def test_tinyworld_notebook(tmp_path, organism):
    doc = run_notebook("tinyworld", tmp_path)
    m = doc["metrics"]
    assert doc["params"]["seed"] == 0 and doc["environment"]["torch"]
    assert m["known_exact_match"] >= m["targets"]["known_exact_min"]
    assert m["refusal_rate_heldout"] >= m["targets"]["refusal_heldout_min"]
    assert m["known_paraphrase_recall"] >= m["targets"]["known_paraphrase_min"]
    assert abs(m["unseen_recall"] - m["unseen_chance"]) <= 0.05
    assert m["partial_monotone"] is True
    assert len(m["weights_sha256_16"]) == 16
    assert set(m["checks"].values()) <= {True, False, None}


@pytest.mark.slow
def test_tinyworld_notebook_rejects_a_bad_dataset(tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match="dataset='mmlu': allowed 'tinyworld'"):
        run_notebook("tinyworld", tmp_path, dataset="mmlu")


@pytest.mark.slow
@pytest.mark.book
def test_book_builds_strictly(tmp_path, organism):
    """Every chapter in _toc.yml, executed with the fast parameters (reusing the copies
    the chapter tests executed, which run first), builds with `jupyter-book build -W`.
    A second `execute` of an unchanged chapter is skipped (cached)."""
    import nbformat

    from kbnb import book
    root = tmp_path / "book-root"
    root.mkdir()
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / f, root / f)
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("chapters"))
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    chapters = root / "book" / "chapters"
    for name in book.toc_chapters(root):
        done = EXECUTED.get(_key(name, FAST.get(name, {})))
        if name == "tinyworld" or done is None:
            params = {**FAST.get(name, {}), "output_dir": str(tmp_path / "runs")}
            assert book.execute(name, params, chapters, root=root) is True
            assert book.execute(name, params, chapters, root=root) is False
        else:
            chapters.mkdir(parents=True, exist_ok=True)
            nbformat.write(nbformat.read(done, as_version=4), chapters / f"{name}.ipynb")
    book.build_html(root)
    html = root / "_build" / "html"
    assert "book/intro.html" in (html / "index.html").read_text()  # the root page redirects
    assert "The embedded default" in (html / "book" / "intro.html").read_text()
    chapter = (root / "_build" / "html" / "book" / "chapters" / "tinyworld.html").read_text()
    assert "What it shows" in chapter and "<img" in chapter
