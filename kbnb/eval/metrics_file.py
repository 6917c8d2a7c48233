"""The headline record of ``metrics.json``: its shape, its check, its section, and its
text in tables.

Every headline number of a chapter is stored as ``{"mean", "ci95": [lo, hi], "values",
"n", "ci_method"}`` (:data:`HEADLINE_RECORD_KEYS`; made by :func:`kbnb.eval.stats.ci95`
and :func:`kbnb.eval.stats.headline`), with an optional ``"range": [lo, hi]`` of a
bounded metric, or as a :func:`kbnb.eval.stats.not_measurable` record (``ci95`` None).
:func:`headline_section` writes the ``metrics["headline"]`` section, and
:func:`check_headline_shape` validates it when a chapter's ``metrics.json`` is read back
(the results page, the book's tests). :func:`format_mean_ci` writes a headline as table
text, ``"0.912 ± 0.014"``, and :func:`format_number` every number of the tables and of
the verdict sentences.
"""
from __future__ import annotations

import math
import re

import numpy as np

from kbnb.core.checks import check_choice
from kbnb.eval.stats import NOT_MEASURABLE, is_measurable

HEADLINE_RECORD_KEYS = ("mean", "ci95", "values", "n", "ci_method")  # keys of every headline record
_CI_METHOD_RE = re.compile(r"^(paired )?(bootstrap|t interval)( on the (logit|log) scale)? over \S.*$")


def format_number(x: float, digits: int, unit: str = "") -> str:
    """``x`` with ``digits`` decimals and ``unit`` appended; a minus sign (−) for a
    negative number, none for one that rounds to zero: ``"−0.031"``, ``"0.000"``."""
    s = f"{x:.{digits}f}"
    if s.startswith("-"):
        s = "−" + s[1:] if float(s) != 0 else s[1:]
    return s + unit


def format_mean_ci(h: dict, digits: int = 3, style: str = "pm") -> str:
    """A headline as table text. ``style="pm"``: ``"0.912 ± 0.014"``, ± half the width of
    the interval (bootstrap intervals of a mean are nearly symmetric; the exact bounds
    are in metrics.json); ``style="interval"``: ``"0.912 (0.898 to 0.926)"``. An interval
    taken on the logit or log scale of a bounded metric is asymmetric, so ``"pm"`` shows it
    in the interval style too (± half its width could read as reaching past the bound).
    h: a headline dict."""
    check_choice("style", style, ("pm", "interval"))
    if isinstance(h, dict) and " scale over " in str(h.get("ci_method", "")):
        style = "interval"
    if isinstance(h, dict) and not is_measurable(h):  # no interval: the value and why
        m = h.get("mean")
        n = h.get("n")
        what = f"not measurable, n = {n}" if n is not None else "not measurable"
        return f"{format_number(float(m), digits)} ({what})" if m is not None else f"— ({what})"
    if not isinstance(h, dict) or "mean" not in h or "ci95" not in h:
        raise ValueError(f"h must be a headline dict with 'mean' and 'ci95'; got {h!r:.80}")
    m, (lo, hi) = float(h["mean"]), map(float, h["ci95"])
    if style == "interval":
        return (f"{format_number(m, digits)} ({format_number(lo, digits)} to "
                f"{format_number(hi, digits)})")
    return f"{format_number(m, digits)} ± {format_number((hi - lo) / 2, digits)}"


def _is_num(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) \
        and math.isfinite(float(x))


def _check_one(name: str, h) -> None:
    where = f"headline[{name!r}]"
    if not isinstance(h, dict):
        raise ValueError(f"{where} must be a dict with keys {list(HEADLINE_RECORD_KEYS)}; "
                         f"got {type(h).__name__}")
    missing = [k for k in HEADLINE_RECORD_KEYS if k not in h]
    if missing:
        raise ValueError(f"{where} is missing {missing} (a headline is "
                         "{'mean', 'ci95': [lo, hi], 'values', 'n', 'ci_method'})")
    if h.get("measurable") is False or h["ci95"] is None:
        _check_not_measurable(where, h)
        return
    if not _is_num(h["mean"]):
        raise ValueError(f"{where}['mean'] must be a finite number; got {h['mean']!r}")
    ci = h["ci95"]
    if not (isinstance(ci, (list, tuple)) and len(ci) == 2 and all(map(_is_num, ci))):
        raise ValueError(f"{where}['ci95'] must be [lo, hi], two finite numbers; got {ci!r}")
    if float(ci[0]) > float(ci[1]):
        raise ValueError(f"{where}['ci95'] = {list(ci)} has lo > hi")
    n = h["n"]
    if not (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 2):
        raise ValueError(f"{where}['n'] must be an integer ≥ 2; got {n!r}")
    v = h["values"]
    if not isinstance(v, (list, tuple)) or len(v) != n:
        raise ValueError(f"{where}['values'] must be a list of n={n} values; got "
                         f"{type(v).__name__} of length {len(v) if hasattr(v, '__len__') else '?'}")
    flat = [x for row in v for x in (row if isinstance(row, (list, tuple)) else [row])]
    if not all(map(_is_num, flat)):
        raise ValueError(f"{where}['values'] must hold finite numbers")
    if "range" in h:
        _check_in_range(where, h, [float(ci[0]), float(ci[1]), float(h["mean"])])
    cm = h["ci_method"]
    if not (isinstance(cm, str) and _CI_METHOD_RE.match(cm)):
        raise ValueError(f"{where}['ci_method'] = {cm!r}: expected e.g. 't interval over seeds' "
                         "or 'bootstrap over questions'")


