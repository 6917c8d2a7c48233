"""A forest plot of the book's claims: every checked claim of the results page, for every
model (this build's organism, each recorded real model), as its difference with its 95%
interval beside the value it is compared with.

A claim's check (``metrics.json``'s ``checks[name]``, :mod:`kbnb.eval.verdicts`) holds
``diff`` (new − baseline, or the headline − its null) and ``ci95``. The *reference* is 0
(no effect); a check that carries the fixed target it was compared with (``target`` or
``threshold``, :data:`TARGET_KEYS`) is drawn as ``target + diff`` beside a reference at
the target. (Today's ``metrics.json`` files store no such key: a check against a fixed
number, e.g. "exact match above 0.95", stores the distance from it, so its reference is 0.)

Claims differ in scale by thousands (log10 forget quality gains of ~10, AP gains of
0.001), so each claim row is divided by its own *scale*: the largest absolute value among
its models' interval ends, point estimates, reference and reference ± smallest effect.
Every row then spans at most [−1, 1]; the raw difference and its interval are printed at
the right of the row. A check without a difference and interval (not measurable, or an
older file) is left out and named by :func:`forest_skipped`.
"""
from __future__ import annotations

import math
import textwrap

from kbnb.eval.verdicts import STATUS_WORDS

TARGET_KEYS = ("target", "threshold")  # a check's fixed target, if it stores one
STATUS_COLOURS = {"PASS": "#1a7f37", "MISS": "#c62828", "UNCLEAR": "#6e6e6e",
                  "EXCLUDED": "#1f5fbf", None: "#000000"}
MARKERS = ("o", "s", "D", "^", "v", "P")  # one shape per model, in order


def _floats(check: dict) -> tuple[float, float, float] | None:
    try:
        diff, (lo, hi) = float(check["diff"]), sorted(map(float, check["ci95"]))
    except (KeyError, TypeError, ValueError):
        return None
    return (diff, lo, hi) if all(map(math.isfinite, (diff, lo, hi))) else None


def _why_left_out(check: dict) -> str | None:
    """None when the check can be drawn, else why not."""
    if not check:
        return "no such check recorded"
    if check.get("not_meaningful"):  # a precondition of the method failed: no verdict
        return "not meaningful: a precondition failed"
    if check.get("measurable") is False:
        return f"not measurable: {check.get('reason') or 'no interval'}"
    return None if _floats(check) else "no difference with an interval recorded"


def reference_of(check: dict) -> float:
    """The value a check is compared with: its fixed target (:data:`TARGET_KEYS`), else 0."""
    return next((float(check[k]) for k in TARGET_KEYS if check.get(k) is not None), 0.0)


def split_label(label: str) -> tuple[str, str]:
    """``"Chapter: claim"`` → ``("Chapter", "claim")`` (split at the first ": ")."""
    chapter, _, claim = label.partition(": ")
    return (chapter, claim) if claim else ("", label)


