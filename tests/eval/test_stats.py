"""kbnb.stats: intervals that cover, comparisons that detect, sentences that say so."""
import json
import math

import numpy as np
import pytest
from scipy import stats as st

from kbnb.eval import stats as S

DRAWS = 400
# 95% of DRAWS intervals should contain the truth; a binomial(400, 0.95) lies in
# [0.90, 0.99] with probability > 0.9999, so a miss here is a broken interval.
LO, HI = 0.90, 0.99


def _paired_null(rng, n=30):
    """n items with a shared item effect and the same mean under both methods."""
    item = rng.normal(0, 1, n)
    return item + rng.normal(0, 0.5, n), item + rng.normal(0, 0.5, n)


# ---- (a) coverage ---------------------------------------------------------------------

def test_paired_bootstrap_interval_covers_zero_at_95_percent_under_no_effect():
    rng = np.random.default_rng(2024)
    hits = []
    for i in range(DRAWS):
        a, b = _paired_null(rng)
        r = S.paired_compare(a, b, n_boot=2000, seed=i)
        assert r.ci_method == "paired bootstrap over questions" and r.n == 30
        hits.append(r.ci95[0] <= 0 <= r.ci95[1])
    rate = np.mean(hits)
    assert LO <= rate <= HI, f"coverage {rate:.3f}"
    # and the verdict is almost never "shown" when nothing is there
    assert 1 - rate < 0.10


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


# ---- (b) a large effect is detected ---------------------------------------------------

def test_large_effect_is_shown_and_said():
    rng = np.random.default_rng(3)
    a = (rng.random(99) < 0.3).astype(float)          # over-refusal of the baseline
    b = a.copy()
    b[np.flatnonzero(a)[:20]] = 0                     # the new method fixes 20 of them
    r = S.paired_compare(a, b)
    assert r.shown and r.direction == "lower" and r.test == "sign test"
    assert r.diff == pytest.approx(-20 / 99)
    assert r.ci95[1] < 0 and r.p_value < 1e-4
    v = S.verdict("over-refusal", r, better="lower", subject="CRaFT", baseline="Cor-RAIT")
    assert v.status == "PASS"
    assert v.sentence.startswith("CRaFT lowers over-refusal by 0.202 relative to Cor-RAIT (95% CI ")
    assert "paired bootstrap over 99 questions; sign test p < 0.001" in v.sentence
    assert v.sentence.endswith("the effect is shown.")
    # the same data judged against the opposite hope is a MISS
    w = S.verdict("over-refusal", r, better="higher")
    assert w.status == "MISS" and "opposite" in w.sentence


def test_no_effect_is_unclear_and_says_so():
    rng = np.random.default_rng(5)
    a, b = _paired_null(rng, 50)
    v = S.check("accuracy", b, a, subject="CRaFT")
    assert v.status == "UNCLEAR" and not v.result.shown
    assert v.sentence.endswith("the data cannot tell whether there is an effect.")
    assert "shown" not in v.sentence


def test_interval_and_test_must_agree():
    """5 questions flipped one way, none the other: the bootstrap interval excludes 0 but
    the exact sign test gives p = 2/32; nothing is claimed."""
    a = np.zeros(99)
    b = a.copy()
    b[:5] = 1
    r = S.paired_compare(a, b)
    assert r.ci95[0] > 0 and r.p_value == pytest.approx(0.0625)
    assert not r.shown
    v = S.verdict("accuracy", r)
    assert v.status == "UNCLEAR" and "does not reject" in v.sentence


def test_check_against_a_fixed_target_and_with_a_statistic():
    rng = np.random.default_rng(9)
    v = S.check("exact match", rng.normal(0.95, 0.02, 40), 0.9)
    assert v.status == "PASS" and v.sentence.startswith("Exact match is 0.0")
    assert "higher than 0.900" in v.sentence

    def ap(y, s):  # average precision, numpy only
        order = np.argsort(-s, kind="stable")
        y = y[order]
        prec = np.cumsum(y) / np.arange(1, len(y) + 1)
        return float((prec * y).sum() / y.sum()) if y.sum() else float("nan")

    y = (rng.random(200) < 0.5).astype(float)
    good, bad = y + rng.normal(0, 0.5, 200), y + rng.normal(0, 5, 200)
    v = S.check("AP", (y, good), (y, bad), statistic=ap, n_boot=500, subject="R-Tuning",
                baseline_name="the untuned model")
    assert v.status == "PASS" and v.result.test == "paired bootstrap test"
    assert v.sentence.startswith("R-Tuning raises AP by ")
    assert v.result.diff == pytest.approx(ap(y, good) - ap(y, bad))
    h = S.headline(per_item=(y, good), statistic=ap, n_boot=500)
    assert h["mean"] == pytest.approx(ap(y, good)) and h["n"] == 200
    assert h["ci95"][0] < h["mean"] < h["ci95"][1]


