"""kbnb.eval.metrics_file: the headline record checked, written and shown as table text."""
import json
import math

import numpy as np
import pytest
from scipy import stats as st

from kbnb.eval import stats as S
from kbnb.eval.comparisons import paired_compare
from kbnb.eval.metrics_file import check_headline_shape, format_mean_ci, headline_section


def _as_headline(c) -> dict:
    """A paired comparison's per-pair differences as a headline record (``mean`` = diff)."""
    assert c.values, "a statistic comparison has no per-pair values to store"
    return {"mean": c.diff, "ci95": list(c.ci95), "values": list(c.values), "n": c.n,
            "ci_method": c.ci_method}


# ---- (a) table text -------------------------------------------------------------------

def test_format_mean_ci_of_three_seeds_by_hand():
    x = [0.81, 0.86, 0.90]
    m = sum(x) / 3
    s = math.sqrt(sum((v - m) ** 2 for v in x) / 2)
    half = st.t.ppf(0.975, 2) * s / math.sqrt(3)
    h = S.headline(per_seed=x)
    assert format_mean_ci(h) == f"{m:.3f} ± {half:.3f}"
    assert format_mean_ci(h, 2, style="interval") == f"{m:.2f} ({m - half:.2f} to {m + half:.2f})"


def test_format_mean_ci_names_a_bad_headline():
    with pytest.raises(ValueError, match="h must be a headline"):
        format_mean_ci({"mean": 1.0})


# ---- (b) the headline shape in metrics.json --------------------------------------------

def test_headline_shape_accepts_a_good_section_and_survives_json():
    rng = np.random.default_rng(0)
    a, b = (rng.random(60) < 0.5).astype(float), (rng.random(60) < 0.9).astype(float)
    section = headline_section({
        "accuracy": S.headline(per_seed=np.array([0.7, 0.72, 0.69])),
        "over_refusal": S.headline(per_item=a),
        "accuracy_gain": _as_headline(paired_compare(a, b))})
    doc = json.loads(json.dumps({"params": {"seed": 0}, "metrics": {"headline": section}}))
    assert check_headline_shape(doc) == section
    assert check_headline_shape(doc["metrics"]) == section
    assert check_headline_shape(section) == section
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
        check_headline_shape({"metrics": {"headline": {"acc": h}}})


def test_headline_shape_rejects_missing_or_empty_section():
    with pytest.raises(ValueError, match="no 'headline' section"):
        check_headline_shape({"params": {}, "metrics": {"ap": 0.8}})
    with pytest.raises(ValueError, match="empty"):
        check_headline_shape({"metrics": {"headline": {}}})
    with pytest.raises(ValueError, match=r"headline\['ap'\] must be a dict"):
        check_headline_shape({"ap": 0.8})


def test_not_measurable_headlines_pass_the_shape_check_and_format():
    bad = S.not_measurable(0.25, 1, "one question", "questions", [0.25])
    none = S.not_measurable(None, 0, "no question")
    section = headline_section({"ok": S.headline(per_seed=[0.1, 0.2, 0.3]), "bad": bad,
                                "none": none})
    assert check_headline_shape({"metrics": {"headline": section}}) == section
    assert section["bad"]["ci95"] is None and section["none"]["mean"] is None
    assert format_mean_ci(bad) == "0.250 (not measurable, n = 1)"
    assert format_mean_ci(none) == "— (not measurable, n = 0)"
    assert S.is_measurable(section["ok"]) and not S.is_measurable(bad)
    for broken, match in (({**bad, "reason": ""}, "say why"),
                          ({**bad, "measurable": True}, "measurable False"),
                          ({**bad, "ci_method": "t interval over questions"}, "not measurable"),
                          ({**bad, "mean": float("nan")}, "finite number or None")):
        with pytest.raises(ValueError, match=match):
            check_headline_shape({"bad": broken})
