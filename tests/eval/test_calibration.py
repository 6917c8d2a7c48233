import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from kbnb.eval.calibration import (
    auroc,
    confident_wrong_share,
    expected_calibration_error,
    reliability_bins,
)


def test_auroc_matches_sklearn_with_ties_and_is_nan_with_one_class():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) * 0.5 + 0.4 * y, 1)  # many ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert auroc([1, 0, 1], [0.9, 0.1, 0.8]) == 1.0 and auroc([1, 0], [0.1, 0.9]) == 0.0
    assert np.isnan(auroc([1, 1], [0.2, 0.3]))


def test_ece_is_zero_when_calibrated_and_the_gap_when_not():
    conf = np.array([0.25] * 4 + [0.75] * 4)
    right = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(right, conf) == pytest.approx(0.0)
    assert expected_calibration_error(np.zeros(8), conf) == pytest.approx(0.5)
    bins = reliability_bins(right, conf, n_bins=4)
    assert [(b["lo"], b["n"], b["accuracy"]) for b in bins] == [(0.25, 4, 0.25), (0.75, 4, 0.75)]
    assert reliability_bins([1], [1.0], n_bins=10)[0]["lo"] == 0.9  # 1.0 falls in the last bin


def test_confident_wrong_share_and_bad_input():
    assert confident_wrong_share([0, 0, 1, 0], [0.9, 0.2, 0.9, 0.5]) == pytest.approx(2 / 3)
    assert np.isnan(confident_wrong_share([1, 1], [0.3, 0.9]))
    with pytest.raises(ValueError, match="conf must hold probabilities"):
        auroc([1, 0], [1.2, 0.1])
    with pytest.raises(ValueError, match="correct has 2 values and conf 3"):
        auroc([1, 0], [0.2, 0.1, 0.3])
    with pytest.raises(ValueError, match="n_bins=0"):
        reliability_bins([1], [0.5], n_bins=0)
