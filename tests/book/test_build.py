"""The whole book builds strictly from the chapters the chapter tests executed, and reads
as a reader meets it."""
import json
import shutil
from pathlib import Path

import pytest


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
def test_book_builds_strictly(tmp_path, organism, repo_root, executed_notebooks):
    """Every chapter in _toc.yml, executed with the fast parameters (reusing the copies
    the chapter tests executed, which run first), builds with `jupyter-book build -W`,
    and reads as a reader meets it: no error, stderr or warning in any output, every
    figure once per page, the results table equal to the chapters' metrics.json, and
    (with Chromium) two pages that render. An unchanged chapter is not executed again."""
    import re
    import subprocess

    import nbformat

    from kbnb.book import runner as book
    from kbnb.eval import metrics_file
    EXECUTED, FAST, executed_key = executed_notebooks
    ROOT = repo_root
    root = tmp_path / "book-root"
    root.mkdir()
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / f, root / f)
    shutil.copytree(ROOT / "book", root / "book", ignore=shutil.ignore_patterns("chapters"))
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    chapters = root / "book" / "chapters"
    names = book.toc_chapters(root)
    run_dirs = [tmp_path / "runs"]
    for name in book.in_order(names):
        done = EXECUTED.get(executed_key(name, FAST.get(name, {})))
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
            run_dirs.append(Path(done[1]).parent)
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
        h = metrics_file.check_headline_shape(json.loads(Path(r["source"]).read_text()))[r["metric"]]
        assert (r["mean"], r["ci95"], r["n"]) == (h["mean"], h["ci95"], h["n"]), r["metric"]
        assert metrics_file.format_mean_ci(h) in page, r["metric"]

    # every headline of every chapter declares its metric's range, and its mean and
    # interval lie inside it (issue 23: a t interval put an AUC at [-0.78, 1.56])
    docs = {f: json.loads(f.read_text()) for d in run_dirs for f in d.glob("*/metrics.json")}
    assert {f.parent.name.rsplit("-", 1)[0] for f in docs} >= set(names) - {"results"}
    for f, doc in docs.items():
        if "headline" not in doc.get("metrics", {}):
            continue
        for metric, h in metrics_file.check_headline_shape(doc).items():  # checks the range too
            assert "range" in h, f"{f.parent.name}: headline {metric!r} declares no range"

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
