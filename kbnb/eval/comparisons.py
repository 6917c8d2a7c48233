"""Paired comparisons: two methods measured on the same items (or seeds), and the
difference b − a with its 95% interval and the p-value of a paired test.

Each claim of a chapter ("CRaFT lowers over-refusal", "tuned AP is above untuned AP")
is a paired comparison whose interval decides, in a computed sentence
(:mod:`kbnb.eval.verdicts`), whether the data show it. The interval of the mean
difference is :func:`kbnb.eval.stats.ci95` of the per-pair differences (a t interval
for few pairs, a percentile bootstrap from :data:`kbnb.eval.stats.AUTO_T_BELOW` on); a
statistic such as average precision is compared by a paired bootstrap over items.
A comparison is *shown* when its interval excludes 0 and the test gives p < :data:`ALPHA`.

A claim may declare the smallest effect that matters (:func:`check_smallest_effect`: the
paper's reported effect, in the claim's own units, with its source). When the 95%
interval of the difference lies strictly inside (−size, +size) (:func:`excludes_size`),
the data exclude an effect as large as that in either direction: a precise null is then
said as "excluded at the paper's size" rather than "cannot tell" (an equivalence test, two
one-sided tests at 2.5% each; :mod:`kbnb.eval.verdicts`).

All functions are deterministic given ``seed``; they need only numpy and scipy.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
from scipy import stats as _st

from kbnb.core.checks import check_choice
from kbnb.eval.stats import (
    N_BOOT,
    bootstrap_replicates,
    check_columns,
    check_n_boot,
    check_values,
    ci95,
    ci_label,
    percentile_interval,
)

ALPHA = 0.05               # a comparison is "shown" when its 95% interval excludes 0 and p < ALPHA
PAIRED_TESTS = ("auto", "sign", "wilcoxon", "t", "bootstrap")  # the test= of paired_compare


@dataclass
class Comparison:
    """Result of :func:`paired_compare`: the difference b − a with its 95% interval.

    diff: mean (or statistic) of b minus that of a. ci95: [lo, hi] of the difference.
    p_value: two-sided p of ``test``. n: number of pairs. shown: the interval excludes 0
    and p < 0.05.
    direction: ``"higher"`` (b > a), ``"lower"`` or ``"equal"``, of the point estimate.
    ci_method: e.g. ``"paired bootstrap over questions"``. values: per-pair differences
    (mean mode) or [] (statistic mode).
    """
    diff: float
    ci95: list
    p_value: float
    test: str
    n: int
    shown: bool
    direction: str
    ci_method: str
    values: list = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        """A JSON-ready dict of all fields except the per-pair values."""
        d = asdict(self)
        d.pop("values")
        return d


def check_smallest_effect(size, source) -> tuple[float | None, str | None]:
    """Validate a claim's smallest effect that matters; return ``(size, source)``.

    size: None (the claim declares none: it can never read "excluded") or a finite number
    > 0 in the claim's own units (the magnitude of the paper's effect; its sign does not
    matter, the band is ±size). source: where the size comes from, e.g. ``"the seed
    report's fall, 0.571 → 0.192 (Llama-2-7B on TOFU)"``; required with a size, and
    only with one. Raises ValueError naming ``smallest_effect`` or
    ``smallest_effect_source``."""
    if size is None:
        if source is not None:
            raise ValueError(f"smallest_effect_source={source!r} was given without "
                             "smallest_effect: give the size too, or neither")
        return None, None
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, float, np.integer,
                                                                    np.floating)):
        raise ValueError(f"smallest_effect={size!r} must be a number > 0 (the paper's effect "
                         "in the claim's units) or None")
    if not math.isfinite(float(size)) or float(size) <= 0:
        raise ValueError(f"smallest_effect={size!r} must be finite and > 0 (the paper's effect "
                         "in the claim's units) or None")
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"smallest_effect_source={source!r}: say where smallest_effect="
                         f"{size!r} comes from (paper, table, model, data set)")
    return float(size), source.strip()


def excludes_size(ci95, size: float | None) -> bool:
    """Whether the interval ``ci95`` = [lo, hi] lies strictly inside (−size, +size): the
    data exclude an effect of that size in either direction. Always False without a
    size (None)."""
    if size is None:
        return False
    size, _ = check_smallest_effect(size, "the band's size")
    lo, hi = map(float, ci95)
    return -size < lo and hi < size


_TEST_NAMES = {"sign": "sign test", "wilcoxon": "Wilcoxon signed-rank test",
               "t": "paired t test", "bootstrap": "paired bootstrap test"}


def _p_value(test: str, d: np.ndarray) -> float:
    if test == "sign":
        nz = d[d != 0]
        if nz.size == 0:
            return 1.0
        return float(_st.binomtest(int((nz > 0).sum()), int(nz.size), 0.5).pvalue)
    if test == "wilcoxon":
        if not (d != 0).any():
            return 1.0
        return float(_st.wilcoxon(d).pvalue)
    # paired t test
    if float(d.std(ddof=1)) == 0.0:
        return 1.0 if float(d.mean()) == 0.0 else 0.0
    return float(_st.ttest_1samp(d, 0.0).pvalue)


def paired_compare(a, b, statistic: Callable | None = None, method: str = "auto",
                   test: str = "auto", n_boot: int = N_BOOT, seed: int = 0,
                   over: str = "questions") -> Comparison:
    """Compare two methods measured on the same items: the difference b − a.

    a, b: per-item (or per-seed) values of the baseline and of the new method, same
        length n, pair i measured on the same question (or seed). With ``statistic``,
        each is one array or a tuple of arrays (e.g. ``(labels, scores)``) of length n.
    statistic: None (compare means) or a function of the columns returning a float
        (e.g. average precision); then the interval and p-value come from a paired
        bootstrap of ``statistic(b) − statistic(a)`` over items.
    method: interval of the mean difference, as in :func:`ci95` (``"auto"``: paired t
        interval below :data:`kbnb.eval.stats.AUTO_T_BELOW` pairs, paired bootstrap from there on).
    test: ``"sign"`` (exact binomial test on the signs of the non-zero differences;
        for 0/1 outcomes this is the exact McNemar test), ``"wilcoxon"`` (signed-rank,
        zeros dropped), ``"t"`` (paired t test), ``"bootstrap"`` (statistic mode only:
        twice the share of resampled differences on the far side of 0), or ``"auto"``:
        the t test with the t interval (so p < 0.05 exactly when the interval excludes
        0), else the sign test for 0/1 outcomes and Wilcoxon otherwise.
    over: the name of the paired units, for the label (``"questions"``, ``"seeds"``).

    ``shown`` is True when the interval excludes 0 *and* the test agrees (p < 0.05).
    With the t interval and the t test, or a statistic's bootstrap, the two always
    agree; with a percentile bootstrap and few discordant pairs they can differ (5
    questions flipped one way and none the other: the bootstrap interval excludes 0,
    the exact sign test gives p = 0.0625), and then nothing is claimed.
    Returns a :class:`Comparison`.
    """
    check_choice("test", test, PAIRED_TESTS)
    n_boot = check_n_boot(n_boot)
    if statistic is None:
        xa, xb = check_values(a, "a"), check_values(b, "b")
        if xa.size != xb.size:
            raise ValueError(f"a has {xa.size} values but b has {xb.size}: a paired comparison "
                             "needs one pair per item")
        if test == "bootstrap":
            raise ValueError("test='bootstrap' is for statistic comparisons; use 'sign', "
                             "'wilcoxon', 't' or 'auto'")
        d = xb - xa
        h = ci95(d, method=method, n_boot=n_boot, seed=seed, over=over)
        kind = "t" if h["ci_method"].startswith("t interval") else "bootstrap"
        if test == "auto":
            binary = np.isin(np.concatenate([xa, xb]), (0.0, 1.0)).all()
            test = "t" if kind == "t" else ("sign" if binary else "wilcoxon")
        diff, (lo, hi), p, values = h["mean"], h["ci95"], _p_value(test, d), h["values"]
        n = int(d.size)
    else:
        check_choice("method", method, ("auto", "bootstrap"))
        check_choice("test", test, ("auto", "bootstrap"))
        test, kind = "bootstrap", "bootstrap"
        ca, cb = check_columns(a, "a"), check_columns(b, "b")
        if ca[0].size != cb[0].size:
            raise ValueError(f"a has {ca[0].size} items but b has {cb[0].size}: a paired "
                             "comparison needs one pair per item")
        k = len(ca)

        def delta(*cols):
            return statistic(*cols[k:]) - statistic(*cols[:k])

        diff = float(delta(*ca, *cb))
        if not math.isfinite(diff):
            raise ValueError(f"statistic is not finite on the full data (difference {diff})")
        reps = bootstrap_replicates(ca + cb, delta, n_boot, seed)
        lo, hi = percentile_interval(reps, ca[0].size, "a, b")
        r = reps[np.isfinite(reps)]
        p = float(min(1.0, 2 * min((r <= 0).mean(), (r >= 0).mean())))
        values, n = [], int(ca[0].size)
    shown = bool((lo > 0 or hi < 0) and p < ALPHA)
    direction = "higher" if diff > 0 else "lower" if diff < 0 else "equal"
    return Comparison(diff=float(diff), ci95=[float(lo), float(hi)], p_value=p,
                      test=_TEST_NAMES[test], n=n, shown=shown, direction=direction,
                      ci_method="paired " + ci_label(kind, over), values=values)

