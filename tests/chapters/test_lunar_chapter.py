"""The LUNAR chapter's precondition (the vanilla model refuses D_ref) and its headlines
with one seed, on hand-made results (no model)."""
import json
from types import SimpleNamespace

import pytest

from kbnb.chapters import lunar as chapter
from kbnb.chapters import lunar_present as present
from kbnb.report.chapter import Chapter
from kbnb.unlearning import lunar_store


def _vanilla(rates, n=10):
    return {s: {"metrics": {"refusal_rate_ref_eval": r},
                "generations": {"ref_eval": ["x"] * n}} for s, r in rates.items()}


def test_precondition_met_when_the_model_refuses_d_ref():
    pre = chapter.ref_refusal_precondition(_vanilla({0: 1.0, 1: 0.9, 2: 0.8}))
    assert pre["met"] is True and pre["rate"] == pytest.approx(0.9)
    assert pre["minimum"] == chapter.REF_REFUSAL_MIN == 0.5
    assert pre["sentence"].startswith("Precondition met") and "90%" in pre["sentence"]


def test_precondition_not_met_says_the_rate_and_what_to_do():
    pre = chapter.ref_refusal_precondition(_vanilla({0: 0.0}))
    assert pre["met"] is False and pre["rate"] == 0.0 and pre["n_prompts"] == {0: 10}
    s = pre["sentence"]
    assert s.startswith("Precondition NOT met") and "only 0%" in s and "50%" in s
    assert "not meaningful" in s and "reference set" in s and "chat model" in s \
        and "system prompt" in s
    assert chapter.ref_refusal_precondition(_vanilla({0: 0.4}), minimum=0.3)["met"] is True


def _results(one_seed_layer=22):
    rep = [{"mse_closed_form": 0.1, "mse_sgd": 0.2}]
    runs = {0: {"main_layers": [one_seed_layer], "edit": SimpleNamespace(report=rep)}}

    def ev(r1f, r1r, refusal):
        return {0: {"metrics": {"rouge1_forget": r1f, "rouge1_retain_eval": r1r, "ds": 30.0,
                                "rq_forget": 0.3, "refusal_rate_forget": refusal},
                    "per_item": {"rouge1_forget": [r1f - 0.1, r1f, r1f + 0.1],
                                 "rouge1_retain_eval": [r1r - 0.1, r1r + 0.1],
                                 "refusal_forget": [0.0, refusal, 2 * refusal]}}}
    return runs, ev(0.9, 0.8, 0.0), ev(0.2, 0.7, 0.3), ev(0.2, 0.7, 0.3)


def test_one_seed_gives_the_selected_layer_no_made_up_interval(tmp_path):
    """Issue 20: with one seed the selected layer was a "t interval over questions, n=2"
    of [layer, layer]; it is a constant of the run, so it is not measurable."""
    ch = Chapter("lunar", {"seeds": [0]}, tmp_path)
    runs, van, lun, tk = _results()
    chapter.record_and_check(ch, runs, van, lun, tk)
    h = ch.headlines["selected_layer"]
    assert h["mean"] == 22 and h["ci95"] is None and h["n"] == 1
    assert "questions" not in h["ci_method"]
    assert "selected_layer" in ch.not_measurable()
    assert ch.headlines["forget_rouge1"]["n"] == 3  # real items keep their interval
    assert "meaningful" not in ch.headlines["forget_rouge1"]


def test_headlines_are_marked_when_the_precondition_fails(tmp_path):
    ch = Chapter("lunar", {"seeds": [0]}, tmp_path)
    runs, van, lun, tk = _results()
    pre = chapter.ref_refusal_precondition(_vanilla({0: 0.0}))
    chapter.record_and_check(ch, runs, van, lun, tk, pre)
    assert all(h["meaningful"] is False for h in ch.headlines.values())
    assert all(h["label"].endswith(chapter.NOT_MEANINGFUL) for h in ch.headlines.values())
    assert ch.headlines["forget_rouge1"]["not_meaningful"] == pre["sentence"]
    path = ch.save({"preconditions": {pre["name"]: pre}})
    saved = json.loads(path.read_text())["metrics"]
    assert saved["preconditions"]["ref_refusal"]["met"] is False
    assert saved["headline"]["forget_rouge1"]["meaningful"] is False
    assert chapter.mark_not_meaningful(ch, {"met": True}) == []


def test_the_edits_index_keeps_the_precondition(tmp_path, monkeypatch):
    saved = {}
    monkeypatch.setattr(lunar_store, "save_lunar",
                        lambda path, model, e, extra=None: saved.setdefault(str(path), extra))
    pre = chapter.ref_refusal_precondition(_vanilla({0: 0.1}))
    path = lunar_store.save_edits(tmp_path, None, {"lunar": {0: object()}}, sets={"a": 1},
                              precondition=pre)
    index = json.loads(path.read_text())
    assert index["precondition"]["met"] is False and index["precondition"]["rate"] == 0.1
    assert all(e["precondition"]["met"] is False for e in saved.values())


def test_a_given_layer_is_reported_as_given_not_selected(tmp_path):
    """papermill ... -p layer 21: the layer was not selected, so it has no selection
    interval and is not compared with itself; the selection table is skipped with a
    sentence saying so."""
    runs, van, lun, tk = _results(21)
    runs[0]["layer_given"] = True
    p = chapter.Params(layer=21, seeds=[0])
    assert chapter.evaluate_other(None, None, {}, runs, lun, [], p) is None
    ch = Chapter("lunar", {"seeds": [0]}, tmp_path)
    chapter.record_and_check(ch, runs, van, lun, tk, None, None)
    assert "selected_layer" not in ch.headlines and not ch.has("selected_layer")
    assert not [k for k in list(ch.headlines) + list(ch.verdicts) if k.endswith("_other")
                or k == "selection_ds"]
    assert present.selection_table(runs, lun, None, p) is None
    assert present.selection_sentence(ch, p, runs, None) == (
        "The layer was given as a parameter, so neither selection was used.")
    assert present.layer_how(ch, p, runs) == "was given as a parameter"
    assert "(given)" in present.layers_summary({**runs[0], "topk_layers": [21, 3]}, 0, True)
    chosen = Chapter("lunar", {"seeds": [0]}, tmp_path)  # selected: the headline is there
    chapter.record_and_check(chosen, *_results(21))
    assert chosen.headlines["selected_layer"]["mean"] == 21
    q = chapter.Params(seeds=[0], selection="steering")
    assert present.layer_how(chosen, q, _results(21)[0]).startswith(
        "was chosen by refusal-likeness under steering (official) for every seed (selected "
        "layer over seeds: 21")
