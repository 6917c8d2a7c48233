"""The forest plot of the results page's claims: each claim row on its own scale within
[-1, 1], checks without an interval left out and named, one row per claim and one marker
per model, and a target's reference line where the target is."""
import math

import pytest

from kbnb.report import forest


def _check(diff, lo, hi, status="PASS", **extra):
    return {"status": status, "sentence": "why", "diff": diff, "ci95": [lo, hi],
            "p_value": 0.01, "test": "paired t test", "n": 3, "shown": status == "PASS",
            "direction": "higher" if diff > 0 else "lower",
            "ci_method": "paired t interval over seeds", "smallest_effect": None,
            "smallest_effect_source": None, **extra}


CHECKS = {
    "tinyworld organism": {
        "Unlearning: forget quality of NPO": _check(9.3, -5.0, 23.6, "EXCLUDED",
                                                   smallest_effect=44.2,
                                                   smallest_effect_source="open-unlearning"),
        "R-Tuning: AP in-domain": _check(0.0014, -0.029, 0.032, "UNCLEAR"),
        "R-Tuning: AP out of domain": _check(-0.017, -0.061, 0.027, "UNCLEAR"),
    },
    "SmolLM2 (recorded)": {
        "R-Tuning: AP in-domain": _check(-0.228, -0.246, -0.211, "MISS"),
        "Unlearning: forget quality of NPO": {"status": "UNCLEAR", "measurable": False,
                                              "reason": "only 1 question", "n": 1},
        "R-Tuning: AP out of domain": {"status": "UNCLEAR", "sentence": "an old file"},
    },
}


def test_every_row_is_scaled_into_minus_one_to_one():
    pts = forest.forest_points(CHECKS)
    assert len(pts) == 4
    for p in pts:
        for k in ("x", "x_lo", "x_hi", "x_ref"):
            assert -1 - 1e-12 <= p[k] <= 1 + 1e-12, (p["label"], k, p[k])
        # the scale is the row's, so raw × scale is the raw number back
        assert math.isclose(p["x"] * p["scale"], p["diff"] + p["reference"])
    ap = [p for p in pts if p["label"] == "R-Tuning: AP in-domain"]
    assert {p["model"] for p in ap} == {"tinyworld organism", "SmolLM2 (recorded)"}
    assert all(p["scale"] == pytest.approx(0.246) for p in ap)  # its largest |interval end|
    assert min(p["x_lo"] for p in ap) == pytest.approx(-1.0)
    fq = next(p for p in pts if p["label"].startswith("Unlearning"))
    # the declared smallest effect is larger than the interval: it sets the scale
    assert fq["scale"] == pytest.approx(44.2) and fq["x_band"] == pytest.approx((-1.0, 1.0))
    assert fq["x_hi"] == pytest.approx(23.6 / 44.2) and fq["status"] == "EXCLUDED"
    assert fq["chapter"] == "Unlearning" and fq["claim"] == "forget quality of NPO"
    # points come claim by claim, in first-seen order, models in the given order
    assert [p["label"] for p in pts] == ["Unlearning: forget quality of NPO",
                                         "R-Tuning: AP in-domain", "R-Tuning: AP in-domain",
                                         "R-Tuning: AP out of domain"]
    assert [p["model"] for p in pts][1:3] == ["tinyworld organism", "SmolLM2 (recorded)"]


def test_a_check_without_difference_or_interval_is_skipped_and_named():
    pts = forest.forest_points(CHECKS)
    assert not any(p["model"] == "SmolLM2 (recorded)" and p["label"] != "R-Tuning: AP in-domain"
                   for p in pts)
    skipped = forest.forest_skipped(CHECKS)
    assert {(s["model"], s["label"]) for s in skipped} == {
        ("SmolLM2 (recorded)", "Unlearning: forget quality of NPO"),
        ("SmolLM2 (recorded)", "R-Tuning: AP out of domain")}
    reasons = {s["label"]: s["reason"] for s in skipped}
    assert "only 1 question" in reasons["Unlearning: forget quality of NPO"]
    cap = forest.forest_caption(pts, skipped)
    assert "Not drawn" in cap and "R-Tuning: AP out of domain" in cap and "3 claims" in cap
    assert "Not drawn" not in forest.forest_caption(pts, [])
    # a non-finite interval is no interval either
    bad = {"m": {"A: x": _check(1.0, float("nan"), 2.0)}}
    assert forest.forest_points(bad) == [] and len(forest.forest_skipped(bad)) == 1


def test_the_figure_has_one_row_per_claim_and_one_marker_per_model():
    pts = forest.forest_points(CHECKS)
    fig = forest.forest_figure(pts, models=list(CHECKS))
    ax = fig.axes[0]
    kinds = [t.get_gid() for t in ax.get_yticklabels()]
    assert [k for k in kinds if k.startswith("claim|")] == [
        "claim|Unlearning: forget quality of NPO", "claim|R-Tuning: AP in-domain",
        "claim|R-Tuning: AP out of domain"]
    assert [k for k in kinds if k.startswith("chapter|")] == ["chapter|Unlearning",
                                                              "chapter|R-Tuning"]
    markers = [ln for ln in ax.lines if (ln.get_gid() or "").startswith("point|")]
    assert sorted(ln.get_gid() for ln in markers) == sorted(
        f"point|{p['model']}|{p['label']}" for p in pts)
    # one shape per model, and the two models of a row sit at different heights
    shape = {ln.get_gid().split("|")[1]: ln.get_marker() for ln in markers}
    assert shape["tinyworld organism"] != shape["SmolLM2 (recorded)"]
    ys = {ln.get_gid(): ln.get_ydata()[0] for ln in markers}
    assert ys["point|tinyworld organism|R-Tuning: AP in-domain"] > \
        ys["point|SmolLM2 (recorded)|R-Tuning: AP in-domain"]
    # colour by status; the raw numbers are printed at the right
    miss = next(ln for ln in markers if "SmolLM2" in ln.get_gid())
    assert miss.get_color() == forest.STATUS_COLOURS["MISS"]
    texts = [t.get_text() for t in ax.texts]
    assert "−0.228 [−0.246, −0.211]" in texts and "9.3 [−5, 23.6]" in texts
    assert fig.get_size_inches()[0] == 9.0
    taller = forest.forest_figure(forest.forest_points(
        {"m": {f"C: claim {i}": _check(1.0, 0.5, 1.5) for i in range(12)}}))
    assert taller.get_size_inches()[1] > fig.get_size_inches()[1]


def test_a_threshold_claim_has_its_reference_line_at_the_scaled_threshold():
    checks = {"m": {"Organism: exact match": _check(0.04, 0.03, 0.05, target=0.95),
                    "Organism: recall": _check(0.16, 0.14, 0.18)}}
    pts = forest.forest_points(checks)
    em = next(p for p in pts if p["label"] == "Organism: exact match")
    assert em["reference"] == 0.95 and em["scale"] == pytest.approx(1.0)
    assert em["x_ref"] == pytest.approx(0.95) and em["x"] == pytest.approx(0.99)
    assert em["x_lo"] == pytest.approx(0.98)
    ax = forest.forest_figure(pts).axes[0]
    line = {ln.get_gid(): ln for ln in ax.lines}
    assert list(line["reference|Organism: exact match"].get_xdata()) == pytest.approx([0.95, 0.95])
    assert list(line["reference|Organism: recall"].get_xdata()) == [0.0, 0.0]
    assert forest.reference_of({"threshold": 0.5}) == 0.5 and forest.reference_of({}) == 0.0
