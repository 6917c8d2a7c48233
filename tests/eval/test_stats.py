"""kbnb.eval.stats: intervals that cover, one statistic tested, bounded metrics kept in range."""
import math

import numpy as np
import pytest
from scipy import stats as st

from kbnb.eval import stats as S
from kbnb.eval.metrics_file import check_headline_shape

DRAWS = 400
# 95% of DRAWS intervals should contain the truth; a binomial(400, 0.95) lies in
# [0.90, 0.99] with probability > 0.9999, so a miss here is a broken interval.
LO, HI = 0.90, 0.99


# ---- (a) coverage ---------------------------------------------------------------------

def test_t_interval_covers_with_three_seeds_where_the_bootstrap_does_not():
    """Why ci95 takes the t interval for few seeds: with 3 values the percentile
    bootstrap covers the true mean far less often than it claims."""
    rng = np.random.default_rng(7)
    t_hits, boot_hits = [], []
    for i in range(DRAWS):
        x = rng.normal(0.7, 0.05, 3)
        t = S.ci95(x, over="seeds")
        bt = S.ci95(x, method="bootstrap", n_boot=1000, seed=i, over="seeds")
        assert t["ci_method"] == "t interval over seeds"
        assert bt["ci_method"] == "bootstrap over seeds"
        t_hits.append(t["ci95"][0] <= 0.7 <= t["ci95"][1])
        boot_hits.append(bt["ci95"][0] <= 0.7 <= bt["ci95"][1])
    assert LO <= np.mean(t_hits) <= HI, np.mean(t_hits)
    assert np.mean(boot_hits) < 0.85, np.mean(boot_hits)


def test_binary_items_bootstrap_coverage():
    """Per-question 0/1 outcomes (the common case with one seed), p = 0.8, 100 items."""
    rng = np.random.default_rng(11)
    hits = [(lambda h: h["ci95"][0] <= 0.8 <= h["ci95"][1])(
        S.headline(per_item=rng.random(100) < 0.8, n_boot=2000, seed=i)) for i in range(DRAWS)]
    assert LO <= np.mean(hits) <= HI, np.mean(hits)


# ---- (b) the t interval by hand --------------------------------------------------------

def test_t_interval_for_three_seeds_by_hand():
    x = [0.81, 0.86, 0.90]
    m = sum(x) / 3
    s = math.sqrt(sum((v - m) ** 2 for v in x) / 2)
    half = st.t.ppf(0.975, 2) * s / math.sqrt(3)
    h = S.headline(per_seed=x)
    assert h["mean"] == pytest.approx(m, abs=1e-15)
    assert h["ci95"] == pytest.approx([m - half, m + half], abs=1e-12)
    assert h["values"] == x and h["n"] == 3 and h["ci_method"] == "t interval over seeds"


def test_one_seed_falls_back_to_questions_and_is_deterministic():
    items = [1, 0, 1, 1, 1, 0, 1, 1] * 5
    h = S.headline(per_seed=[np.mean(items)], per_item=items)
    assert h["ci_method"] == "bootstrap over questions" and h["n"] == 40
    assert h == S.headline(per_item=items)
    x = np.random.default_rng(0).normal(size=40)
    assert S.ci95(x, seed=3) == S.ci95(x, seed=3) != S.ci95(x, seed=4)
    assert S.headline(per_item=items[:10])["ci_method"] == "t interval over questions"


# ---- (c) bad inputs name the parameter ---------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: S.ci95([]), "values is empty"),
    (lambda: S.ci95([0.5]), "values has 1 value"),
    (lambda: S.ci95([0.5, float("nan"), 0.7]), r"values contains 1 NaN.*index 1"),
    (lambda: S.ci95([[1, 2], [3, 4]]), "values must be a flat list"),
    (lambda: S.ci95(["a", "b"]), "values must be a list of numbers"),
    (lambda: S.ci95([1, 2, 3], method="bca"), "method='bca'"),
    (lambda: S.ci95([1, 2, 3], n_boot=10), "n_boot=10"),
    (lambda: S.headline(), "per_seed"),
    (lambda: S.headline(per_seed=[0.9]), "per_item"),
    (lambda: S.headline(per_seed=[0.9], per_item=[1, 0, 1, 0]), r"per_seed=\[0.9\].*per_item"),
])
def test_bad_inputs_name_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- (d) too few items: not measurable -------------------------------------------------

def test_too_few_items_raise_by_default_and_report_on_request():
    with pytest.raises(S.TooFewItems, match="an interval needs at least 2"):
        S.headline(per_item=[1.0])
    assert issubclass(S.TooFewItems, ValueError)
    h = S.headline(per_seed=[1.0], per_item=[1.0], too_few="report", items="known questions")
    assert h == {"mean": 1.0, "ci95": None, "values": [1.0], "n": 1,
                 "ci_method": "not measurable: only 1 known question; an interval needs "
                              "at least 2",
                 "measurable": False,
                 "reason": "only 1 known question; an interval needs at least 2",
                 "items": "known questions"}
    empty = S.headline(per_item=[], too_few="report")
    assert empty["mean"] is None and empty["n"] == 0
    # a statistic on one row of columns: its value, no interval
    st = S.headline(per_item=([1.0], [0.0]), statistic=lambda a, b: float(a[0] - b[0]),
                    too_few="report")
    assert st["mean"] == 1.0 and st["n"] == 1 and not S.is_measurable(st)
    # where an interval can be formed, "report" gives exactly what "raise" gives
    items = [1, 0, 1, 1, 0] * 8
    assert S.headline(per_item=items, too_few="report") == S.headline(per_item=items)
    with pytest.raises(ValueError, match="too_few='skip'"):
        S.headline(per_item=items, too_few="skip")