# ---- (c) p-values are scipy's ---------------------------------------------------------

def test_p_values_equal_scipy():
    rng = np.random.default_rng(1)
    a = (rng.random(80) < 0.5).astype(float)
    b = (rng.random(80) < 0.65).astype(float)
    d = b - a
    r = S.paired_compare(a, b, test="sign")
    k, n = int((d > 0).sum()), int((d != 0).sum())
    assert r.p_value == st.binomtest(k, n, 0.5).pvalue
    assert S.paired_compare(a, b).p_value == r.p_value          # auto → sign for 0/1

    x, y = rng.normal(0, 1, 40), rng.normal(0.3, 1, 40)
    r = S.paired_compare(x, y)
    assert r.test == "Wilcoxon signed-rank test"
    assert r.p_value == st.wilcoxon(y, x).pvalue
    r = S.paired_compare(x, y, test="t", method="t")
    assert r.p_value == pytest.approx(st.ttest_rel(y, x).pvalue, rel=1e-12)
    # t interval with the t test: shown exactly when p < 0.05
    for i in range(30):
        s0, s1 = rng.normal(0, 1, 4), rng.normal(1, 1, 4)
        c = S.paired_compare(s0, s1, over="seeds")
        assert c.test == "paired t test" and c.ci_method == "paired t interval over seeds"
        assert c.shown == (c.p_value < 0.05)


# ---- (d) the t interval by hand --------------------------------------------------------

def test_t_interval_for_three_seeds_by_hand():
    x = [0.81, 0.86, 0.90]
    m = sum(x) / 3
    s = math.sqrt(sum((v - m) ** 2 for v in x) / 2)
    half = st.t.ppf(0.975, 2) * s / math.sqrt(3)
    h = S.headline(per_seed=x)
    assert h["mean"] == pytest.approx(m, abs=1e-15)
    assert h["ci95"] == pytest.approx([m - half, m + half], abs=1e-12)
    assert h["values"] == x and h["n"] == 3 and h["ci_method"] == "t interval over seeds"
    assert S.format_mean_ci(h) == f"{m:.3f} ± {half:.3f}"
    assert S.format_mean_ci(h, 2, style="interval") == f"{m:.2f} ({m - half:.2f} to {m + half:.2f})"


def test_one_seed_falls_back_to_questions_and_is_deterministic():
    items = [1, 0, 1, 1, 1, 0, 1, 1] * 5
    h = S.headline(per_seed=[np.mean(items)], per_item=items)
    assert h["ci_method"] == "bootstrap over questions" and h["n"] == 40
    assert h == S.headline(per_item=items)
    x = np.random.default_rng(0).normal(size=40)
    assert S.ci95(x, seed=3) == S.ci95(x, seed=3) != S.ci95(x, seed=4)
    assert S.headline(per_item=items[:10])["ci_method"] == "t interval over questions"


# ---- (e) bad inputs name the parameter ---------------------------------------------------

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
    (lambda: S.paired_compare([1, 2, 3], [1, 2]), "a has 3 values but b has 2"),
    (lambda: S.paired_compare([], [1, 2]), "a is empty"),
    (lambda: S.paired_compare([1, 2], [1, float("inf")]), "b contains 1 NaN/inf"),
    (lambda: S.paired_compare([1, 2, 3], [2, 3, 4], test="mcnemar"), "test='mcnemar'"),
    (lambda: S.check("x", [1, 2, 3], [2, 3, 4], better="bigger"), "better='bigger'"),
    (lambda: S.verdict("x", S.paired_compare([1, 2, 3], [2, 3, 5]), better="up"), "better='up'"),
    (lambda: S.verdict("x", {"diff": 1.0}), "result is missing"),
    (lambda: S.format_mean_ci({"mean": 1.0}), "h must be a headline"),
])
def test_bad_inputs_name_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- (f) the headline shape in metrics.json --------------------------------------------