def forest_points(checks_by_model: dict[str, dict[str, dict]]) -> list[dict]:
    """One point per (claim, model) that has a difference with its interval.

    checks_by_model: ``{model: {"Chapter: claim": check dict}}``. Each point: ``model``,
    ``label``, ``chapter``, ``claim``, the raw ``diff``, ``lo``, ``hi``, ``reference`` (0
    or the target), ``direction``, ``status``, ``smallest_effect`` (None when undeclared);
    the row's ``scale`` (see the module) and the scaled ``x``, ``x_lo``, ``x_hi``,
    ``x_ref`` and ``x_band`` (``(low, high)`` of reference ± smallest effect, or None).
    Points come claim by claim (first-seen order), models in the given order."""
    points = []
    for model, checks in checks_by_model.items():
        for label, c in checks.items():
            if _why_left_out(c):
                continue
            diff, lo, hi = _floats(c)
            size = c.get("smallest_effect")
            size = float(size) if size is not None and float(size) > 0 else None
            points.append({"model": model, "label": label, **dict(zip(("chapter", "claim"),
                           split_label(label))), "diff": diff, "lo": lo, "hi": hi,
                           "reference": reference_of(c), "direction": c.get("direction"),
                           "status": c.get("status"), "smallest_effect": size})
    order = {lab: i for i, lab in enumerate(dict.fromkeys(p["label"] for p in points))}
    models = list(checks_by_model)
    points.sort(key=lambda p: (order[p["label"]], models.index(p["model"])))
    scale = {}
    for p in points:
        r, s = p["reference"], p["smallest_effect"] or 0.0
        ends = (r + p["lo"], r + p["hi"], r + p["diff"], r, abs(r) + s)
        scale[p["label"]] = max(scale.get(p["label"], 0.0), *map(abs, ends))
    for p in points:
        s, r = scale[p["label"]] or 1.0, p["reference"]
        p.update(scale=s, x=(r + p["diff"]) / s, x_lo=(r + p["lo"]) / s, x_hi=(r + p["hi"]) / s,
                 x_ref=r / s, x_band=None if p["smallest_effect"] is None else
                 ((r - p["smallest_effect"]) / s, (r + p["smallest_effect"]) / s))
    return points


def forest_skipped(checks_by_model: dict[str, dict[str, dict]]) -> list[dict]:
    """``{"model", "label", "reason"}`` for every check :func:`forest_points` leaves out."""
    return [{"model": m, "label": lab, "reason": _why_left_out(c)}
            for m, checks in checks_by_model.items() for lab, c in checks.items()
            if _why_left_out(c)]


def forest_caption(points: list[dict], skipped: list[dict]) -> str:
    """One paragraph of plain text: what the rows are, and which checks were left out."""
    n = len({p["label"] for p in points})
    text = (f"{n} claims, each row divided by its own scale (its largest interval end, "
            "reference or smallest effect in absolute value) so that it spans at most −1 to 1; "
            "the line in each row marks no effect (or the claim's target), the grey band "
            "± the smallest effect that matters where the claim declares one, and the numbers "
            "at the right are the raw difference with its 95% interval.")
    models = list(dict.fromkeys(p["model"] for p in points))
    if len(models) > 1:
        text += (" Within a row the models keep the legend's order, top to bottom; a model "
                 "without a marker in a row did not measure that claim (\"not run\" in the "
                 "table)" + (" or is named below." if skipped else "."))
    groups = {}
    for s in skipped:
        groups.setdefault((s["model"], s["reason"]), []).append(s["label"])
    if groups:
        text += " Not drawn: " + "; ".join(
            f"{m}: {', '.join(labs)} ({why})" for (m, why), labs in groups.items()) + "."
    return text


def _num(x: float) -> str:
    return f"{x:.3g}".replace("-", "−")


