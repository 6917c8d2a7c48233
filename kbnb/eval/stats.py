"""A headline number with its uncertainty: the 95% interval of one quantity, and the
bootstrap or exact test of one statistic against a fixed value.

The chapters report each headline number as a mean with a 95% interval. A claim that
compares two methods is a paired comparison (:mod:`kbnb.eval.comparisons`) whose
verdict is a computed sentence (:mod:`kbnb.eval.verdicts`); the headline record these
functions return is checked and written to ``metrics.json`` by
:mod:`kbnb.eval.metrics_file`.

Which interval, and why
-----------------------
* **Several seeds** (the usual case: 3 to 5 runs of a chapter): the interval is over
  seeds. With so few values a percentile bootstrap is far too narrow: it resamples
  only the few values it was given, so with 3 seeds its interval can never reach
  beyond their smallest and largest and covers the true mean about three times in
  four (``tests/eval/test_stats.py`` measures this). We use the Student t interval
  ``mean ± t_{0.975, n−1} · s/√n`` (``scipy.stats.t``) instead, which is exact for
  normal values and honest about how little three numbers say (t_{0.975, 2} = 4.30).
* **One seed**: the interval is over the items (questions) of that run: a percentile
  bootstrap of the mean (or of any statistic, such as average precision) over items,
  in Hesterberg's *expanded* form (tail percentiles widened by √(n/(n−1)) and t
  quantiles; plain 2.5/97.5 percentiles cover about 93% at n = 30, the expanded ones
  95%; :func:`_expanded_tail`).
  This measures sampling noise over questions, not over training seeds; ``ci_method``
  says which one a number carries.
* **One seed, a claim about one statistic** (not a paired comparison of two methods,
  e.g. "the spread of ΔCor exceeds re-sampling noise", or a difference of two shares
  measured on different questions): :func:`bootstrap_test`, the same expanded
  percentile bootstrap plus a bootstrap p-value, with independent samples resampled
  apart.
* ``method="auto"`` takes the t interval below :data:`AUTO_T_BELOW` values and the
  percentile bootstrap from there on; ``"t"`` and ``"bootstrap"`` force one
  (:data:`INTERVAL_METHODS`).
* **A bounded metric** (a rate, ROUGE, an AUC, a p-value: ``bounds=(0, 1)``; privleak:
  ``(-100, ...)``): a t interval on the raw values can leave the range (three seeds of
  an AUC at 0.39 gave [−0.78, 1.56]). With ``bounds`` the t interval is taken on the
  logit scale of the values rescaled to (0, 1) (on the log scale of the distance to
  the bound when only one bound is finite) and mapped back, so it lies inside the
  range and is asymmetric near a bound; values on a bound are moved inside by a tenth
  of the smallest distance of another value to it (a continuity correction on the
  data's own scale: three seeds at 0, 0.1, 0.2 give 0.001 to 0.80). The mean stays the
  arithmetic mean; in the rare case it falls outside the back-mapped interval the
  interval is widened to it. ``ci_method`` says ``"t interval on the logit scale over
  seeds"``. A percentile bootstrap of a bounded statistic stays inside its range by
  construction. The range is stored with the headline (``"range": [lo, hi]``, None
  for an open side) and :func:`kbnb.eval.metrics_file.check_headline_shape` rejects an
  interval outside it.

Every interval is recorded in the shape ``{"mean", "ci95": [lo, hi], "values", "n",
"ci_method"}`` (a *headline*), which :func:`kbnb.eval.metrics_file.check_headline_shape`
validates in ``metrics.json``.

Too few items for an interval
-----------------------------
An interval needs at least two items (and a bootstrapped statistic must be defined on
most resamples). When a run has fewer, e.g. a test set of 12 questions of which the
untuned model knew one, the number is *not measurable*: :func:`headline` and
:func:`bootstrap_test` with ``too_few="report"`` return :func:`not_measurable`
(``{"mean": the value or None, "ci95": None, "values", "n", "ci_method": "not
measurable: <reason>", "measurable": False, "reason"}``), which
:func:`kbnb.eval.metrics_file.check_headline_shape`,
:func:`kbnb.eval.metrics_file.headline_section` and
:func:`kbnb.eval.metrics_file.format_mean_ci` accept, instead of raising
:class:`TooFewItems` (a ``ValueError``, the default).

All functions are deterministic given ``seed``; they need only numpy and scipy.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import stats as _st

from kbnb.core.checks import check_choice

AUTO_T_BELOW = 30          # method="auto": Student t below this many values, bootstrap from it
N_BOOT = 10_000            # default bootstrap resamples
_CHUNK = 2_000_000         # bootstrap index entries drawn at once (memory bound)
INTERVAL_METHODS = ("auto", "t", "bootstrap")  # the method= of ci95 and headline
UNIT = (0.0, 1.0)          # bounds of a rate, a share, ROUGE, an AUC, a p-value
UNBOUNDED = (None, None)   # bounds of a difference, a ratio, a loss


# ---- input checks ---------------------------------------------------------------------

class TooFewItems(ValueError):
    """Too few items (or too few defined bootstrap resamples) for a 95% interval.
    ``n``: the number of items there were; ``reason``: why, in words."""

    def __init__(self, message: str, n: int = 0, reason: str | None = None):
        super().__init__(message)
        self.n = int(n)
        self.reason = reason  # None: too few items (see too_few_reason)

    def why(self, items: str = "items") -> str:
        """The reason in words, naming the ``items``."""
        return self.reason or too_few_reason(self.n, items)


def too_few_reason(n: int, items: str = "items", need: int = 2) -> str:
    """``"only 1 question; an interval needs at least 2"``."""
    return f"only {n} {_count_noun(n, items)}; an interval needs at least {need}"


def check_values(x, name: str, min_n: int = 1) -> np.ndarray:
    """``x`` as a finite 1-D float array of at least ``min_n`` values, else a ValueError
    that names the parameter."""
    if x is None:
        raise ValueError(f"{name} is None: give a list of numbers")
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a list of numbers: {e}") from None
    if a.ndim != 1:
        raise ValueError(f"{name} must be a flat list of numbers; got shape {a.shape}")
    if a.size < min_n:
        more = "" if min_n <= 1 else (
            f"; an interval needs at least {min_n} (with one seed, give the per-question "
            "values instead)")
        raise TooFewItems(f"{name} has {a.size} value(s){more}" if a.size else
                          f"{name} is empty", a.size)
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} contains {int(bad.sum())} NaN/inf value(s) (first at index {i})")
    return a


def check_columns(x, name: str, min_n: int = 2) -> list[np.ndarray]:
    """Per-item data for a statistic: one array, or a tuple/list of equal-length arrays
    (e.g. ``(labels, scores)``). Returns the list of columns."""
    cols = list(x) if isinstance(x, tuple) else [x]
    out = [check_values(c, f"{name}[{i}]" if len(cols) > 1 else name, min_n) for i, c in enumerate(cols)]
    lens = {len(c) for c in out}
    if len(lens) > 1:
        raise ValueError(f"{name}: columns have different lengths {[len(c) for c in out]}")
    return out


def check_n_boot(n_boot) -> int:
    """The number of bootstrap resamples, an integer ≥ 100."""
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise ValueError(f"n_boot={n_boot!r}: give an integer of at least 100")
    return int(n_boot)


# ---- intervals ----------------------------------------------------------------------

def _t_interval(a: np.ndarray) -> tuple[float, float]:
    n, m = a.size, float(a.mean())
    half = float(_st.t.ppf(0.975, n - 1)) * float(a.std(ddof=1)) / math.sqrt(n)
    return m - half, m + half


def check_bounds(bounds) -> tuple:
    """``bounds`` as ``(lo, hi)`` floats or None (an open side); lo < hi when both given."""
    if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
        raise ValueError(f"bounds={bounds!r}: expected (lo, hi), None for an open side, e.g. "
                         f"{UNIT} for a rate or {UNBOUNDED}")
    lo, hi = (None if b is None else float(b) for b in bounds)
    if (lo is not None and not math.isfinite(lo)) or (hi is not None and not math.isfinite(hi)):
        raise ValueError(f"bounds={bounds!r}: use None for an open side, not inf or NaN")
    if lo is not None and hi is not None and not lo < hi:
        raise ValueError(f"bounds={bounds!r}: need lo < hi")
    return lo, hi


def _scale_name(bounds) -> str | None:
    lo, hi = bounds
    return None if lo is None and hi is None else ("logit" if lo is not None and hi is not None
                                                   else "log")


def _bounded_t_interval(a: np.ndarray, bounds) -> tuple[float, float]:
    """t interval on the logit (two bounds) or log (one bound) scale, mapped back: inside
    ``bounds`` and containing the arithmetic mean (see the module docstring)."""
    lo_b, hi_b = bounds
    tol = 1e-9 * max([1.0] + [abs(b) for b in bounds if b is not None])
    if (lo_b is not None and a.min() < lo_b - tol) or (hi_b is not None and a.max() > hi_b + tol):
        raise ValueError(f"values {a.min():g} to {a.max():g} lie outside bounds={list(bounds)}")
    m = float(a.mean())
    if np.all(a == a[0]):
        return m, m
    if lo_b is not None and hi_b is not None:
        u = (a - lo_b) / (hi_b - lo_b)
        d = np.minimum(u, 1 - u)  # distance to the nearer bound
    elif lo_b is not None:
        u = a - lo_b
        d = u
    else:
        u = hi_b - a
        d = u
    inside = d[d > 0]
    eps = 0.1 * float(inside.min()) if inside.size else 1e-6
    if hi_b is not None and lo_b is not None:
        u = np.clip(u, eps, 1 - eps)
        z = np.log(u) - np.log1p(-u)
    else:
        z = np.log(np.maximum(u, eps))
    z_lo, z_hi = _t_interval(z)
    if hi_b is not None and lo_b is not None:
        back = lambda t: lo_b + (hi_b - lo_b) / (1 + math.exp(-t)) if t > -700 else lo_b  # noqa: E731
        lo, hi = back(z_lo), back(z_hi)
    elif lo_b is not None:
        lo, hi = lo_b + math.exp(min(z_lo, 700)), lo_b + math.exp(min(z_hi, 700))
    else:
        lo, hi = hi_b - math.exp(min(z_hi, 700)), hi_b - math.exp(min(z_lo, 700))
    return min(lo, m), max(hi, m)


def bootstrap_replicates(cols: list[np.ndarray], statistic, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` bootstrap replicates: resample item indices with replacement (the same
    indices for every column, so pairs and (label, score) rows stay together)."""
    rng = np.random.default_rng(seed)
    n = cols[0].size
    out = np.empty(n_boot)
    step = max(1, _CHUNK // n)
    for s in range(0, n_boot, step):
        k = min(step, n_boot - s)
        idx = rng.integers(0, n, size=(k, n))
        if statistic is None:
            out[s:s + k] = cols[0][idx].mean(axis=1)
        else:
            out[s:s + k] = [statistic(*(c[row] for c in cols)) for row in idx]
    return out


def _expanded_tail(n: int) -> float:
    """Tail share (per side) of Hesterberg's expanded percentile interval: the
    bootstrap spread is the divide-by-n standard deviation and its quantiles are
    normal ones, so plain 2.5/97.5 percentiles are too narrow for small n (coverage
    about 93% at n = 30). Widening to Φ(−√(n/(n−1))·t_{0.975,n−1}) repairs both
    (Hesterberg 2015, "What teachers should know about the bootstrap", §4.3)."""
    return float(_st.norm.cdf(-math.sqrt(n / (n - 1)) * _st.t.ppf(0.975, n - 1)))


def percentile_interval(reps: np.ndarray, n: int, what: str) -> tuple[float, float]:
    """Expanded percentile interval (:func:`_expanded_tail`) of the finite ``reps`` (bootstrap
    replicates of a statistic over ``n`` items); :class:`TooFewItems` when the statistic is
    NaN on half of them or more. what: the data's name, for the message."""
    ok = np.isfinite(reps)
    if ok.mean() < 0.5:
        raise TooFewItems(f"{what}: the statistic was NaN on {int((~ok).sum())} of "
                          f"{reps.size} bootstrap resamples; too few items to bootstrap it", n,
                          f"the statistic is undefined on {int((~ok).sum())} of {reps.size} "
                          f"bootstrap resamples of the {n} items")
    tail = 100 * _expanded_tail(n)
    lo, hi = np.percentile(reps[ok], [tail, 100 - tail])
    return float(lo), float(hi)


def _resolve_method(method: str, n: int) -> str:
    check_choice("method", method, INTERVAL_METHODS)
    if method == "auto":
        return "t" if n < AUTO_T_BELOW else "bootstrap"
    return method


def ci_label(kind: str, over: str, scale: str | None = None) -> str:
    """The ``ci_method`` of an interval: ``"t interval on the logit scale over seeds"``,
    ``"bootstrap over questions"``. kind: ``"t"`` or ``"bootstrap"``."""
    on = f" on the {scale} scale" if scale and kind == "t" else ""
    return f"{'t interval' if kind == 't' else 'bootstrap'}{on} over {over}"


def _with_range(h: dict, bounds) -> dict:
    """``h`` with its range stored (``"range": [lo, hi]``), when bounds were given."""
    if bounds is not None:
        h["range"] = list(bounds)
    return h


NOT_MEASURABLE = "not measurable"


def not_measurable(value=None, n: int = 0, reason: str = "too few items",
                   items: str = "questions", values=()) -> dict:
    """A headline that has no interval: ``{"mean": value (None if there is none),
    "ci95": None, "values": [...], "n": n, "ci_method": "not measurable: <reason>",
    "measurable": False, "reason": reason, "items": items}``.

    value: the number itself when it can be computed (e.g. the one question's 0/1), else
    None. n: how many ``items`` there were. reason: why there is no interval, in words
    (it reaches the page and ``metrics.json``). values: the per-item values (≤ n rows)."""
    v = None if value is None or not math.isfinite(float(value)) else float(value)
    return {"mean": v, "ci95": None, "values": list(values), "n": int(n),
            "ci_method": f"{NOT_MEASURABLE}: {reason}", "measurable": False,
            "reason": str(reason), "items": str(items)}


def _count_noun(n: int, items: str) -> str:
    """After 1 the first plural word is singular: ``"idk questions"`` → ``"idk question"``."""
    words = items.split(" ")
    if n == 1:
        for i, w in enumerate(words):
            if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
                words[i] = w[:-1]
                break
    return " ".join(words)


def is_measurable(h) -> bool:
    """Whether a headline dict carries an interval."""
    return not (isinstance(h, dict) and (h.get("measurable") is False
                                         or ("ci95" in h and h["ci95"] is None)))


def _too_few(too_few: str) -> str:
    check_choice("too_few", too_few, ("raise", "report"))
    return too_few


def ci95(values, method: str = "auto", n_boot: int = N_BOOT, seed: int = 0,
         over: str = "values", bounds=None) -> dict:
    """Mean of ``values`` with a 95% interval, as a headline dict.

    values: 1-D sequence of n ≥ 2 finite numbers (one per seed, or one per question).
    method: ``"t"`` (Student t: mean ± t_{0.975,n−1}·s/√n), ``"bootstrap"`` (expanded
    percentile bootstrap of the mean, ``n_boot`` resamples, seeded by ``seed``) or ``"auto"``
    (t below :data:`AUTO_T_BELOW` values, bootstrap from there on; see the module
    docstring for why). over: what the values are (``"seeds"``, ``"questions"``), for
    the label. bounds: the metric's range ``(lo, hi)`` (None: an open side), e.g.
    :data:`UNIT`; the t interval is then taken on the logit (log) scale and stays inside
    it, and the headline stores ``"range"``. None: no range declared (plain t interval).

    Returns ``{"mean": float, "ci95": [lo, hi], "values": [n floats], "n": n,
    "ci_method": "t interval over seeds" | "bootstrap over questions" | ...}``.
    """
    a = check_values(values, "values", min_n=2)
    kind = _resolve_method(method, a.size)
    n_boot = check_n_boot(n_boot)
    bounds = None if bounds is None else check_bounds(bounds)
    scale = None if bounds is None else _scale_name(bounds)
    if kind == "t":
        lo, hi = _t_interval(a) if scale is None else _bounded_t_interval(a, bounds)
    else:
        lo, hi = percentile_interval(bootstrap_replicates([a], None, n_boot, seed), a.size, "values")
    return _with_range({"mean": float(a.mean()), "ci95": [lo, hi], "values": a.tolist(),
                        "n": int(a.size), "ci_method": ci_label(kind, over, scale)}, bounds)


def headline(per_seed=None, per_item=None, statistic: Callable | None = None,
             method: str = "auto", n_boot: int = N_BOOT, seed: int = 0,
             items: str = "questions", too_few: str = "raise", bounds=None) -> dict:
    """One headline number with its 95% interval, over seeds when there are several,
    else over the items of the single run.

    per_seed: the metric of each run, one float per seed (length k), or None.
    per_item: the single run's per-item data (length n items): a 1-D sequence whose mean
        is the metric (e.g. 0/1 correctness per question), or, with ``statistic``, one
        array or a tuple of equal-length arrays, e.g. ``(labels, scores)``.
    statistic: None (the metric is the mean of ``per_item``) or a function of the
        per-item columns returning a float, e.g. ``lambda y, s: average_precision(y, s)``;
        it is recomputed on every bootstrap resample of the items.
    items: the name of the items, for the label (``"questions"``, ``"authors"``): say what
        they truly are (a run's one value repeated is no set of questions).
    too_few: ``"raise"`` (:class:`TooFewItems`, a ValueError) or ``"report"``: with
        fewer than two items (one seed and a single per-item value, or a statistic
        undefined on most resamples) return :func:`not_measurable` with the value, n
        and the reason instead. Where an interval can be formed both give the same.
    bounds: the metric's range (:func:`ci95`); stored as ``"range"``.

    k ≥ 2 seeds: :func:`ci95` over the seeds (t interval for few seeds). One seed (or
    None): :func:`ci95` over the items, or a percentile bootstrap of ``statistic``.
    When a single seed's value is given with ``per_item``, it must equal the metric
    computed from ``per_item`` (a guard against passing the wrong per-item values).
    Returns the headline dict of :func:`ci95`.
    """
    if per_seed is not None:
        s = check_values(per_seed, "per_seed")
        if s.size >= 2:
            return ci95(s, method=method, n_boot=n_boot, seed=seed, over="seeds", bounds=bounds)
    else:
        s = None
    if per_item is None:
        raise ValueError("per_seed has one value and per_item is None: one seed has no "
                         "interval over seeds; give per_item (the run's per-question values)"
                         if s is not None else "give per_seed (≥ 2 seeds) or per_item")
    if _too_few(too_few) == "report":
        try:
            return headline(per_seed, per_item, statistic, method, n_boot, seed, items,
                            bounds=bounds)
        except TooFewItems as e:
            return _with_range(_not_measurable_from(e, per_seed, per_item, statistic, items),
                               None if bounds is None else check_bounds(bounds))
    if statistic is None:
        h = ci95(check_values(per_item, "per_item", min_n=2), method=method, n_boot=n_boot,
                 seed=seed, over=items, bounds=bounds)
    else:
        check_choice("method", method, ("auto", "bootstrap"))
        cols = check_columns(per_item, "per_item")
        value = float(statistic(*cols))
        if not math.isfinite(value):
            raise ValueError(f"statistic is {value} on the full per_item data")
        lo, hi = percentile_interval(bootstrap_replicates(cols, statistic, check_n_boot(n_boot), seed),
                                      cols[0].size, "per_item")
        values = cols[0].tolist() if len(cols) == 1 else np.column_stack(cols).tolist()
        h = _with_range({"mean": value, "ci95": [lo, hi], "values": values,
                         "n": int(cols[0].size), "ci_method": ci_label("bootstrap", items)},
                        None if bounds is None else check_bounds(bounds))
    if s is not None and not math.isclose(s[0], h["mean"], rel_tol=1e-6, abs_tol=1e-9):
        raise ValueError(f"per_seed=[{s[0]:g}] but per_item gives {h['mean']:g}: per_item must "
                         "be the same run's per-item values (pass statistic= if the metric "
                         "is not their mean)")
    return h


def _not_measurable_from(e: TooFewItems, per_seed, per_item, statistic, items) -> dict:
    """:func:`not_measurable` for a :class:`TooFewItems` raised by :func:`headline`: the
    value is the single seed's recorded one if any, else the metric on the items."""
    value = None
    if per_seed is not None and np.size(per_seed) == 1:
        value = float(np.asarray(per_seed, dtype=float).ravel()[0])
    try:
        cols = [np.asarray(c, dtype=float).ravel() for c in
                (per_item if isinstance(per_item, tuple) else (per_item,))]
        rows = cols[0].tolist() if len(cols) == 1 else np.column_stack(cols).tolist()
        if value is None and cols[0].size:
            value = float(cols[0].mean()) if statistic is None else float(statistic(*cols))
    except (TypeError, ValueError, ZeroDivisionError):
        rows = []
    return not_measurable(value, e.n, e.why(items), items, rows)


def _boot_stats_apart(samples: list[np.ndarray], statistic, n_boot: int,
                      seed: int) -> np.ndarray:
    """``n_boot`` bootstrap replicates of ``statistic(*samples)`` with every sample
    resampled on its own (independent samples, lengths may differ)."""
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    step = max(1, _CHUNK // sum(x.size for x in samples))
    for s in range(0, n_boot, step):
        k = min(step, n_boot - s)
        idx = [rng.integers(0, x.size, size=(k, x.size)) for x in samples]
        out[s:s + k] = [statistic(*(x[i[r]] for x, i in zip(samples, idx))) for r in range(k)]
    return out


def share_above(successes: int, n: int, null: float, level: float = 0.95) -> dict:
    """Is a share ``successes / n`` above ``null``? The exact (Clopper-Pearson) interval of
    the share, inside [0, 1] by construction, and the exact one-sided binomial p-value of
    ``share <= null``. ``above`` when the p-value is below ``1 - level`` (one-sided), so
    that at ``level`` 0.95 the share is above chance exactly when a one-sided 95% bound
    clears it. Returns ``{"share", "successes", "n", "null", "ci95", "p_value", "above",
    "method"}``; with ``n == 0`` the share, interval and p-value are None and ``above`` False.
    """
    if not (isinstance(n, (int, np.integer)) and n >= 0):
        raise ValueError(f"n={n!r}: must be an integer >= 0")
    if not (isinstance(successes, (int, np.integer)) and 0 <= successes <= n):
        raise ValueError(f"successes={successes!r}: must be an integer in [0, n={n}]")
    if not 0 < null < 1:
        raise ValueError(f"null={null!r}: must be in (0, 1)")
    method = "exact binomial (Clopper-Pearson interval, one-sided p-value)"
    if n == 0:
        return {"share": None, "successes": 0, "n": 0, "null": float(null), "ci95": None,
                "p_value": None, "above": False, "method": method}
    res = _st.binomtest(int(successes), int(n), float(null), alternative="greater")
    ci = _st.binomtest(int(successes), int(n), float(null)).proportion_ci(level, "exact")
    p = float(res.pvalue)
    return {"share": successes / n, "successes": int(successes), "n": int(n),
            "null": float(null), "ci95": [float(ci.low), float(ci.high)], "p_value": p,
            "above": bool(p < 1 - level), "method": method}


def bootstrap_test(per_item, statistic: Callable, null: float = 0.0, n_boot: int = N_BOOT,
                   seed: int = 0, items: str = "questions",
                   paired: bool = True, too_few: str = "raise") -> tuple[dict, float]:
    """One run's statistic with its 95% interval and the two-sided bootstrap p-value of
    "statistic = ``null``", for a claim about a single statistic (e.g. "the spread of a
    change exceeds its noise", "one share is below another") that is no paired
    comparison of two methods.

    per_item: one array or a tuple of arrays (the statistic's columns).
    statistic: function of the columns returning a float.
    paired: True: the columns have one value per item (equal lengths) and are resampled
        together, as in :func:`headline`; False: the columns are independent samples
        (lengths may differ, e.g. two shares measured on different questions) and each
        is resampled on its own.
    The interval is the expanded percentile bootstrap of :func:`headline` (``n`` for
    the expansion: the number of items, unpaired the smallest sample); the p-value is
    twice the share of resampled statistics on the far side of ``null`` (capped at 1),
    as in :func:`kbnb.eval.comparisons.paired_compare`.

    too_few: ``"raise"`` (:class:`TooFewItems`) or ``"report"``: with fewer than two
    items in a column return ``(not_measurable(...), nan)``.

    Returns ``(h, p)``: ``h = {"mean", "ci95": [lo, hi], "values", "n", "ci_method"}``
    (unpaired: ``values`` is [], ``n`` the number of items over all samples), ready for
    ``Chapter.check_interval``.
    """
    if _too_few(too_few) == "report":
        try:
            return bootstrap_test(per_item, statistic, null, n_boot, seed, items, paired)
        except TooFewItems as e:
            cols = per_item if isinstance(per_item, tuple) else (per_item,)
            try:
                value = float(statistic(*(np.asarray(c, dtype=float) for c in cols)))
            except (TypeError, ValueError, ZeroDivisionError, IndexError):
                value = None
            return not_measurable(value, e.n, e.why(items), items), float("nan")
    n_boot = check_n_boot(n_boot)
    if not callable(statistic):
        raise ValueError("statistic must be a function of the per-item columns")
    if paired:
        cols = check_columns(per_item, "per_item")
    else:
        cols = [check_values(c, f"per_item[{i}]", min_n=2)
                for i, c in enumerate(per_item if isinstance(per_item, tuple) else (per_item,))]
    value = float(statistic(*cols))
    if not math.isfinite(value):
        raise ValueError(f"statistic is {value} on the full per_item data")
    if paired:
        reps = bootstrap_replicates(cols, statistic, n_boot, seed)
        n_tail = n = cols[0].size
        values = cols[0].tolist() if len(cols) == 1 else np.column_stack(cols).tolist()
    else:
        reps = _boot_stats_apart(cols, statistic, n_boot, seed)
        n_tail, n, values = min(c.size for c in cols), sum(c.size for c in cols), []
    lo, hi = percentile_interval(reps, n_tail, "per_item")
    r = reps[np.isfinite(reps)]
    p = float(min(1.0, 2 * min((r <= null).mean(), (r >= null).mean())))
    return ({"mean": value, "ci95": [lo, hi], "values": values, "n": int(n),
             "ci_method": ci_label("bootstrap", items)}, p)