def test_headline_shape_accepts_a_good_section_and_survives_json():
    rng = np.random.default_rng(0)
    a, b = (rng.random(60) < 0.5).astype(float), (rng.random(60) < 0.9).astype(float)
    section = S.headline_section({
        "accuracy": S.headline(per_seed=np.array([0.7, 0.72, 0.69])),
        "over_refusal": S.headline(per_item=a),
        "accuracy_gain": S.paired_compare(a, b)})
    doc = json.loads(json.dumps({"params": {"seed": 0}, "metrics": {"headline": section}}))
    assert S.check_headline_shape(doc) == section
    assert S.check_headline_shape(doc["metrics"]) == section
    assert S.check_headline_shape(section) == section
    assert section["accuracy_gain"]["ci_method"] == "paired bootstrap over questions"


@pytest.mark.parametrize("breakage, match", [
    (lambda h: h.pop("ci95"), r"headline\['acc'\] is missing \['ci95'\]"),
    (lambda h: h.update(ci95=[0.9]), r"\['ci95'\] must be \[lo, hi\]"),
    (lambda h: h.update(ci95=[0.9, 0.8]), "lo > hi"),
    (lambda h: h.update(mean=float("nan")), r"\['mean'\] must be a finite number"),
    (lambda h: h.update(mean="0.8"), r"\['mean'\] must be a finite number"),
    (lambda h: h.update(n=1), r"\['n'\] must be an integer"),
    (lambda h: h.update(values=[0.8, 0.9]), r"\['values'\] must be a list of n=3"),
    (lambda h: h.update(ci_method="over seeds"), r"\['ci_method'\]"),
])
def test_headline_shape_rejects_malformed(breakage, match):
    h = S.ci95([0.8, 0.85, 0.9], over="seeds")
    breakage(h)
    with pytest.raises(ValueError, match=match):
        S.check_headline_shape({"metrics": {"headline": {"acc": h}}})


def test_headline_shape_rejects_missing_or_empty_section():
    with pytest.raises(ValueError, match="no 'headline' section"):
        S.check_headline_shape({"params": {}, "metrics": {"ap": 0.8}})
    with pytest.raises(ValueError, match="empty"):
        S.check_headline_shape({"metrics": {"headline": {}}})
    with pytest.raises(ValueError, match=r"headline\['ap'\] must be a dict"):
        S.check_headline_shape({"ap": 0.8})


# ---- (f) too few items: not measurable -------------------------------------------------

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


def test_not_measurable_headlines_pass_the_shape_check_and_format():
    bad = S.not_measurable(0.25, 1, "one question", "questions", [0.25])
    none = S.not_measurable(None, 0, "no question")
    section = S.headline_section({"ok": S.headline(per_seed=[0.1, 0.2, 0.3]), "bad": bad,
                                  "none": none})
    assert S.check_headline_shape({"metrics": {"headline": section}}) == section
    assert section["bad"]["ci95"] is None and section["none"]["mean"] is None
    assert S.format_mean_ci(bad) == "0.250 (not measurable, n = 1)"
    assert S.format_mean_ci(none) == "— (not measurable, n = 0)"
    assert S.is_measurable(section["ok"]) and not S.is_measurable(bad)
    for broken, match in (({**bad, "reason": ""}, "say why"),
                          ({**bad, "measurable": True}, "measurable False"),
                          ({**bad, "ci_method": "t interval over questions"}, "not measurable"),
                          ({**bad, "mean": float("nan")}, "finite number or None")):
        with pytest.raises(ValueError, match=match):
            S.check_headline_shape({"bad": broken})


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


# ---- (g) bounded metrics: intervals inside their range -----------------------------------

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
    S.check_headline_shape({"x": h})


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
        S.check_headline_shape({"auc": h})
    one = S.headline(per_item=[1, 0, 1, 1] * 10, bounds=S.UNIT)  # bootstrap: inside anyway
    assert one["range"] == [0, 1] and 0 <= one["ci95"][0] <= one["ci95"][1] <= 1