def test_a_statistic_undefined_on_most_resamples_is_not_measurable():
    y = np.array([1.0, 0.0, 0.0])  # the statistic needs y[0] == 1: NaN on most resamples
    stat = lambda a: float(a.mean()) if a[0] == 1 else float("nan")  # noqa: E731
    with pytest.raises(S.TooFewItems, match="too few items to bootstrap"):
        S.headline(per_item=(y,), statistic=stat, n_boot=500)
    h = S.headline(per_item=(y,), statistic=stat, n_boot=500, too_few="report")
    assert h["mean"] == pytest.approx(1 / 3) and h["n"] == 3 and "undefined" in h["reason"]


def test_bootstrap_test_reports_too_few_items():
    with pytest.raises(S.TooFewItems):
        S.bootstrap_test(([1.0], [0.0, 1.0]), lambda a, b: float(a.mean() - b.mean()),
                         paired=False)
    h, p = S.bootstrap_test(([1.0], [0.0, 1.0]), lambda a, b: float(a.mean() - b.mean()),
                            paired=False, too_few="report", items="idk questions")
    assert h["mean"] == 0.5 and h["n"] == 1 and math.isnan(p)
    assert h["ci_method"] == "not measurable: only 1 idk question; an interval needs at least 2"


def test_share_above_is_an_exact_binomial_test_inside_the_unit_interval():
    from scipy.stats import binom
    r = S.share_above(10, 20, 0.25)
    assert r["p_value"] == pytest.approx(binom.sf(9, 20, 0.25)) and r["above"]
    lo, hi = r["ci95"]
    assert 0 < lo < 0.5 < hi < 1
    assert S.share_above(0, 5, 0.25)["ci95"][0] == 0.0
    assert S.share_above(5, 5, 0.25)["ci95"][1] == 1.0
    assert not S.share_above(3, 12, 0.25)["above"]  # at chance
    assert S.share_above(0, 0, 0.25)["share"] is None
    with pytest.raises(ValueError, match="successes=6"):
        S.share_above(6, 5, 0.25)


# ---- (e) bounded metrics: intervals inside their range -----------------------------------

@pytest.mark.parametrize("values, bounds", [
    ([0.39, 0.0, 0.78], S.UNIT),              # an AUC over three seeds
    ([0.911, 0.95, 0.87], S.UNIT),            # a share near 1
    ([1e-34, 1e-30, 2e-33], S.UNIT),          # forget qualities (KS p-values)
    ([0.0, 0.1, 0.2, 0.0, 0.05], S.UNIT),     # zeros on the bound, five seeds
    ([175.0, -40.0, 300.0], (-100.0, 400.0)),  # privleak with its retain AUC's range
    ([2.0, 5.0, 40.0], (0.0, None)),          # a spread: one bound
    ([-3.0, 0.2, 0.9], (None, 1.0)),          # THS: at most 1
])
def test_bounded_t_interval_lies_in_the_range_and_holds_the_mean(values, bounds):
    h = S.ci95(values, over="seeds", bounds=bounds)
    lo, hi = bounds
    assert (lo is None or h["ci95"][0] >= lo) and (hi is None or h["ci95"][1] <= hi)
    assert h["ci95"][0] <= h["mean"] <= h["ci95"][1]
    assert h["mean"] == pytest.approx(np.mean(values))
    assert " scale over seeds" in h["ci_method"] and h["range"] == list(bounds)
    check_headline_shape({"x": h})


def test_bounded_interval_is_near_the_t_interval_away_from_the_bounds():
    v = [0.50, 0.52, 0.48, 0.51, 0.49]
    b, t = S.ci95(v, bounds=S.UNIT)["ci95"], S.ci95(v)["ci95"]
    assert b == pytest.approx(t, abs=2e-3)
    assert S.ci95([1.0, 1.0, 1.0], bounds=S.UNIT)["ci95"] == [1.0, 1.0]


def test_bounds_are_checked_and_a_headline_outside_its_range_is_rejected():
    with pytest.raises(ValueError, match="bounds"):
        S.ci95([0.1, 0.2], bounds=(1, 0))
    with pytest.raises(ValueError, match="bounds"):
        S.ci95([0.1, 0.2], bounds=(0, float("inf")))
    with pytest.raises(ValueError, match="outside bounds"):
        S.ci95([0.1, 1.2], bounds=S.UNIT, method="t")
    h = {**S.ci95([0.39, 0.0, 0.78], over="seeds"), "range": [0, 1]}  # plain t: leaves [0, 1]
    with pytest.raises(ValueError, match="outside the metric's range"):
        check_headline_shape({"auc": h})
    one = S.headline(per_item=[1, 0, 1, 1] * 10, bounds=S.UNIT)  # bootstrap: inside anyway
    assert one["range"] == [0, 1] and 0 <= one["ci95"][0] <= one["ci95"][1] <= 1
