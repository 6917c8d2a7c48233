"""Every claim of a chapter declares its smallest effect that matters (or None), with a
valid size and a source, and the sizes are the reference's numbers."""
import math

import pytest

from kbnb.chapters import lunar, lunar_attacks, npo_toy, rait, rtuning, unlearning
from kbnb.methods.attacks import ATTACKS
from kbnb.report.chapter import declared

CLAIMS = {
    rtuning: {"ap_gain_test", "ap_gain_ood", "sure_on_known_target", "unsure_on_unseen_target"},
    rait: {"or_craft_vs_cor", "ths_craft_vs_cor", "crss_craft_vs_cor", "flow_vs_noise"},
    lunar: {"vanilla_knows", "forget_low", "retain_kept", "retain_share", "forget_drop",
            "ds_better", "rq_better", "closed_form_fit", "selection_ds"},
    lunar_attacks: {f"{a}_holds" for a in ATTACKS},
    npo_toy: {"gt_vs_fixed", "npo_slows", "ga_keeps"},
}


@pytest.mark.parametrize("module", list(CLAIMS), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_every_claim_is_declared_with_a_valid_size_or_none(module):
    assert set(module.SMALLEST_EFFECTS) == CLAIMS[module]
    for claim in CLAIMS[module]:
        declared(module.SMALLEST_EFFECTS, claim)  # raises on a bad size or source


def test_lunar_sizes_are_the_seed_reports_effects():
    assert lunar.SMALLEST_EFFECTS["forget_drop"][0] == pytest.approx(0.571 - 0.192)
    assert lunar.SMALLEST_EFFECTS["ds_better"][0] == pytest.approx(63.3 - 49.0)
    assert lunar.SMALLEST_EFFECTS["rq_better"][0] == pytest.approx(0.490 - 0.331)
    assert "0.571 → 0.192" in lunar.SMALLEST_EFFECTS["forget_drop"][1]


def test_unlearning_sizes_carry_open_unlearnings_share_over():
    methods = ["ga", "graddiff", "npo", "simnpo", "idkdpo", "rmu", "lunar"]
    got = unlearning.smallest_effects(methods, 1e-4)
    assert set(got) == {f"{k}_{m}" for k in ("fq_gain", "mu_kept") for m in methods}
    for m in methods:
        declared(got, f"fq_gain_{m}")
        assert got[f"mu_kept_{m}"] is None  # a design target
    # NPO: 0.02 from 1.66e-21 is 92% of the way to log10 FQ = 0; here from -4: 3.67
    share = (math.log10(0.02) - math.log10(1.66e-21)) / -math.log10(1.66e-21)
    assert got["fq_gain_npo"][0] == pytest.approx(4 * share)
    assert "92% of this run's distance" in got["fq_gain_npo"][1]
    assert got["fq_gain_rmu"][0] == pytest.approx(4 * 0.3021, abs=1e-3)
    for m in ("ga", "graddiff", "simnpo", "lunar"):  # lowers FQ there, or not run there
        assert got[f"fq_gain_{m}"] is None
    # an untouched model already at forget quality 1 (or without one): nothing to gain
    assert unlearning.smallest_effects(["npo"], 1.0)["fq_gain_npo"] is None
