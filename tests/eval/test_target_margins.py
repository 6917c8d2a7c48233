"""The organism's target margins agree with its target checks."""
import pytest

from kbnb.eval import boundary

MET = {"train_seconds": 140.0, "known_exact_match": 0.99, "known_paraphrase_recall": 0.9,
       "unseen_recall": 0.1, "unseen_chance": 0.2, "refusal_rate_heldout": 1.0,
       "recall_rises": True, "conf_auroc": 0.7, "conf_ece": 0.2, "confident_wrong": 0.8}
UTILITY = {"utility": 0.62, "retain_utility": 0.60, "forget_quality": 1e-20,
           "parts": {"a": 0.5, "b": 0.35}}


def _checks(m, u):
    return {**boundary.check_targets(m), **boundary.check_confidence_targets(m, u)}


def test_all_met_means_every_margin_non_negative():
    margins = boundary.target_margins(MET, UTILITY)
    assert all(c for c in _checks(MET, UTILITY).values())
    assert len(margins) == 11
    assert all(margin >= 0 for _, _, margin in margins.values())
    assert margins["utility_gap"] == pytest.approx((0.02, 0.05, 0.03))
    assert margins["unseen_recall"] == pytest.approx((0.1, 0.25, 0.15))
    assert margins["utility_part_min"] == pytest.approx((0.35, 0.30, 0.05))


@pytest.mark.parametrize("change, name, limit, margin", [
    ({"known_exact_match": 0.94}, "known_exact_match", 0.95, -0.01),
    ({"conf_auroc": 0.58}, "conf_auroc", 0.60, -0.02),
    ({"conf_auroc": 0.77}, "conf_auroc", 0.75, -0.02),
    ({"unseen_recall": 0.27}, "unseen_recall", 0.25, -0.02),
    ({"train_seconds": 222.0}, "train_seconds", 150.0, -72.0),
])
def test_a_miss_has_a_negative_margin_and_a_false_check(change, name, limit, margin):
    m = {**MET, **change}
    got = boundary.target_margins(m, UTILITY)[name]
    assert got[1] == pytest.approx(limit) and got[2] == pytest.approx(margin)
    assert sum(not c for c in _checks(m, UTILITY).values()) == 1


def test_utility_gap_miss_and_unmeasured_targets_left_out():
    u = {**UTILITY, "retain_utility": 0.673}
    got = boundary.target_margins({**MET, "train_seconds": None}, u)
    assert got["utility_gap"][2] == pytest.approx(-0.003)
    assert "train_seconds" not in got
    assert "utility_gap" not in boundary.target_margins(MET)
