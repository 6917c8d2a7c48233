"""Recorded real-model runs (``make book-real``, :mod:`kbnb.book.real`) read back, so
that an organism chapter can say what the same method did on a real model.

``results/<name>/RECORD.json`` says which commit recorded the run, when, and the hash of
every library module then; ``results/<name>/<chapter>/metrics.json`` and
``params.json`` are the chapter's own files from that run.
"""
from __future__ import annotations

import json
from pathlib import Path

from kbnb.eval.verdicts import STATUS_WORDS
from kbnb.report.runs import NOTEBOOKS, chapter_modules, library_files

RECORD_FILE = "RECORD.json"


STAMP = ("commit", "date", "library_files")


def chapter_record(record: dict, chapter: str) -> dict:
    """``RECORD.json`` as seen by one chapter: the chapter's own stamp (commit, date,
    library file hashes of the run that recorded it) over the top-level one."""
    entry = (record.get("chapters") or {}).get(chapter) or {}
    return {**record, **{k: entry[k] for k in STAMP if k in entry}}


def recorded_chapter(chapter: str, recorded_dir: str | Path = "results") -> list[dict]:
    """Every recording of ``chapter``: ``{"name", "record", "metrics", "params"}``, one per
    ``recorded_dir/<name>/`` that holds ``RECORD.json`` and ``<chapter>/metrics.json``;
    ``record`` carries the chapter's own stamp (:func:`chapter_record`)."""
    out = []
    for rec in sorted(Path(recorded_dir).glob(f"*/{RECORD_FILE}")):
        path = rec.parent / chapter / "metrics.json"
        if not path.exists():
            continue
        doc = json.loads(path.read_text())
        out.append({"name": rec.parent.name,
                    "record": chapter_record(json.loads(rec.read_text()), chapter),
                    "metrics": doc.get("metrics", {}), "params": doc.get("params", {})})
    return out


def changed_modules(record: dict, current: dict | None = None, chapters=None,
                    notebooks: Path = NOTEBOOKS) -> list[str]:
    """The library modules (paths under ``kbnb/``) whose hash differs from the
    recording's, sorted (added, removed or edited since). ``chapters``: the recorded
    chapters; only the modules they can run count (:func:`kbnb.report.runs.chapter_modules`:
    what their notebooks import, to the end), so that a change elsewhere does not mark
    them stale. Where a notebook is missing, every module counts except another chapter's
    (``chapters/<other>.py``); a chapter's own modules are then ``chapters/<c>.py`` and
    ``chapters/<c>_<part>.py`` (``lunar_present.py``), unless that name is a recorded
    chapter itself (``lunar_attacks``)."""
    current = library_files() if current is None else current
    old = record.get("library_files") or {}
    recorded = set(record.get("chapters") or {}) | set(chapters or ())
    closures = [chapter_modules(c, notebooks=notebooks) for c in chapters or ()]
    used = (set().union(*closures) if chapters and all(m is not None for m in closures)
            else None)

    def own(key: str) -> bool:
        if used is not None:
            return key in used
        if chapters is None or not key.startswith("chapters/"):
            return True
        stem = key.removeprefix("chapters/").removesuffix(".py")
        return any(stem == c or (stem.startswith(c + "_") and stem not in recorded)
                   for c in chapters)

    return sorted(k for k in set(old) | set(current) if old.get(k) != current.get(k) and own(k))


def _names(keys) -> str:
    keys = list(keys)
    return ", ".join(keys) if keys else "none"


def comparison_sentence(chapter: str, statuses: dict, model_name: str,
                        recorded_dir: str | Path = "results", current: dict | None = None) -> str:
    """What the recorded real-model runs of ``chapter`` found, beside this run's claims.

    ``statuses``: this run's ``{check: "PASS" | "MISS" | "UNCLEAR" | "EXCLUDED"}``; ``model_name``:
    the model of this run (a recording of the same model is not compared with itself).
    For each recording: its model, commit and date; how many claims it shows against
    this run; the claims this run could not tell that the recording shows, and the
    reverse; whether a precondition failed there; whether the library changed since;
    and the recording's own sentence for each claim."""
    runs = [r for r in recorded_chapter(chapter, recorded_dir)
            if r["params"].get("model_name") != model_name]
    if not runs:
        return (f"No real-model recording of this chapter is in {recorded_dir}/ to compare "
                "with (make book-real writes one).")
    parts = []
    for r in runs:
        rec, checks = r["record"], r["metrics"].get("checks", {})
        model = r["params"].get("model_name", r["name"])
        commit = (rec.get("commit") or "unknown commit")[:10]
        text = (f"make book-real ran this chapter on {model} (commit {commit}, "
                f"{str(rec.get('date', ''))[:10]}).")
        both = [k for k in statuses if k in checks]
        failed = [k for k, v in (r["metrics"].get("preconditions") or {}).items()
                  if isinstance(v, dict) and v.get("met") is False]
        if failed:  # its verdicts mean nothing: no count of claims shown
            text += (f" A precondition of the method did not hold there ({_names(failed)}), "
                     "so its claims are not compared with this run's and its headlines are "
                     "marked not meaningful.")
        elif both:
            shown = sum(checks[k]["status"] == "PASS" for k in both)
            here = sum(statuses[k] == "PASS" for k in both)
            text += (f" Of the {len(both)} claim{'s' if len(both) != 1 else ''} both runs "
                     f"check, it shows {shown} (this run: {here}).")
            gained = [k for k in both if statuses[k] != "PASS" and checks[k]["status"] == "PASS"]
            lost = [k for k in both if statuses[k] == "PASS" and checks[k]["status"] != "PASS"]
            text += (f" Shown there but not here: {_names(gained)}; shown here but not "
                     f"there: {_names(lost)}.")
        changed = changed_modules(rec, current, [chapter])
        if changed:
            text += (f" The library changed since that recording ({len(changed)} module(s)); "
                     "make book-real refreshes it.")
        words = [f"{k}: {STATUS_WORDS.get(checks[k]['status'], checks[k]['status'])} "
                 f"({checks[k]['sentence']})" for k in (both or checks)]
        if words:
            text += (" Its claims (not meaningful): " if failed else " Its claims: ") + \
                " ".join(words)
        parts.append(text)
    return " ".join(parts)
