"""How well a model's confidence tells its right answers from its wrong ones.

For ``n`` answered questions with ``correct`` ``[n]`` (0/1) and ``conf`` ``[n]`` (the
probability the model gives its own answer, e.g. the largest of the four options'
normalised probabilities):

* **AUROC** of ``conf`` against ``correct``: the probability that a right answer gets a
  higher confidence than a wrong one (ties count one half; Mann-Whitney U / (n1 n0)).
  0.5 = confidence says nothing; chat models' maximum-softmax AUROC on multiple-choice
  questions is 0.60-0.69 (Plaut et al. 2024, arXiv 2402.13213).
* **Expected calibration error** (Guo et al. 2017): ``ECE = Σ_b (n_b / n) |acc_b − conf_b|``
  over ``n_bins`` equal-width confidence bins.
* **Confidently wrong**: the share of the wrong answers given with ``conf >= threshold``.
* :func:`reliability_bins`: the points of a reliability diagram.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _pair(correct, conf) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(correct, dtype=float).ravel()
    s = np.asarray(conf, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"correct has {y.size} values and conf {s.size}: need one each per answer")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("correct must hold 0/1 (or booleans)")
    if s.size and (np.isnan(s).any() or s.min() < 0 or s.max() > 1):
        raise ValueError("conf must hold probabilities in [0, 1]")
    return y, s


def auroc(correct, conf) -> float:
    """AUROC of ``conf`` for telling right (1) from wrong (0) answers; NaN without both."""
    y, s = _pair(correct, conf)
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks: ties count one half
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def reliability_bins(correct, conf, n_bins: int = 10) -> list[dict]:
    """Equal-width bins of ``conf`` in [0, 1] (the last closed): for each non-empty bin
    ``{"lo", "hi", "n", "confidence" (mean conf), "accuracy" (mean correct)}``."""
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r}: must be an integer >= 1")
    y, s = _pair(correct, conf)
    b = np.minimum((s * n_bins).astype(int), n_bins - 1)
    return [{"lo": k / n_bins, "hi": (k + 1) / n_bins, "n": int((b == k).sum()),
             "confidence": float(s[b == k].mean()), "accuracy": float(y[b == k].mean())}
            for k in range(n_bins) if (b == k).any()]


def expected_calibration_error(correct, conf, n_bins: int = 10) -> float:
    """``Σ_b (n_b / n) |accuracy_b − confidence_b|`` over :func:`reliability_bins`."""
    bins = reliability_bins(correct, conf, n_bins)
    n = sum(b["n"] for b in bins)
    if n == 0:
        return float("nan")
    return float(sum(b["n"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins))


def confident_wrong_share(correct, conf, threshold: float = 0.5) -> float:
    """Share of the wrong answers given with confidence ``>= threshold``; NaN if none is wrong."""
    y, s = _pair(correct, conf)
    wrong = s[y == 0]
    return float((wrong >= threshold).mean()) if wrong.size else float("nan")
