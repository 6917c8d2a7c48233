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
