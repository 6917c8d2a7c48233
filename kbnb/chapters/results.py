"""The book's results page (``notebooks/results.ipynb``): one row per chapter headline,
read from this build's runs.

Every number on the page comes from a chapter's ``metrics.json`` (its ``headline`` and
``checks`` sections), found through the run folder the book runner stored in the
executed chapter's metadata. The rows, and their references (the paper's or the seed
report's number, with its model and data set and source), are declared by each chapter
in its ``SPEC``.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from kbnb.chapters import spec_of, toc_chapters
from kbnb.eval import stats
from kbnb.report.params import ChapterParams, param
from kbnb.report.spec import ChapterSpec, Row


@dataclass(frozen=True)
class Params(ChapterParams):
    """The parameters of ``notebooks/results.ipynb`` (same names and defaults)."""

    chapters_dir: str = param("book/chapters")  # the executed chapters (their metadata names each run folder)
    output_dir: str = param("runs", run=False)  # this page's table goes to output_dir/results-<hash>/metrics.json


SPEC = ChapterSpec(title="Results", params=Params, cost=10, depends={"*": None})


def run_dirs(chapters_dir: str | Path = "book/chapters") -> dict[str, Path]:
    """``{chapter: run folder}`` from the executed chapters' ``kbnb.run_dir`` metadata."""
    out = {}
    for nb in sorted(Path(chapters_dir).glob("*.ipynb")):
        try:
            meta = json.loads(nb.read_text())["metadata"].get("kbnb", {})
        except (OSError, ValueError, KeyError):
            continue
        if meta.get("run_dir"):
            out[nb.stem] = Path(meta["run_dir"])
    return out


def chapter_rows(names=None) -> list[tuple[str, str, Row]]:
    """``(chapter, title, row)`` for every results-page row the chapters declare (their
    ``SPEC.rows``), in the table of contents' order."""
    out = []
    for name in names if names is not None else toc_chapters():
        spec = spec_of(name)
        out += [(name, spec.title, r) for r in spec.rows]
    return out


def collect(chapters_dir: str | Path = "book/chapters", rows=None) -> list[dict]:
    """The table's rows with this build's numbers: for each :class:`Row` whose chapter
    was built, ``mean``, ``ci95``, ``n``, ``ci_method``, ``verdict`` (status and
    sentence of its check) and ``source`` (the metrics.json it came from). A row whose
    metric this build did not measure (e.g. an attack left out) is returned with
    ``mean`` None, so the page says so instead of showing an old number."""
    dirs = run_dirs(chapters_dir)
    out = []
    for chapter, title, r in chapter_rows() if rows is None else rows:
        if chapter not in dirs:
            continue
        path = dirs[chapter] / "metrics.json"
        doc = json.loads(path.read_text())["metrics"]
        section = stats.check_headline_shape(doc)
        if r.metric not in section:
            out.append({"chapter": chapter, "title": title,
                        "metric": r.metric, "claim": r.claim, "mean": None,
                        "source": str(path)})
            continue
        h = section[r.metric]
        chk = doc.get("checks", {}).get(r.check) if r.check else None
        out.append({"chapter": chapter, "title": title,
                    "metric": r.metric, "claim": r.claim, "mean": h["mean"],
                    "ci95": h["ci95"], "n": h["n"], "ci_method": h["ci_method"],
                    "status": chk["status"] if chk else None,
                    "sentence": chk["sentence"] if chk else None,
                    "reference": r.reference, "reference_source": r.reference_source,
                    "source": str(path)})
    return out


STATUS_TEXT = {"PASS": "shown", "MISS": "opposite shown", "UNCLEAR": "cannot tell", None: ""}


def table_html(rows: list[dict], digits: int = 3) -> str:
    """The results table as HTML (links to the chapters, numbers with their interval)."""
    head = ("<table class='kbnb-results'><thead><tr><th>Chapter</th><th>Result</th>"
            "<th>This build (95% CI)</th><th>Effect</th><th>Paper or seed</th>"
            "</tr></thead><tbody>")
    body = []
    for r in rows:
        if r["mean"] is None:
            continue
        num = stats.format_mean_ci(r, digits)
        over = html.escape(r["ci_method"].replace(" over ", f" over {r['n']} ", 1))
        ref = html.escape(r["reference"]) + (f"<br><small>{html.escape(r['reference_source'])}"
                                             "</small>" if r["reference_source"] else "")
        status = STATUS_TEXT[r["status"]]
        body.append(f"<tr><td><a href='{r['chapter']}.html'>{html.escape(r['title'])}</a></td>"
                    f"<td>{html.escape(r['claim'])}</td><td>{num}<br><small>{over}</small></td>"
                    f"<td title='{html.escape(r['sentence'] or '')}'>{status}</td>"
                    f"<td>{ref}</td></tr>")
    return head + "".join(body) + "</tbody></table>"


def not_measured(rows: list[dict]) -> str:
    """A sentence naming the rows this build did not measure ("" when none)."""
    miss = [f"{r['title']}: {r['claim']}" for r in rows if r["mean"] is None]
    return ("Not measured in this build (its parameters left them out): " + "; ".join(miss) + "."
            if miss else "")
