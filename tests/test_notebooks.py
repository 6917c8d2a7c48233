"""Every chapter runs under papermill with small parameters; the book builds."""
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

FAST = yaml.safe_load((ROOT / "tests" / "params-fast.yml").read_text())


EXECUTED = {}  # (notebook, params without output_dir) -> executed copy, reused by the book test


def _key(name, params):
    return name, json.dumps({k: v for k, v in params.items() if k != "output_dir"}, sort_keys=True)


def run_notebook(name, tmp_path, **params):
    """Execute notebooks/<name>.ipynb with the fast parameters (overridden by ``params``)
    into ``tmp_path``; returns its metrics JSON."""
    import papermill as pm

    from kbnb.book import runner as book
    from kbnb.eval import stats
    book.quiet_environment()  # as the book runner does: the published copy has no stderr
    given = {**FAST.get(name, {}), **params}
    params = {**given, "output_dir": str(tmp_path / "runs")}
    out = tmp_path / f"{name}.out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(out), parameters=params,
                        cwd=str(ROOT), kernel_name="python3", progress_bar=False)
    metrics = list((tmp_path / "runs").glob(f"{name}-*/metrics.json"))
    assert len(metrics) == 1, metrics
    EXECUTED[_key(name, given)] = (out, metrics[0].parent)
    doc = json.loads(metrics[0].read_text())
    if name != "results":
        stats.check_headline_shape(doc)  # every chapter reports its headline with intervals
        assert doc["metrics"]["seeds"] == doc["params"]["seeds"]
    return doc


@pytest.mark.slow
def test_tinyworld_notebook(tmp_path, organism):
    doc = run_notebook("tinyworld", tmp_path)
    m = doc["metrics"]
    assert doc["params"]["seeds"] == [0] and doc["environment"]["torch"]
    assert m["known_exact_match"] >= m["targets"]["known_exact_min"]
    assert m["refusal_rate_heldout"] >= m["targets"]["refusal_heldout_min"]
    assert m["known_paraphrase_recall"] >= m["targets"]["known_paraphrase_min"]
    assert abs(m["unseen_recall"] - m["unseen_chance"]) <= 0.05
    assert m["partial_monotone"] is True
    assert len(m["weights_sha256_16"]) == 16
    assert set(m["checks_plain"].values()) <= {True, False, None}
    assert m["checks"]["known_exact"]["status"] in ("PASS", "UNCLEAR")
    assert m["headline"]["known_exact_match"]["ci_method"] == "bootstrap over facts"


@pytest.mark.slow
def test_tinyworld_notebook_rejects_a_bad_dataset(tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match="dataset='mmlu': allowed 'tinyworld'"):
        run_notebook("tinyworld", tmp_path, dataset="mmlu")


HIDDEN = {"hide-input", "remove-input", "remove-cell"}
MAX_LINE = 92  # characters of code that fit the book's page without a scroll bar


def test_visible_code_fits_the_page():
    """Code a reader sees (cells not hidden behind a toggle) has lines that fit the page."""
    long = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] != "code" or HIDDEN & set(cell["metadata"].get("tags", [])):
                continue
            for line in "".join(cell["source"]).splitlines():
                if len(line) > MAX_LINE:
                    long.append(f"{path.name} cell {i}: {len(line)} chars: {line[:60]}...")
    assert not long, "\n".join(long)


def _published_problems(nb) -> list[str]:
    """Outputs a reader must not see: errors, stderr, warnings, figures shown in a cell."""
    bad = []
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            text = o.get("text", "") if o.get("output_type") == "stream" else ""
            if o.get("output_type") == "error":
                bad.append(f"cell {i}: error {o.get('ename')}")
            elif o.get("name") == "stderr":
                bad.append(f"cell {i}: stderr {text[:120]!r}")
            elif "Warning" in text or "warn(" in text:
                bad.append(f"cell {i}: warning in stdout {text[:120]!r}")
    return bad


def _screenshot_is_a_page(png: Path) -> bool:
    from PIL import Image, ImageStat
    img = Image.open(png).convert("L")
    return img.size[0] >= 800 and ImageStat.Stat(img).stddev[0] > 10  # not blank


@pytest.mark.slow
@pytest.mark.book
def test_book_builds_strictly(tmp_path, organism):
    """Every chapter in _toc.yml, executed with the fast parameters (reusing the copies
    the chapter tests executed, which run first), builds with `jupyter-book build -W`,
    and reads as a reader meets it: no error, stderr or warning in any output, every
    figure once per page, the results table equal to the chapters' metrics.json, and
    (with Chromium) two pages that render. An unchanged chapter is not executed again."""
    import re
    import subprocess

    import nbformat

    from kbnb.book import runner as book
    from kbnb.eval import stats
    root = tmp_path / "book-root"
    root.mkdir()
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / f, root / f)
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("chapters"))
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    chapters = root / "book" / "chapters"
    names = book.toc_chapters(root)
    for name in book.in_order(names):
        done = EXECUTED.get(_key(name, FAST.get(name, {})))
        if name in ("tinyworld", "results") or done is None:
            p, extra = book.chapter_params(
                name, {name: {**FAST.get(name, {}), "output_dir": str(tmp_path / "runs")}},
                names, chapters)
            assert book.execute(name, p, chapters, root=root, extra_hash=extra) is True
            assert book.execute(name, p, chapters, root=root, extra_hash=extra) is False
        else:
            chapters.mkdir(parents=True, exist_ok=True)
            nb = nbformat.read(done[0], as_version=4)
            nb.metadata["kbnb"] = {"run_dir": str(done[1])}
            nbformat.write(nb, chapters / f"{name}.ipynb")
    for name in names:
        problems = _published_problems(nbformat.read(chapters / f"{name}.ipynb", as_version=4))
        assert not problems, f"{name}: {problems}"

    book.build_html(root)
    html = root / "_build" / "html"
    assert "book/intro.html" in (html / "index.html").read_text()  # the root page redirects
    assert "The embedded default" in (html / "book" / "intro.html").read_text()
    chapter = (html / "book" / "chapters" / "tinyworld.html").read_text()
    assert "What it shows" in chapter and "<img" in chapter
    for page in (html / "book").rglob("*.html"):
        imgs = re.findall(r'<img[^>]*src="([^"]+)"', page.read_text())
        assert len(imgs) == len(set(imgs)), f"{page.name} shows a figure twice: {imgs}"

    # the results page: every number equals its chapter's metrics.json
    res = json.loads(next((tmp_path / "runs").glob("results-*/metrics.json")).read_text())
    rows = res["metrics"]["rows"]
    assert {r["chapter"] for r in rows} >= {"tinyworld", "rtuning", "rait", "lunar"}
    page = (html / "book" / "chapters" / "results.html").read_text()
    for r in rows:
        if r["mean"] is None:
            continue
        h = stats.check_headline_shape(json.loads(Path(r["source"]).read_text()))[r["metric"]]
        assert (r["mean"], r["ci95"], r["n"]) == (h["mean"], h["ci95"], h["n"]), r["metric"]
        assert stats.format_mean_ci(h) in page, r["metric"]

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium absent: the screenshot check of two pages did not run")
    for name in ("intro", "chapters/results"):
        png = tmp_path / f"{name.replace('/', '_')}.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        f"--screenshot={png}", "--window-size=1200,1600",
                        (html / "book" / f"{name}.html").as_uri()],
                       check=True, capture_output=True, timeout=120)
        assert png.exists() and _screenshot_is_a_page(png), name
