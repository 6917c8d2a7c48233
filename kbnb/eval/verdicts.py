"""Verdicts: a paired comparison said in one computed sentence, with a status.

:func:`check` turns a target ("AP is higher than the untuned model's", "exact match
above 0.9") into a paired comparison (:func:`kbnb.eval.comparisons.paired_compare`) and
:func:`verdict` says what its interval shows, one of :data:`STATUSES`:

* ``PASS`` (the effect is shown): the 95% interval excludes 0 on the hoped-for side and
  the test gives p < 0.05;
* ``MISS`` (the opposite is shown): the same on the other side;
* ``EXCLUDED`` (excluded at the paper's size): neither of those, and the interval lies
  strictly inside (−size, +size), ``size`` being the smallest effect that matters that
  the claim declares (``smallest_effect``, the paper's effect in the claim's units, with
  its ``smallest_effect_source``): whatever the effect is, it is smaller than the paper's
  in either direction;
* ``UNCLEAR`` (the data cannot tell): everything else, and always when the claim declares
  no size.

PASS and MISS take precedence: an effect shown inside ±size stays shown (its sentence adds
that it is smaller than the declared size). EXCLUDED replaces only UNCLEAR. The sentence,
with its interval, its test and p-value, reaches the page and ``metrics.json`` as computed
here.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from kbnb.core.checks import check_choice
from kbnb.eval.comparisons import (
    ALPHA,
    Comparison,
    check_smallest_effect,
    excludes_size,
    paired_compare,
)
from kbnb.eval.metrics_file import format_number
from kbnb.eval.stats import check_bounds, check_values, ci95

STATUSES = ("PASS", "MISS", "UNCLEAR", "EXCLUDED")  # every status a check can have
# the status in words, on the chapters' checks tables, the results page and the recordings
STATUS_WORDS = {"PASS": "shown", "MISS": "opposite shown", "UNCLEAR": "cannot tell",
                "EXCLUDED": "excluded at the paper's size"}


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def _with_n(ci_method: str, n: int) -> str:
    return ci_method.replace(" over ", f" over {n} ", 1)


@dataclass
class Verdict:
    """``status``: ``"PASS"`` (the interval excludes 0 on the better side), ``"MISS"``
    (it excludes 0 on the worse side), ``"EXCLUDED"`` (it contains 0 but lies inside
    ±``smallest_effect``) or ``"UNCLEAR"`` (otherwise). ``sentence``: the computed English
    sentence. ``result``: the :class:`Comparison` behind it. ``smallest_effect`` and
    ``smallest_effect_source``: the size the claim declared and where it comes from (None
    when it declared none)."""
    status: str
    sentence: str
    result: Comparison | None = field(default=None, repr=False)
    smallest_effect: float | None = None
    smallest_effect_source: str | None = None

    def __str__(self) -> str:
        return self.sentence


def verdict(effect: str, result, better: str = "higher", unit: str = "", *,
            subject: str | None = None, baseline: str | None = None,
            digits: int = 3, smallest_effect: float | None = None,
            smallest_effect_source: str | None = None) -> Verdict:
    """The sentence and status for a paired comparison.

    effect: the quantity compared, e.g. ``"over-refusal"``. result: a
    :class:`Comparison` (or its ``as_dict()``). better: ``"higher"`` or ``"lower"``:
    which direction of b − a is the hoped-for effect. unit: appended to every number
    (``"%"``, ``" pp"``). subject / baseline: the new method and what it is compared
    with (optional), e.g. ``subject="CRaFT", baseline="Cor-RAIT"``.
    smallest_effect: the smallest effect that matters, in the units of b − a (the
    paper's effect; None: none declared, the verdict is never EXCLUDED), with
    smallest_effect_source saying where it comes from
    (:func:`kbnb.eval.comparisons.check_smallest_effect`).

    Example: ``"CRaFT lowers over-refusal by 0.031 relative to Cor-RAIT (95% CI 0.010 to
    0.052, paired bootstrap over 99 questions; sign test p = 0.004): the effect is
    shown."`` The interval is given for the size of the change the sentence names
    (for "lowers", the interval of a − b). Rule: PASS or MISS when the interval excludes 0
    and p < :data:`ALPHA`; otherwise EXCLUDED when the interval lies strictly inside
    ±smallest_effect (e.g. ``"...: any change is smaller than 0.379 either way (the seed
    report's fall ...), so an effect of that size is excluded."``), else UNCLEAR.
    """
    check_choice("better", better, ("higher", "lower"))
    size, source = check_smallest_effect(smallest_effect, smallest_effect_source)
    if not isinstance(effect, str) or not effect.strip():
        raise ValueError(f"effect={effect!r}: name the quantity compared, e.g. 'over-refusal'")
    r = result.as_dict() if isinstance(result, Comparison) else dict(result)
    missing = [k for k in ("diff", "ci95", "p_value", "test", "n", "ci_method") if k not in r]
    if missing:
        raise ValueError(f"result is missing {missing}: pass the output of paired_compare")
    diff, (lo, hi) = float(r["diff"]), map(float, r["ci95"])
    if diff < 0:
        mag, clo, chi = -diff, -hi, -lo
    else:
        mag, clo, chi = diff, lo, hi
    m = format_number(mag, digits, unit)
    if subject:
        verb = {1: "raises", -1: "lowers", 0: "leaves"}[int(np.sign(diff))]
        head = (f"{subject} leaves {effect} unchanged" if diff == 0
                else f"{subject} {verb} {effect} by {m}")
        head += f" relative to {baseline}" if baseline else ""
    else:
        if diff == 0:
            head = f"{effect} is unchanged" + (f" from {baseline}" if baseline else "")
        else:
            word = "higher" if diff > 0 else "lower"
            head = f"{effect} is {m} {word}" + (f" than {baseline}" if baseline else "")
    detail = (f"95% CI {format_number(clo, digits, unit)} to {format_number(chi, digits, unit)}, "
              f"{_with_n(r['ci_method'], int(r['n']))}; {r['test']} {_p_text(float(r['p_value']))}")
    p = float(r["p_value"])
    inside = excludes_size((lo, hi), size)
    s_text = f"{format_number(size, digits, unit)} ({source})" if size is not None else ""
    if (lo <= 0 <= hi or p >= ALPHA) and inside:
        status, tail = "EXCLUDED", (f"any change is smaller than {s_text} either way, so an "
                                    "effect of that size is excluded")
        if not lo <= 0 <= hi:
            tail = (f"the interval excludes 0 but the {r['test']} does not reject no effect; "
                    + tail)
    elif lo <= 0 <= hi:
        status, tail = "UNCLEAR", "the data cannot tell whether there is an effect"
    elif p >= ALPHA:
        status, tail = "UNCLEAR", (f"the interval excludes 0 but the {r['test']} does not "
                                   "reject no effect, so the data cannot tell for sure")
    elif (lo > 0) == (better == "higher"):
        status, tail = "PASS", "the effect is shown"
    else:
        status, tail = "MISS", f"the opposite of the expected effect is shown ({effect} is not {better})"
    if status in ("PASS", "MISS") and inside:
        tail += f", though it is smaller than {s_text}"
    elif status == "UNCLEAR" and size is not None:
        tail += f"; an effect of {s_text} is not excluded either"
    sentence = f"{head[0].upper()}{head[1:]} ({detail}): {tail}."
    return Verdict(status, sentence, result if isinstance(result, Comparison) else None,
                   size, source)


def _inside_range(res: Comparison, new: np.ndarray, target: float, bounds,
                  over: str) -> Comparison:
    """``res`` (``new`` − ``target``, a t interval) with the interval of ``new`` taken on the
    logit (log) scale of ``bounds`` (:func:`kbnb.eval.stats.ci95`) and shifted by
    ``target``; shown again only when that interval excludes 0 and p < 0.05."""
    h = ci95(new, method="t", over=over, bounds=bounds)
    lo, hi = h["ci95"][0] - target, h["ci95"][1] - target
    return dataclasses.replace(res, ci95=[lo, hi], ci_method=h["ci_method"] + ", less the target",
                               shown=bool((lo > 0 or hi < 0) and res.p_value < ALPHA))


def check(effect: str, new, baseline, better: str = "higher", unit: str = "", *,
          subject: str | None = None, baseline_name: str | None = None, digits: int = 3,
          smallest_effect: float | None = None, smallest_effect_source: str | None = None,
          bounds=None, **compare) -> Verdict:
    """Turn a target into a paired comparison with its uncertainty, and its verdict.

    effect: the quantity, e.g. ``"AP"``. new, baseline: per-item (or per-seed) values of
    the new method and of the baseline, paired, as in :func:`paired_compare` (``a`` =
    baseline, ``b`` = new). ``baseline`` may also be a single number, a fixed target:
    "exact match above 0.9" is ``check("exact match", per_question_em, 0.9)``.
    better: ``"higher"`` or ``"lower"``. ``**compare`` goes to :func:`paired_compare`
    (``statistic``, ``method``, ``test``, ``n_boot``, ``seed``, ``over``).
    smallest_effect, smallest_effect_source: the smallest effect that matters and its
    source, as in :func:`verdict` (checked before any computation).
    bounds: with a fixed target only, the range ``(lo, hi)`` of ``new`` (e.g.
    :data:`kbnb.eval.stats.UNIT` for a share): a t interval over seeds is then taken on
    the logit (log) scale of ``new`` and shifted by the target, so that the interval of
    the difference stays inside ``[lo − target, hi − target]`` (a plain t interval over
    three seeds of a share at 0.4 reached −1.6 to 0.8); the test stays the t test.

    Example: ``check("AP", tuned_cols, untuned_cols, statistic=ap, subject="R-Tuning",
    baseline_name="the untuned model")``. Returns a :class:`Verdict` (``status``,
    ``sentence``, ``result``).
    """
    check_choice("better", better, ("higher", "lower"))
    check_smallest_effect(smallest_effect, smallest_effect_source)
    fixed = np.ndim(baseline) == 0 and not isinstance(baseline, tuple)
    if bounds is not None:
        bounds = check_bounds(bounds)
        if not fixed:
            raise ValueError("bounds= is for a fixed target (a single-number baseline); a "
                             "difference of paired values has no range to keep")
    if fixed:
        if compare.get("statistic") is not None:
            raise ValueError("baseline is a single number: compare against a fixed target "
                             "only without statistic=")
        target = float(baseline)
        if not math.isfinite(target):
            raise ValueError(f"baseline={baseline!r} must be a finite number")
        nv = check_values(new, "new")
        baseline = np.full(nv.size, target)
        if baseline_name is None:
            baseline_name = format_number(target, digits, unit)
        new = nv
    res = paired_compare(baseline, new, **compare)
    if bounds is not None and res.ci_method.startswith("paired t interval"):
        res = _inside_range(res, new, target, bounds, compare.get("over", "questions"))
    return verdict(effect, res, better=better, unit=unit, subject=subject,
                   baseline=baseline_name, digits=digits, smallest_effect=smallest_effect,
                   smallest_effect_source=smallest_effect_source)

