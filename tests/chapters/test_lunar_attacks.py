"""The attacks chapter's precondition: the edit it attacks unlearned (hand-made results,
no model)."""
import pytest

from kbnb.chapters import lunar as lunar_chapter
from kbnb.chapters import lunar_attacks as chapter
from kbnb.report.chapter import Chapter


def _results(van, lun, attack=None, seeds=(0,)):
    def ev(r1, items):  # per-question ROUGE-1 recall: inside [0, 1], mean r1
        d = min(0.05, r1, 1.0 - r1)
        items = [r1 - d, r1 + d]
        return {"metrics": {"rouge1_forget": r1}, "per_item": {"rouge1_forget": items},
                "seconds": 1.0}
    out = {}
    for s in seeds:
        res = {"vanilla": ev(van, [van - 0.05, van + 0.05]),
               "lunar": ev(lun, [lun - 0.05, lun + 0.05])}
        if attack is not None:
            res["reverse"] = ev(attack, [attack - 0.05, attack + 0.05])
        out[s] = res
    return out


def test_an_edit_that_unlearned_meets_the_precondition():
    pre = chapter.unlearned_precondition(_results(1.0, 0.31, seeds=(0, 1, 2)))
    assert pre["met"] is True and pre["drop"] == pytest.approx(0.69)
    assert pre["minimum"] == chapter.UNLEARNED_MIN_DROP == 0.5
    assert pre["sentence"].startswith("Precondition met") and "69%" in pre["sentence"]


def test_a_small_drop_is_not_unlearning():
    """Issue 20: SmolLM2's edit moved forget ROUGE-1 from 0.317 to 0.224 (29%)."""
    pre = chapter.unlearned_precondition(_results(0.317, 0.224))
    assert pre["met"] is False and pre["drop"] == pytest.approx(0.2934, abs=1e-3)
    s = pre["sentence"]
    assert s.startswith("Precondition NOT met") and "29%" in s and "0.317 → 0.224" in s
    assert "not meaningful" in s


def test_the_lunar_runs_failed_precondition_is_carried_over():
    lunar_pre = lunar_chapter.ref_refusal_precondition(
        {0: {"metrics": {"refusal_rate_ref_eval": 0.0}, "generations": {"ref_eval": ["x"]}}})
    pre = chapter.unlearned_precondition(_results(1.0, 0.1), lunar_pre)
    assert pre["met"] is False and pre["lunar_precondition"]["met"] is False
    assert "refused only 0% of its reference prompts D_ref" in pre["sentence"]
    assert chapter.unlearned_precondition(_results(1.0, 0.1), None)["met"] is True


def test_recovery_headlines_are_marked_and_recorded(tmp_path):
    ch = Chapter("lunar_attacks", {"seeds": [0]}, tmp_path)
    res = _results(0.317, 0.224, attack=0.3)
    pre = chapter.unlearned_precondition(res)
    done = chapter.record_and_check(ch, res, precondition=pre)
    assert done == ["reverse"]
    assert ch.headlines["recovery_reverse"]["meaningful"] is False
    marked = {k for k, h in ch.headlines.items() if h["label"].endswith(lunar_chapter.NOT_MEANINGFUL)}
    assert marked == {"forget_rouge1_lunar", "recovery_reverse"}  # not the vanilla model's
    run = {"infos": {0: {"source": "s", "layers": [22], "coeff": 2.0, "rows": "last"}},
           "results": res, "set_args": {}, "index": {}}
    m = chapter.chapter_metrics(run, "", pre)
    assert m["preconditions"]["edit_unlearned"]["met"] is False
    ok = Chapter("lunar_attacks", {"seeds": [0], "x": 1}, tmp_path)
    chapter.record_and_check(ok, _results(1.0, 0.2, attack=0.3),
                             precondition=chapter.unlearned_precondition(_results(1.0, 0.2)))
    assert "meaningful" not in ok.headlines["recovery_reverse"]