def forest_figure(points: list[dict], models: list[str] | None = None, width: float = 9.0,
                  wrap: int = 40):
    """The forest plot of ``points`` (:func:`forest_points`): one row per claim, grouped
    under its chapter's name; per model one marker shape (offset up and down within the
    row), its colour the check's status (:data:`kbnb.eval.verdicts.STATUS_WORDS`), a bar
    for the scaled 95% interval, a grey band for ± the smallest effect, a black line at
    the scaled reference, and the raw ``diff [lo, hi]`` as text at the right. models: the
    order (and so the marker) of the models; default: as they come in ``points``. Returns
    a :class:`matplotlib.figure.Figure` ``width`` inches wide, its height growing with the
    number of claims. Markers, bars and lines carry a ``gid`` ("point|model|label",
    "reference|label"), tick labels "claim|label" or "chapter|name"."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    models = models or list(dict.fromkeys(p["model"] for p in points))
    labels = list(dict.fromkeys(p["label"] for p in points))
    chapters = list(dict.fromkeys(p["chapter"] for p in points))
    row_h = max(0.5, 0.22 * len(models) + 0.16)  # inches per claim
    rows, y = [], 0.0  # (y, kind, name), top to bottom in inches
    for ch in chapters:
        rows.append((y - 0.17, "chapter", ch))
        y -= 0.34
        for lab in (lab for lab in labels if split_label(lab)[0] == ch):
            rows.append((y - row_h / 2, "claim", lab))
            y -= row_h
    y = y or -0.5  # no claim to draw: an empty row that says so
    top, bottom, left, right = 0.5, 1.35, 3.45, 2.0
    height = -y + top + bottom
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((left / width, bottom / height, 1 - (left + right) / width, -y / height))
    ax.set_xlim(-1.12, 1.12)
    ax.set_ylim(y, 0)
    ys = {name: yy for yy, kind, name in rows if kind == "claim"}
    if not rows:
        ax.text(0, -0.25, "no claim with an interval to draw", ha="center", va="center")
    offs = [(len(models) - 1) / 2 - i for i in range(len(models))]
    offs = [o * min(0.2, row_h * 0.7 / max(len(models), 1)) for o in offs]
    right_text = blended_transform_factory(ax.transAxes, ax.transData)
    for lab in labels:
        for xr in sorted({p["x_ref"] for p in points if p["label"] == lab}):
            ax.plot([xr, xr], [ys[lab] - row_h * 0.45, ys[lab] + row_h * 0.45],
                    color="black", lw=1.0, gid=f"reference|{lab}", zorder=2)
    for p in points:
        i = models.index(p["model"])
        yy, colour = ys[p["label"]] + offs[i], STATUS_COLOURS.get(p["status"], "black")
        if p["x_band"]:
            ax.fill_betweenx([yy - 0.09, yy + 0.09], *p["x_band"], color="#cfcfcf", lw=0,
                             zorder=1)
        ax.plot([p["x_lo"], p["x_hi"]], [yy, yy], color=colour, lw=2.0, zorder=3,
                solid_capstyle="butt", gid=f"bar|{p['model']}|{p['label']}")
        ax.plot([p["x"]], [yy], MARKERS[i % len(MARKERS)], color=colour, ms=6.5, mec="white",
                mew=0.6, zorder=4, gid=f"point|{p['model']}|{p['label']}")
        ax.text(1.03, yy, f"{_num(p['diff'])} [{_num(p['lo'])}, {_num(p['hi'])}]",
                transform=right_text, va="center", fontsize=9.5, color="#222222")
    for yy, kind, name in rows:
        if kind == "chapter":
            ax.axhline(yy + 0.17, color="#bbbbbb", lw=0.6)
    ax.set_yticks([r[0] for r in rows])
    ticks = ax.set_yticklabels([name if kind == "chapter" else textwrap.fill(
        split_label(name)[1], wrap, initial_indent="   ", subsequent_indent="   ",
        break_on_hyphens=False)
        for _, kind, name in rows], fontsize=10, ha="left")  # claims indented under chapters
    for t, (_, kind, name) in zip(ticks, rows):
        t.set_gid(f"{kind}|{name}")
        t.set_fontweight("bold" if kind == "chapter" else "normal")
    ax.tick_params(axis="y", length=0, pad=(left - 0.1) * 72)
    ax.set_xticks([-1, -0.5, 0, 0.5, 1])
    ax.tick_params(axis="x", labelsize=9)
    ax.grid(axis="x", color="#eeeeee", lw=0.6)
    ax.set_xlabel("difference ÷ the row's scale (1 = its largest |interval end|, reference "
                  "or smallest effect)", fontsize=9.5)
    ax.text(1.03, 1.0, "raw difference\n[95% CI]", transform=ax.transAxes, va="bottom",
            fontsize=9.5, fontweight="bold")
    handles = [Line2D([], [], ls="", marker=MARKERS[i % len(MARKERS)], color="black", label=m)
               for i, m in enumerate(models)]
    handles += [Patch(color=STATUS_COLOURS[s], label=w) for s, w in STATUS_WORDS.items()]
    handles += [Patch(color="#cfcfcf", label="± smallest effect that matters"),
                Line2D([], [], color="black", lw=1, label="no effect (or target)")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9.5, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    return fig
