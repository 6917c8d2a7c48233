"""The book's results page (``notebooks/results.ipynb``): one row per chapter headline,
read from this build's runs.

Every number on the page comes from a chapter's ``metrics.json`` (its ``headline`` and
``checks`` sections), found through the run folder the book runner stored in the
executed chapter's metadata. The rows, and their references (the paper's or the seed
report's number, with its model and data set and source), are declared by each chapter
in its ``SPEC``. Under the table, a note says how each interval was made (each number
carries its mark), and a forest plot (:func:`forest`, :mod:`kbnb.report.forest`) draws
every checked claim of the table, this build's and each recording's.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from kbnb.chapters import spec_of, toc_chapters
from kbnb.eval import metrics_file
from kbnb.eval.verdicts import STATUS_WORDS
from kbnb.report import forest as forest_plot
from kbnb.report import recorded as recorded_runs
from kbnb.report.params import ChapterParams, param
from kbnb.report.spec import ChapterSpec, Row


@dataclass(frozen=True)
class Params(ChapterParams):
    """The parameters of ``notebooks/results.ipynb`` (same names and defaults)."""

    chapters_dir: str = param("book/chapters")  # the executed chapters (their metadata names each run folder)
    recorded_dir: str = param("results")  # recorded real-model runs (make book-real): one column each
    output_dir: str = param("runs", run=False)  # this page's table goes to output_dir/results-<hash>/metrics.json


SPEC = ChapterSpec(title="Results", params=Params, cost=10, depends={"*": None},
                   inputs=lambda p: [p.recorded_dir])


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


def _row(path: Path, chapter: str, title: str, r: Row) -> dict:
    """One table row from a chapter's ``metrics.json`` (``mean`` None when that file
    does not hold the row's metric)."""
    doc = json.loads(Path(path).read_text())["metrics"]
    section = metrics_file.check_headline_shape(doc)
    if r.metric not in section:
        return {"chapter": chapter, "title": title, "metric": r.metric, "claim": r.claim,
                "mean": None, "missing": True, "source": str(path)}
    h = section[r.metric]
    chk = doc.get("checks", {}).get(r.check) if r.check else None
    return {"chapter": chapter, "title": title, "check": r.check,
            "metric": r.metric, "claim": r.claim, "mean": h["mean"],
            "ci95": h["ci95"], "n": h["n"], "ci_method": h["ci_method"],
            "status": chk["status"] if chk else None,
            "sentence": chk["sentence"] if chk else None,
            "smallest_effect": chk.get("smallest_effect") if chk else None,
            "smallest_effect_source": chk.get("smallest_effect_source") if chk else None,
            "not_meaningful": h.get("not_meaningful") if h.get("meaningful") is False else None,
            "reference": r.reference, "reference_source": r.reference_source,
            "source": str(path)}


def collect(chapters_dir: str | Path = "book/chapters", rows=None) -> list[dict]:
    """The table's rows with this build's numbers: for each :class:`Row` whose chapter
    was built, ``mean``, ``ci95``, ``n``, ``ci_method``, ``status`` and ``sentence`` of its
    check with the ``smallest_effect`` (and ``smallest_effect_source``) it declared (None
    when none, or when an older metrics.json has no such key) and ``source`` (the
    metrics.json it came from). A row whose
    metric this build did not measure (e.g. an attack left out) is returned with
    ``mean`` None, so the page says so instead of showing an old number."""
    dirs = run_dirs(chapters_dir)
    return [_row(dirs[chapter] / "metrics.json", chapter, title, r)
            for chapter, title, r in (chapter_rows() if rows is None else rows)
            if chapter in dirs]


def recorded(recorded_dir: str | Path = "results", rows=None) -> dict:
    """The recorded real-model runs (``make book-real``): ``{folder name: {"record":
    RECORD.json, "rows": {(chapter, metric): row}}}`` for every ``recorded_dir/<name>/``
    with a ``RECORD.json``; each row read from ``<name>/<chapter>/metrics.json``."""
    out = {}
    root = Path(recorded_dir)
    for rec in sorted(root.glob(f"*/{recorded_runs.RECORD_FILE}")):
        folder = rec.parent
        got = {}
        for chapter, title, r in (chapter_rows() if rows is None else rows):
            path = folder / chapter / "metrics.json"
            if path.exists():
                got[(chapter, r.metric)] = _row(path, chapter, title, r)
        out[folder.name] = {"record": json.loads(rec.read_text()), "rows": got}
    return out