def _check_in_range(where: str, h: dict, numbers) -> None:
    """The mean and the interval of a headline that declares its ``range`` lie in it."""
    r = h["range"]
    if not (isinstance(r, (list, tuple)) and len(r) == 2
            and all(b is None or _is_num(b) for b in r)):
        raise ValueError(f"{where}['range'] = {r!r}: expected [lo, hi] (None: an open side)")
    lo, hi = r
    tol = 1e-9 * max([1.0] + [abs(float(b)) for b in r if b is not None])
    for x in numbers:
        if (lo is not None and x < float(lo) - tol) or (hi is not None and x > float(hi) + tol):
            raise ValueError(f"{where}: {x:g} (mean or interval bound) lies outside the "
                             f"metric's range {list(r)}")


def _check_not_measurable(where: str, h: dict) -> None:
    """A :func:`not_measurable` headline: mean a finite number or None, ci95 None,
    n ≥ 0, a reason, ci_method "not measurable: ..."."""
    if h.get("measurable") is not False or h["ci95"] is not None:
        raise ValueError(f"{where}: a headline without an interval needs ci95 None and "
                         "measurable False (see kbnb.eval.stats.not_measurable)")
    if h["mean"] is not None and not _is_num(h["mean"]):
        raise ValueError(f"{where}['mean'] must be a finite number or None; got {h['mean']!r}")
    if h["mean"] is not None and "range" in h:
        _check_in_range(where, h, [float(h["mean"])])
    n = h["n"]
    if not (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0):
        raise ValueError(f"{where}['n'] must be an integer ≥ 0; got {n!r}")
    if not (isinstance(h.get("reason"), str) and h["reason"]):
        raise ValueError(f"{where}: a headline without an interval must say why ('reason')")
    if not (isinstance(h["ci_method"], str) and h["ci_method"].startswith(NOT_MEASURABLE)):
        raise ValueError(f"{where}['ci_method'] = {h['ci_method']!r}: expected "
                         f"'{NOT_MEASURABLE}: <reason>'")
    if not isinstance(h["values"], (list, tuple)):
        raise ValueError(f"{where}['values'] must be a list")


def check_headline_shape(doc: dict) -> dict:
    """Validate the headline section of a metrics document; return the section.

    doc: a whole ``metrics.json`` (``{"params", "metrics": {..., "headline": {...}}}``),
    a metrics dict with a ``"headline"`` key, or the section itself
    (``{name: headline}``). Every headline must be ``{"mean": number, "ci95": [lo, hi]
    with lo ≤ hi, "values": list of n numbers (or rows), "n": int ≥ 2, "ci_method":
    "<bootstrap|t interval> over <what>"}``, or a :func:`not_measurable` one (``ci95``
    None, ``measurable`` False, a ``reason``, ``n`` ≥ 0). Raises ValueError naming the first bad
    entry and field.
    """
    if not isinstance(doc, dict):
        raise ValueError(f"expected a dict (metrics.json); got {type(doc).__name__}")
    section = doc
    if isinstance(section.get("metrics"), dict):
        section = section["metrics"]
    if "headline" in section:
        section = section["headline"]
    elif doc is not section or "params" in doc:
        raise ValueError("metrics has no 'headline' section: write it with "
                         "kbnb.eval.metrics_file.headline_section({...})")
    if not isinstance(section, dict) or not section:
        raise ValueError("the headline section is empty: give at least one headline number")
    for name, h in section.items():
        _check_one(name, h)
    return section


def headline_section(headlines: dict) -> dict:
    """``{name: headline}`` → a checked, JSON-ready section for ``metrics["headline"]``.

    headlines: name → a headline dict (from :func:`kbnb.eval.stats.headline` /
    :func:`kbnb.eval.stats.ci95`). Numbers become
    plain floats/ints; the result passes :func:`check_headline_shape`.
    """
    if not isinstance(headlines, dict) or not headlines:
        raise ValueError("headlines must be a non-empty dict {name: headline}")
    out = {}
    for name, h in headlines.items():
        if not isinstance(h, dict):
            raise ValueError(f"headline[{name!r}] must be a headline dict; "
                             f"got {type(h).__name__}")
        _check_one(name, h)
        if not is_measurable(h):
            out[str(name)] = {
                **{k: v for k, v in h.items() if k not in HEADLINE_RECORD_KEYS},
                "mean": None if h["mean"] is None else float(h["mean"]), "ci95": None,
                "values": [[float(x) for x in r] if isinstance(r, (list, tuple)) else float(r)
                           for r in h["values"]],
                "n": int(h["n"]), "ci_method": str(h["ci_method"])}
            continue
        out[str(name)] = {
            **{k: v for k, v in h.items() if k not in HEADLINE_RECORD_KEYS},
            "mean": float(h["mean"]), "ci95": [float(x) for x in h["ci95"]],
            "values": [[float(x) for x in r] if isinstance(r, (list, tuple)) else float(r)
                       for r in h["values"]],
            "n": int(h["n"]), "ci_method": str(h["ci_method"])}
    return out
