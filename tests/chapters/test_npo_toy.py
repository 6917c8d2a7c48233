"""The NPO toy's headlines with one seed (hand-made histories, no model)."""
import pytest

from kbnb.chapters import npo_toy as chapter
from kbnb.report.chapter import Chapter


def _summaries():
    tracked = [(f"{g}{i}", g, f"{g} answer {i}") for g in ("high", "middle", "low")
               for i in range(3)] + [("gt", "ground_truth", "gt"), ("fixed", "fixed", "fx")]
    start = [-1.0 - i for i in range(len(tracked))]
    fall = [2.0 + 0.5 * i for i in range(len(tracked) - 2)] + [20.0, 1.0]
    hist = {"steps": [0, 1, 2, 3],
            "logps": [[a - f * k / 3 for a, f in zip(start, fall)] for k in range(4)]}
    return {0: chapter.seed_summary({"npo": hist}, tracked)}


def test_one_seed_group_falls_are_over_their_responses(tmp_path):
    """Issue 20: with one seed each headline was a "t interval over questions, n=2" of
    [v, v]. A group's fall is a mean over its tracked responses; a single answer's
    numbers (the ground truth's fall, fixed/ground truth) are not measurable."""
    sm = _summaries()
    assert sm[0]["npo"]["response_change"]["high"] == pytest.approx([-2.0, -2.5, -3.0])
    ch = Chapter("npo_toy", {"seeds": [0]}, tmp_path)
    chapter.record_and_check(ch, sm)
    for g in ("high", "middle", "low"):
        h = ch.headlines[f"{g}_fall"]
        assert h["n"] == 3 and "responses" in h["ci_method"] and "questions" not in h["ci_method"]
        assert h["mean"] == pytest.approx(-sm[0]["npo"]["change"][g])
    for k in ("gt_fall", "fixed_over_gt"):
        h = ch.headlines[k]
        assert h["ci95"] is None and h["n"] == 1 and k in ch.not_measurable()
    assert ch.headlines["gt_fall"]["mean"] == pytest.approx(20.0)


def test_several_seeds_keep_intervals_over_seeds(tmp_path):
    sm = _summaries()
    ch = Chapter("npo_toy", {"seeds": [0, 1]}, tmp_path)
    chapter.record_and_check(ch, {0: sm[0], 1: sm[0]})
    assert all(h["n"] == 2 and "seeds" in h["ci_method"] for h in ch.headlines.values())
