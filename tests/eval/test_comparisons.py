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


# ---- (d) the smallest effect that matters ------------------------------------------------

def test_excludes_size_is_strictly_inside_the_band():
    from kbnb.eval.comparisons import excludes_size
    assert excludes_size([-0.011, 0.014], 0.05)
    assert excludes_size([0.004, 0.016], 0.05)          # excludes 0 and lies inside
    assert not excludes_size([-0.011, 0.05], 0.05)      # touching the size is not inside
    assert not excludes_size([-0.06, 0.01], 0.05)
    assert not excludes_size([-0.011, 0.014], None)     # no size: never
    with pytest.raises(ValueError, match="smallest_effect=-1"):
        excludes_size([-0.011, 0.014], -1)


def test_check_smallest_effect():
    from kbnb.eval.comparisons import check_smallest_effect
    assert check_smallest_effect(None, None) == (None, None)
    assert check_smallest_effect(np.float64(0.3), " seed report ") == (0.3, "seed report")
    assert check_smallest_effect(2, "x") == (2.0, "x")
    for bad in (-0.1, 0, float("nan"), float("-inf"), False, "0.1", [0.1]):
        with pytest.raises(ValueError, match="smallest_effect="):
            check_smallest_effect(bad, "x")
    with pytest.raises(ValueError, match="smallest_effect_source"):
        check_smallest_effect(0.1, "")


def test_a_precise_null_over_many_questions_excludes_a_moderate_effect(paired_null):
    """400 questions with no effect: the paired interval is narrow, inside ±0.2 (the
    precise null the fourth verdict is for), and never inside a tiny ±0.001."""
    from kbnb.eval.comparisons import excludes_size
    rng = np.random.default_rng(7)
    a, b = paired_null(rng, 400)
    r = paired_compare(a, b)
    assert not r.shown and r.ci95[0] < 0 < r.ci95[1]
    assert excludes_size(r.ci95, 0.2) and not excludes_size(r.ci95, 0.001)
    assert verdict("x", r, smallest_effect=0.2, smallest_effect_source="s").status == "EXCLUDED"
    assert verdict("x", r, smallest_effect=0.001, smallest_effect_source="s").status == "UNCLEAR"
