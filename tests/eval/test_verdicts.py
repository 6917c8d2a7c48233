"""kbnb.eval.verdicts: a large effect is shown and said, no effect is unclear."""
import numpy as np
import pytest

from kbnb.eval.comparisons import paired_compare
from kbnb.eval.stats import headline
from kbnb.eval.verdicts import check, verdict

# ---- (a) a large effect is detected ---------------------------------------------------

def test_large_effect_is_shown_and_said():
    rng = np.random.default_rng(3)
    a = (rng.random(99) < 0.3).astype(float)          # over-refusal of the baseline
    b = a.copy()
    b[np.flatnonzero(a)[:20]] = 0                     # the new method fixes 20 of them
    r = paired_compare(a, b)
    assert r.shown and r.direction == "lower" and r.test == "sign test"
    assert r.diff == pytest.approx(-20 / 99)
    assert r.ci95[1] < 0 and r.p_value < 1e-4
    v = verdict("over-refusal", r, better="lower", subject="CRaFT", baseline="Cor-RAIT")
    assert v.status == "PASS"
    assert v.sentence.startswith("CRaFT lowers over-refusal by 0.202 relative to Cor-RAIT (95% CI ")
    assert "paired bootstrap over 99 questions; sign test p < 0.001" in v.sentence
    assert v.sentence.endswith("the effect is shown.")
    # the same data judged against the opposite hope is a MISS
    w = verdict("over-refusal", r, better="higher")
    assert w.status == "MISS" and "opposite" in w.sentence


def test_no_effect_is_unclear_and_says_so(paired_null):
    rng = np.random.default_rng(5)
    a, b = paired_null(rng, 50)
    v = check("accuracy", b, a, subject="CRaFT")
    assert v.status == "UNCLEAR" and not v.result.shown
    assert v.sentence.endswith("the data cannot tell whether there is an effect.")
    assert "shown" not in v.sentence


def test_check_against_a_fixed_target_and_with_a_statistic():
    rng = np.random.default_rng(9)
    v = check("exact match", rng.normal(0.95, 0.02, 40), 0.9)
    assert v.status == "PASS" and v.sentence.startswith("Exact match is 0.0")
    assert "higher than 0.900" in v.sentence

    def ap(y, s):  # average precision, numpy only
        order = np.argsort(-s, kind="stable")
        y = y[order]
        prec = np.cumsum(y) / np.arange(1, len(y) + 1)
        return float((prec * y).sum() / y.sum()) if y.sum() else float("nan")

    y = (rng.random(200) < 0.5).astype(float)
    good, bad = y + rng.normal(0, 0.5, 200), y + rng.normal(0, 5, 200)
    v = check("AP", (y, good), (y, bad), statistic=ap, n_boot=500, subject="R-Tuning",
                baseline_name="the untuned model")
    assert v.status == "PASS" and v.result.test == "paired bootstrap test"
    assert v.sentence.startswith("R-Tuning raises AP by ")
    assert v.result.diff == pytest.approx(ap(y, good) - ap(y, bad))
    h = headline(per_item=(y, good), statistic=ap, n_boot=500)
    assert h["mean"] == pytest.approx(ap(y, good)) and h["n"] == 200
    assert h["ci95"][0] < h["mean"] < h["ci95"][1]


# ---- (b) bad inputs name the parameter ---------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: check("x", [1, 2, 3], [2, 3, 4], better="bigger"), "better='bigger'"),
    (lambda: verdict("x", paired_compare([1, 2, 3], [2, 3, 5]), better="up"), "better='up'"),
    (lambda: verdict("x", {"diff": 1.0}), "result is missing"),
])
def test_bad_inputs_name_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- (c) a fourth verdict: an effect of the paper's size is excluded -----------------------

SOURCE = "the paper's gain, 0.50 → 0.55 (Table 2)"


def _result(lo, hi, diff=None, p=0.5):
    """A paired_compare-shaped result with the interval [lo, hi] and p-value p."""
    return {"diff": (lo + hi) / 2 if diff is None else diff, "ci95": [lo, hi], "p_value": p,
            "test": "paired t test", "n": 5, "ci_method": "paired t interval over seeds"}


def test_interval_inside_the_size_is_excluded_and_said_with_its_numbers():
    v = verdict("AP", _result(-0.011, 0.014, diff=0.001), subject="R-Tuning",
                smallest_effect=0.05, smallest_effect_source=SOURCE)
    assert v.status == "EXCLUDED"
    assert v.smallest_effect == 0.05 and v.smallest_effect_source == SOURCE
    assert "raises AP by 0.001" in v.sentence and "95% CI −0.011 to 0.014" in v.sentence
    assert v.sentence.endswith(f"any change is smaller than 0.050 ({SOURCE}) either way, so an "
                               "effect of that size is excluded.")
    assert "cannot tell" not in v.sentence
    # the same interval without a declared size: the data cannot tell
    assert verdict("AP", _result(-0.011, 0.014)).status == "UNCLEAR"