def recording_note(name: str, rec: dict, current: dict) -> str:
    """Where a recorded column comes from: for each commit that recorded some of its
    chapters, which chapters, when, and the library modules that changed since (a
    chapter module counts only for its own chapter). HTML-escaped."""
    r = rec["record"]
    groups = {}
    for chapter in sorted(r.get("chapters") or {"": None}):
        cr = recorded_runs.chapter_record(r, chapter) if chapter else r
        groups.setdefault((cr.get("commit") or "unknown", str(cr.get("date") or "")),
                          (cr, []))[1].append(chapter)
    parts = []
    for (commit, date), (cr, chapters) in sorted(groups.items(), key=lambda kv: kv[0][1]):
        changed = recorded_runs.changed_modules(cr, current, [c for c in chapters if c] or None)
        which = f"{', '.join(c for c in chapters if c)} " if any(chapters) else ""
        text = f"{which}at commit {commit[:10]} on {date or 'an unknown date'}"
        if changed:
            shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more"
                                              if len(changed) > 6 else "")
            text += f" (the library changed since: {shown})"
        else:
            text += " (the library has not changed since)"
        parts.append(text)
    stale = any("changed since:" in p for p in parts)
    return html.escape(f"The {name} column ({r.get('model', '')}) was recorded by make "
                       f"book-real: " + "; ".join(parts) + "."
                       + (" Run make book-real to refresh it." if stale else ""))


STATUS_TEXT = {**STATUS_WORDS, None: ""}  # a check's status in words; None: the row has no check


TARGET_LABELS = {
    "forget_rouge": "gold-answer ROUGE-L recall on the forget split",
    "invented_refusal": "refusal of held-out invented-thing questions",
    "world_facts_kept": "world-facts accuracy, share of the base model's",
    "forget_quality_target": "forget quality, target vs retain model",
    "forget_quality_retain": "forget quality, retain model vs itself",
}


def tuned_targets_html(name: str, run: dict, digits: int = 3) -> str:
    """The recorded TOFU-tuned models' targets (``RECORD.json``'s ``measured``) as an
    HTML table, with the rows each was measured on; "" when the recording has none."""
    m = (run.get("record") or {}).get("measured")
    if not m:
        return ""
    body = []
    for k, t in m["targets"].items():
        v = t["value"]
        shown = f"{v:.2e}" if k.startswith("forget_quality") and 0 < v < 1e-3 else f"{v:.{digits}f}"
        body.append(f"<tr><td>{html.escape(TARGET_LABELS.get(k, k))}</td><td>{shown}</td>"
                    f"<td>{html.escape(t['target'])}</td>"
                    f"<td>{'met' if t['pass'] else '<strong>not met</strong>'}</td></tr>")
    sizes = ", ".join(f"{k} {n}" for k, n in m.get("sizes", {}).items())
    report = next(iter((m.get("reports") or {}).values()), {})
    lengths = ", ".join(f"{k[len('new_tokens_'):]} {v}" for k, v in report.items()
                        if k.startswith("new_tokens_"))
    return (f"<table class='kbnb-results'><thead><tr><th>{html.escape(name)}: TOFU-tuned model"
            "</th><th>value</th><th>target</th><th></th></tr></thead><tbody>" + "".join(body)
            + f"</tbody></table><p><small>Measured on the first rows of each set ({sizes}); "
            + (f"greedy answers of at most so many tokens: {lengths}." if lengths
               else "greedy answers.") + "</small></p>")


def _method(r: dict) -> str:
    """How a row's interval was made, with its n ("t interval over 3 seeds"); a row without
    an interval gives its reason (which says n) as it is."""
    return (r["ci_method"] if r.get("ci95") is None
            else r["ci_method"].replace(" over ", f" over {r['n']} ", 1))


def _mark(r: dict, notes: dict | None) -> str:
    """The footnote mark of a row's interval method (:func:`intervals_note`), registering
    the method in ``notes`` (``{method: mark}``); "" without notes."""
    if notes is None:
        return ""
    method = _method(r)
    if method not in notes:
        i = len(notes)
        notes[method] = "abcdefghijklmnopqrstuvwxyz"[i] if i < 26 else str(i + 1)
    return f"<sup>{notes[method]}</sup>"


def intervals_note(notes: dict) -> str:
    """The note under the table: each footnote mark with the interval method it stands for
    ("" when none)."""
    if not notes:
        return ""
    return ("<p><small>How each 95% interval was made: " + "; ".join(
        f"<sup>{m}</sup> {html.escape(method)}" for method, m in notes.items()) + ".</small></p>")


def _cell(r: dict | None, digits: int, notes: dict | None = None) -> str:
    """A recorded run's cell: its number and interval (the method's footnote mark when
    ``notes`` is given, :func:`_mark`), and its status in words."""
    if r is None or r.get("missing"):
        return "<td>not run</td>"
    num = metrics_file.format_mean_ci(r, digits) + _mark(r, notes)
    status = STATUS_TEXT[r["status"]]
    if r.get("not_meaningful"):  # a precondition of the method failed: no verdict
        return (f"<td title='{html.escape(r['not_meaningful'])}'>{num}"
                "<br><em>not meaningful: a precondition failed</em></td>")
    return (f"<td title='{html.escape(r['sentence'] or '')}'>{num}"
            + (f"<br><em>{status}</em>" if status else "") + "</td>")


