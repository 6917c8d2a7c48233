"""Compare two builds' chapter results, key by key: a refactor must keep every number.

``python -m kbnb.book.compare RUNS_A RUNS_B`` reads ``<chapter>-*/metrics.json`` in two
run folders (``runs/`` of two checkouts) and prints every value that differs, chapter
by chapter, ignoring what measures the machine rather than the method (seconds, dates,
thread counts, versions, paths). Exit status 0 when every chapter is equal, 1 otherwise.

``--table``: instead, one markdown table of every headline (mean and 95% interval) and
every check's verdict in A beside B, for a change that moves numbers on purpose.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# keys whose values say how long, when, where or on what a run went, not what it found
IGNORED = re.compile(r"(^|_)(seconds|time|elapsed|duration|date|commit|version|threads|device|"
                     r"dir|path|folder|hostname)(_|$)", re.I)


def chapter_metrics(runs: Path) -> dict[str, dict]:
    """``{chapter: metrics.json}`` of the newest run of each chapter in ``runs``."""
    found: dict[str, Path] = {}
    for path in sorted(Path(runs).glob("*-*/metrics.json"), key=lambda p: p.stat().st_mtime):
        found[path.parent.name.rsplit("-", 1)[0]] = path
    return {name: json.loads(p.read_text()) for name, p in sorted(found.items())}


def differences(a, b, where: str = "") -> list[str]:
    """Every place where ``a`` and ``b`` differ (floats exactly), ignoring ``IGNORED`` keys."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if IGNORED.search(str(k)):
                continue
            if k not in a or k not in b:
                out.append(f"{where}/{k}: only in {'B' if k not in a else 'A'}")
            else:
                out += differences(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if a != b and not (a != a and b != b):  # NaN equals NaN here
        return [f"{where}: {a!r} vs {b!r}"]
    return []


def _cell(h: dict | None) -> str:
    if not h:
        return "—"
    lo, hi = h.get("ci95") or (None, None)
    ci = f" [{lo:.3g}, {hi:.3g}]" if lo is not None and hi is not None else ""
    return f"{h['mean']:.3g}{ci}" if h.get("mean") is not None else "—"


def headline_table(a: dict, b: dict) -> str:
    """Markdown: per chapter, each headline's mean [95% interval] and each check's status in
    ``a`` and in ``b`` (``{chapter: metrics.json}``, as :func:`chapter_metrics` reads)."""
    rows = ["| chapter | number | A | B |", "|---|---|---|---|"]
    for name in sorted(set(a) | set(b)):
        ma, mb = (a.get(name) or {}).get("metrics", {}), (b.get(name) or {}).get("metrics", {})
        ha, hb = ma.get("headline") or {}, mb.get("headline") or {}
        for k in sorted(set(ha) | set(hb)):
            rows.append(f"| {name} | {k} | {_cell(ha.get(k))} | {_cell(hb.get(k))} |")
        ca, cb = ma.get("checks") or {}, mb.get("checks") or {}
        for k in sorted(set(ca) | set(cb)):
            sa, sb = (ca.get(k) or {}).get("status", "—"), (cb.get(k) or {}).get("status", "—")
            rows.append(f"| {name} | check: {k} | {sa} | {sb} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs_a", type=Path)
    ap.add_argument("runs_b", type=Path)
    ap.add_argument("--table", action="store_true",
                    help="print every headline and verdict of A beside B (markdown)")
    args = ap.parse_args(argv)
    for runs in (args.runs_a, args.runs_b):
        if not runs.is_dir():
            ap.error(f"runs folder {runs} does not exist")
    a, b = chapter_metrics(args.runs_a), chapter_metrics(args.runs_b)
    if args.table:
        print(headline_table(a, b))
        return 0
    bad = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"{name}: only in {'B' if name not in a else 'A'}")
            bad += 1
            continue
        diff = differences(a[name], b[name])
        print(f"{name}: {'equal' if not diff else f'{len(diff)} differences'}")
        for d in diff[:40]:
            print(f"    {d}")
        bad += bool(diff)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
