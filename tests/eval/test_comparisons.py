"""kbnb.eval.comparisons: paired intervals that cover, p-values that are scipy's."""
import numpy as np
import pytest
from scipy import stats as st

from kbnb.eval.comparisons import paired_compare
from kbnb.eval.verdicts import verdict

DRAWS = 400
# 95% of DRAWS intervals should contain the truth; a binomial(400, 0.95) lies in
# [0.90, 0.99] with probability > 0.9999, so a miss here is a broken interval.
LO, HI = 0.90, 0.99


# ---- (a) coverage ---------------------------------------------------------------------

def test_paired_bootstrap_interval_covers_zero_at_95_percent_under_no_effect(paired_null):
    rng = np.random.default_rng(2024)
    hits = []
    for i in range(DRAWS):
        a, b = paired_null(rng)
        r = paired_compare(a, b, n_boot=2000, seed=i)
        assert r.ci_method == "paired bootstrap over questions" and r.n == 30
        hits.append(r.ci95[0] <= 0 <= r.ci95[1])
    rate = np.mean(hits)
    assert LO <= rate <= HI, f"coverage {rate:.3f}"
    # and the verdict is almost never "shown" when nothing is there
    assert 1 - rate < 0.10


# ---- (b) the interval and the test ----------------------------------------------------

def test_interval_and_test_must_agree():
    """5 questions flipped one way, none the other: the bootstrap interval excludes 0 but
    the exact sign test gives p = 2/32; nothing is claimed."""
    a = np.zeros(99)
    b = a.copy()
    b[:5] = 1
    r = paired_compare(a, b)
    assert r.ci95[0] > 0 and r.p_value == pytest.approx(0.0625)
    assert not r.shown
    v = verdict("accuracy", r)
    assert v.status == "UNCLEAR" and "does not reject" in v.sentence


# ---- (c) p-values are scipy's ---------------------------------------------------------

def test_p_values_equal_scipy():
    rng = np.random.default_rng(1)
    a = (rng.random(80) < 0.5).astype(float)
    b = (rng.random(80) < 0.65).astype(float)
    d = b - a
    r = paired_compare(a, b, test="sign")
    k, n = int((d > 0).sum()), int((d != 0).sum())
    assert r.p_value == st.binomtest(k, n, 0.5).pvalue
    assert paired_compare(a, b).p_value == r.p_value          # auto → sign for 0/1

    x, y = rng.normal(0, 1, 40), rng.normal(0.3, 1, 40)
    r = paired_compare(x, y)
    assert r.test == "Wilcoxon signed-rank test"
    assert r.p_value == st.wilcoxon(y, x).pvalue
    r = paired_compare(x, y, test="t", method="t")
    assert r.p_value == pytest.approx(st.ttest_rel(y, x).pvalue, rel=1e-12)
    # t interval with the t test: shown exactly when p < 0.05
    for i in range(30):
        s0, s1 = rng.normal(0, 1, 4), rng.normal(1, 1, 4)
        c = paired_compare(s0, s1, over="seeds")
        assert c.test == "paired t test" and c.ci_method == "paired t interval over seeds"
        assert c.shown == (c.p_value < 0.05)


# ---- (d) bad inputs name the parameter ---------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: paired_compare([1, 2, 3], [1, 2]), "a has 3 values but b has 2"),
    (lambda: paired_compare([], [1, 2]), "a is empty"),
    (lambda: paired_compare([1, 2], [1, float("inf")]), "b contains 1 NaN/inf"),
    (lambda: paired_compare([1, 2, 3], [2, 3, 4], test="mcnemar"), "test='mcnemar'"),
])
def test_bad_inputs_name_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()