def table_html(rows: list[dict], digits: int = 3, recorded_runs: dict | None = None) -> str:
    """The results table as HTML (links to the chapters, numbers with their interval),
    with one more column per recorded real-model run (:func:`recorded`). Each number
    carries a footnote mark; the note under the table says how each interval was made."""
    recorded_runs = recorded_runs or {}
    notes = {}
    extra = "".join(f"<th>{html.escape(name)} (recorded, 95% CI)</th>" for name in recorded_runs)
    head = ("<table class='kbnb-results'><thead><tr><th>Chapter</th><th>Result</th>"
            "<th>This build (95% CI)</th><th>Effect</th>" + extra + "<th>Paper or seed</th>"
            "</tr></thead><tbody>")
    body = []
    for r in rows:
        if r["mean"] is None:
            continue
        num = metrics_file.format_mean_ci(r, digits) + _mark(r, notes)
        ref = html.escape(r["reference"]) + (f"<br><small>{html.escape(r['reference_source'])}"
                                             "</small>" if r["reference_source"] else "")
        status = STATUS_TEXT[r["status"]]
        if r.get("not_meaningful"):
            status, r = "not meaningful: a precondition failed", {**r, "sentence": r["not_meaningful"]}
        cols = "".join(_cell(run["rows"].get((r["chapter"], r["metric"])), digits, notes)
                       for run in recorded_runs.values())
        body.append(f"<tr><td><a href='{r['chapter']}.html'>{html.escape(r['title'])}</a></td>"
                    f"<td>{html.escape(r['claim'])}</td><td>{num}</td>"
                    f"<td title='{html.escape(r['sentence'] or '')}'>{status}</td>{cols}"
                    f"<td>{ref}</td></tr>")
    return head + "".join(body) + "</tbody></table>" + intervals_note(notes)


BUILD_MODEL = "tinyworld organism (this build)"  # this build's points in the forest plot


def build_model(rows) -> str:
    """The name of this build's points in the forest plot: :data:`BUILD_MODEL` when every
    row's run is on an organism (``tinyworld…``), else the models the runs name (a build
    with ``book/params-real.yml``: ``"smollm2-tofu, smollm2-tofu-retain (this build)"``)."""
    names = set()
    for source in {r["source"] for r in rows if r.get("source")}:
        params = json.loads(Path(source).read_text()).get("params", {})
        names.add(str(params.get("model_name", "tinyworld")))
    if all(n.startswith("tinyworld") for n in names):
        return BUILD_MODEL
    return ", ".join(sorted(names)) + " (this build)"


def _page_checks(rows) -> dict[str, dict]:
    """``{"<chapter title>: <claim>": check dict}`` of the rows the table shows that have
    a check, read from each row's metrics.json; ``{}`` when that file lacks the check, and
    ``{"not_meaningful": why}`` for a row whose precondition failed (no verdict)."""
    out, docs = {}, {}
    for r in rows:
        if r.get("mean") is None or r.get("missing") or not r.get("check"):
            continue
        label = f"{r['title']}: {r['claim']}"
        if r.get("not_meaningful"):
            out[label] = {"not_meaningful": r["not_meaningful"]}
            continue
        if r["source"] not in docs:
            docs[r["source"]] = json.loads(Path(r["source"]).read_text())["metrics"].get(
                "checks", {})
        out[label] = docs[r["source"]].get(r["check"], {})
    return out


def forest_checks(rows: list[dict], recorded: dict | None = None) -> dict[str, dict[str, dict]]:
    """``{model: {"<chapter title>: <claim>": check dict}}`` for the forest plot: this
    build's (:data:`BUILD_MODEL`, from :func:`collect`'s rows) and each recording's
    (:func:`recorded`; named by its ``RECORD.json`` model, "… (recorded)")."""
    out = {build_model(rows): _page_checks(rows)}
    for name, run in (recorded or {}).items():
        model = str(run["record"].get("model") or name).split(" (")[0] + " (recorded)"
        out[model] = _page_checks(run["rows"].values())
    return out


def forest(rows: list[dict], recorded: dict | None = None, width: float = 9.0):
    """The forest plot of every claim the table shows (:mod:`kbnb.report.forest`), this
    build's and each recording's: ``(figure, caption HTML)``, the caption saying how the
    rows are scaled and which checks have no interval to draw."""
    checks = forest_checks(rows, recorded)
    points = forest_plot.forest_points(checks)
    fig = forest_plot.forest_figure(points, models=list(checks), width=width)
    caption = forest_plot.forest_caption(points, forest_plot.forest_skipped(checks))
    return fig, f"<p><small>{html.escape(caption)}</small></p>"


def not_measured(rows: list[dict]) -> str:
    """A sentence naming the rows this build did not measure ("" when none)."""
    miss = [f"{r['title']}: {r['claim']}" for r in rows if r["mean"] is None]
    return ("Not measured in this build (its parameters left them out): " + "; ".join(miss) + "."
            if miss else "")