def test_interval_crossing_the_size_is_unclear():
    for lo, hi in ((-0.011, 0.06), (-0.07, 0.01), (-0.05, 0.01), (-0.01, 0.05)):  # ±size: not inside
        v = verdict("AP", _result(lo, hi), smallest_effect=0.05, smallest_effect_source=SOURCE)
        assert v.status == "UNCLEAR", (lo, hi)
        assert v.sentence.endswith("the data cannot tell whether there is an effect; an effect "
                                   f"of 0.050 ({SOURCE}) is not excluded either.")


def test_an_effect_shown_inside_the_size_stays_shown():
    v = verdict("AP", _result(0.004, 0.016, p=0.001), smallest_effect=0.05,
                smallest_effect_source=SOURCE)
    assert v.status == "PASS"
    assert v.sentence.endswith(f"the effect is shown, though it is smaller than 0.050 ({SOURCE}).")
    w = verdict("AP", _result(-0.016, -0.004, p=0.001), smallest_effect=0.05,
                smallest_effect_source=SOURCE)
    assert w.status == "MISS" and "smaller than 0.050" in w.sentence
    # shown and larger than the size: no remark on the size
    big = verdict("AP", _result(0.04, 0.09, p=0.001), smallest_effect=0.05,
                  smallest_effect_source=SOURCE)
    assert big.status == "PASS" and big.sentence.endswith("the effect is shown.")
    # an interval that excludes 0 without the test's agreement is UNCLEAR, and inside the
    # size it is excluded (UNCLEAR is the only status EXCLUDED replaces)
    assert verdict("AP", _result(0.004, 0.016, p=0.06)).status == "UNCLEAR"
    x = verdict("AP", _result(0.004, 0.016, p=0.06), smallest_effect=0.05,
                smallest_effect_source=SOURCE)
    assert x.status == "EXCLUDED" and "does not reject no effect" in x.sentence


def test_no_declared_size_is_never_excluded(paired_null):
    rng = np.random.default_rng(11)
    a, b = paired_null(rng, 400)
    v = check("accuracy", b, a)
    assert v.status == "UNCLEAR" and v.smallest_effect is None
    assert -0.2 < v.result.ci95[0] < v.result.ci95[1] < 0.2  # a precise null
    w = check("accuracy", b, a, smallest_effect=0.2, smallest_effect_source="half the paper's")
    assert w.status == "EXCLUDED" and w.result.as_dict() == v.result.as_dict()


@pytest.mark.parametrize("size, source, match", [
    (-0.05, SOURCE, "smallest_effect=-0.05 must be finite and > 0"),
    (float("nan"), SOURCE, "smallest_effect=nan must be finite and > 0"),
    (float("inf"), SOURCE, "smallest_effect=inf"),
    (0.0, SOURCE, "smallest_effect=0.0"),
    (True, SOURCE, "smallest_effect=True must be a number"),
    ("0.05", SOURCE, "smallest_effect='0.05' must be a number"),
    (0.05, None, "smallest_effect_source=None"),
    (0.05, "  ", "smallest_effect_source='  '"),
    (None, SOURCE, "smallest_effect_source=.* without smallest_effect"),
])
def test_a_bad_size_names_the_parameter(size, source, match):
    with pytest.raises(ValueError, match=match):
        verdict("AP", _result(-0.01, 0.01), smallest_effect=size, smallest_effect_source=source)
    with pytest.raises(ValueError, match=match):  # before any computation
        check("AP", [1.0, 2.0, 3.0], [1.0, 2.0, 4.0], smallest_effect=size,
              smallest_effect_source=source)


def test_a_fixed_target_keeps_the_interval_inside_the_range_of_a_share():
    """Issue 33: three seeds of a share at 0.96, 0.12, 0.08 against 0.8 gave a plain t
    interval of −1.65 to 0.82 for the difference, which lies in [−0.8, 0.2]. With the
    share's range the interval is taken on the logit scale and stays inside it."""
    shares = [0.962, 0.118, 0.083]
    plain = check("the share marked sure", shares, 0.8, over="seeds")
    assert plain.result.ci95[0] < -0.8 and plain.result.ci95[1] > 0.2
    v = check("the share marked sure", shares, 0.8, over="seeds", bounds=(0, 1))
    lo, hi = v.result.ci95
    assert -0.8 <= lo < v.result.diff < hi <= 0.2
    assert v.result.ci_method == "t interval on the logit scale over seeds, less the target"
    assert v.result.p_value == plain.result.p_value and v.status == "UNCLEAR"
    clear = check("the share marked sure", [0.95, 0.97, 0.96], 0.8, over="seeds", bounds=(0, 1))
    assert clear.status == "PASS" and 0 < clear.result.ci95[0] and clear.result.ci95[1] <= 0.2
    per_question = check("exact match", [1.0, 0.0] * 20, 0.3, bounds=(0, 1))
    assert per_question.result.ci_method == "paired bootstrap over questions"  # in range already
    with pytest.raises(ValueError, match="bounds= is for a fixed target"):
        check("AP", [0.1, 0.2], [0.2, 0.3], bounds=(0, 1))
