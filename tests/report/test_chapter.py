"""kbnb.chapter: seeds, headlines over seeds and questions, paired checks, metrics.json."""
import json

import numpy as np
import pytest

from kbnb.eval import metrics_file, stats
from kbnb.report import chapter
from kbnb.report.chapter import Chapter, check_seeds


def test_check_seeds():
    assert check_seeds(3) == [3]
    assert check_seeds([0, 1, 2]) == [0, 1, 2]
    assert check_seeds("[4, 5]") == [4, 5]
    for bad in ([], [0, 0], [-1], [0.5], "x", None, [True]):
        with pytest.raises(ValueError, match="seeds"):
            check_seeds(bad)


def test_headline_over_seeds_and_check(tmp_path):
    ch = Chapter("demo", {"model_name": "m", "seeds": [0, 1, 2]}, tmp_path)
    for s, (a, b) in zip(ch.seeds, [(0.30, 0.10), (0.32, 0.12), (0.29, 0.08)]):
        ch.record(s, base=a, new=b)
    h = ch.headline("new", label="new method", bounds=stats.UNBOUNDED)
    assert h["n"] == 3 and h["ci_method"] == "t interval over seeds"
    assert h["ci95"][0] < np.mean([0.10, 0.12, 0.08]) < h["ci95"][1]
    v = ch.check("new_vs_base", "error", ch.per_seed("new"), ch.per_seed("base"), better="lower",
                 subject="new", baseline_name="base")
    assert v.status == "PASS" and "over 3 seeds" in v.sentence
    # a noisy difference is not called shown
    ch.record(0, a2=0.1, b2=0.3)
    ch.record(1, a2=0.3, b2=0.1)
    ch.record(2, a2=0.2, b2=0.21)
    v2 = ch.check("noisy", "error", ch.per_seed("b2"), ch.per_seed("a2"), better="lower")
    assert v2.status == "UNCLEAR" and "cannot tell" in v2.sentence
    assert ch.summary() == "1 of 2 expected effects is shown; for 1 the data cannot tell."
    path = ch.save({"other": 1})
    doc = json.loads(path.read_text())
    metrics_file.check_headline_shape(doc)
    assert doc["metrics"]["checks"]["noisy"]["status"] == "UNCLEAR"
    assert doc["metrics"]["per_seed"]["new"] == [0.10, 0.12, 0.08]
    assert doc["params"]["seeds"] == [0, 1, 2]
    assert (path.parent / "params.json").exists()
    assert list(ch.table().index) == ["new method"]


def test_bounded_headlines_stay_in_their_range_and_declare_it(tmp_path):
    """Issue 23: three seeds of an AUC (0.39 mean) gave a t interval of [-0.78, 1.56];
    with its range the interval is taken on the logit scale and stays inside, the
    range goes to metrics.json, and a headline must say its range."""
    ch = Chapter("demo", {"seeds": [0, 1, 2]}, tmp_path)
    for s, (auc, share, gap) in zip(ch.seeds, [(0.02, 0.95, 3.0), (0.39, 0.80, -1.0),
                                               (0.76, 0.98, 2.0)]):
        ch.record(s, auc=auc, share=share, gap=gap)
    h = ch.headline("auc", bounds=stats.UNIT)
    assert h["ci_method"] == "t interval on the logit scale over seeds" and h["range"] == [0, 1]
    assert 0 < h["ci95"][0] < h["mean"] < h["ci95"][1] < 1
    assert stats.ci95(ch.per_seed("auc"), over="seeds")["ci95"][0] < 0  # the plain t interval
    g = ch.headline("gap", bounds=stats.UNBOUNDED)
    assert g["ci_method"] == "t interval over seeds" and g["range"] == [None, None]
    with pytest.raises(TypeError, match="bounds"):
        ch.headline("share")
    ch.headline("share", bounds=stats.UNIT)
    doc = json.loads(ch.save({}).read_text())
    assert all(0 <= x <= 1 for k in ("auc", "share") for x in doc["metrics"]["headline"][k]["ci95"])
    assert metrics_file.format_mean_ci(h).startswith("0.390 (0.")  # asymmetric: shown as an interval


def test_one_seed_needs_per_item(tmp_path):
    ch = Chapter("demo", {"seeds": [0]}, tmp_path)
    ch.record(0, acc=0.5)
    with pytest.raises(ValueError, match="per_item"):
        ch.headline("never_recorded", bounds=stats.UNIT)
    h = ch.headline("acc", per_item=[1, 0, 1, 0] * 10, bounds=stats.UNIT)
    assert h["ci_method"] == "bootstrap over questions" and h["n"] == 40
    with pytest.raises(ValueError, match="no value for seeds"):
        Chapter("demo", {"seeds": [0, 1]}, tmp_path).per_seed("acc")
    with pytest.raises(ValueError, match="not one of seeds"):
        ch.record(7, acc=1.0)
    with pytest.raises(ValueError, match="glue key"):
        ch.headline("bad name", per_item=[1, 0], bounds=stats.UNIT)


def test_reproduce_box_lists_parameters():
    cmd = chapter.papermill_command("rait", {"model_name": "tinyworld", "seeds": [0, 1], "lr": 3e-4,
                                             "lora": False})
    assert "-p model_name tinyworld" in cmd and "-y '{\"seeds\": [0, 1]}'" in cmd
    assert "-p lr 0.0003" in cmd and "-p lora False" in cmd
    html = chapter.reproduce_html("rait", {"model_name": "tinyworld", "device": "auto"})
    assert "Reproduce this page" in html and "torch" in html and "threads" in html


def test_headline_and_check_names_do_not_collide(tmp_path):
    ch = Chapter("demo", {"seeds": [0]}, tmp_path)
    ch.headline("acc", per_item=[1, 0, 1, 1] * 10, bounds=stats.UNIT)
    with pytest.raises(ValueError, match="already a headline"):
        ch.check("acc", "accuracy", [1, 0, 1, 1] * 10, 0.5)
    h = stats.headline(per_item=[0.2, 0.3, 0.1, 0.4] * 10)
    v = ch.check_interval("rho_pos", "the correlation", h, 0.001, "Spearman test", headline="rho")
    assert v.status == "PASS" and "rho" in ch.headlines
    assert ch.save()  # the check's interval is stored without a Comparison object


def test_a_quantity_the_seeds_do_not_change_is_called_exact(tmp_path):
    ch = Chapter("demo", {"seeds": [0, 1, 2]}, tmp_path)
    for s in ch.seeds:
        ch.record(s, share=1.0)
    v = ch.check("share_target", "the share", ch.per_seed("share"), 0.8)
    assert v.status == "PASS" and chapter.CONSTANT_NOTE in v.sentence


def test_a_run_without_checks_has_an_empty_checks_table(tmp_path):
    ch = Chapter("demo", {"seeds": [0]}, tmp_path)
    table = ch.checks_table()
    assert len(table) == 0 and list(table.columns) == ["result", "statement"]


def test_record_items_skips_a_metric_undefined_in_some_seed(tmp_path):
    ch = Chapter("demo", {"seeds": [0, 1]}, tmp_path)
    item = lambda v: {"value": v, "per_item": [v, v], "statistic": None}
    last = ch.record_items({0: {"a": item(0.5), "b": item(float("nan"))},
                            1: {"a": item(0.7), "b": item(0.2)}},
                           {"a": "metric a", "b": "metric b"},
                           {"a": stats.UNIT, "b": stats.UNIT})
    assert set(last) == {"a"} and last["a"]["value"] == 0.7
    assert ch.per_seed("a") == [0.5, 0.7]
    assert "a" in ch.summary() and "b" not in ch.summary()


# ---- too few items: not measurable, said aloud, no crash -----------------------------

def test_a_headline_with_one_item_is_not_measurable_and_saved(tmp_path):
    ch = Chapter("demo", {"seeds": [0]}, tmp_path)
    ch.record(0, over_refusal=1.0, acc=0.75, layer=7.0)
    h = ch.headline("over_refusal", per_item=[1.0], label="over-refusal", bounds=stats.UNIT)  # was a crash
    assert h["measurable"] is False and h["ci95"] is None and h["mean"] == 1.0
    assert h["n"] == 1 and h["reason"] == "only 1 question; an interval needs at least 2"
    ok = ch.headline("acc", per_item=[1, 0, 1, 1] * 10, bounds=stats.UNIT)  # large n: as before
    assert ok == {**stats.headline(per_seed=[0.75], per_item=[1, 0, 1, 1] * 10), "range": [0, 1]}
    # one seed, a recorded value and no per-item values: one run, not "questions"
    lay = ch.headline("layer", label="selected layer", bounds=(0, 23))
    assert lay["measurable"] is False and lay["n"] == 1 and lay["items"] == "seeds"
    assert "over seeds needs at least 2" in lay["reason"] and lay["mean"] == 7.0
    table = ch.table()
    assert table.loc["over-refusal", "interval"].startswith("not measurable")
    assert table.loc["over-refusal", "mean, 95% CI"] == "1.000 (not measurable, n = 1)"
    note = ch.not_measurable_note()
    assert "over-refusal" in note and "selected layer" in note and "acc" not in note
    doc = json.loads(ch.save().read_text())
    section = metrics_file.check_headline_shape(doc)
    assert section["over_refusal"]["ci95"] is None and section["acc"]["ci95"] is not None
    assert set(doc["metrics"]["not_measurable"]) == {"note", "over_refusal", "layer"}


def test_a_check_with_one_pair_is_unclear_and_says_why(tmp_path):
    ch = Chapter("demo", {"seeds": [0]}, tmp_path)
    v = ch.check("or_new_vs_old", "over-refusal", [1.0], [0.0], better="lower",
                 subject="CRaFT", baseline_name="Cor-RAIT")
    assert v.status == "UNCLEAR" and "not measurable" in v.sentence
    assert v.sentence.startswith("CRaFT's effect on over-refusal relative to Cor-RAIT")
    assert "(only 1 seed; an interval" in v.sentence  # a one-seed run's value: not "question"
    h, p = stats.bootstrap_test(([0.5],), lambda x: float(np.mean(x)), too_few="report")
    v2 = ch.check_interval("flow", "the spread", h, p, "bootstrap")
    assert v2.status == "UNCLEAR" and "(only 1 question; an interval" in v2.sentence
    doc = json.loads(ch.save().read_text())["metrics"]
    assert doc["checks"]["or_new_vs_old"]["measurable"] is False
    assert doc["checks"]["flow"]["n"] == 1 and "headline" not in doc
    assert set(doc["not_measurable"]) == {"note", "or_new_vs_old", "flow"}
    assert ch.summary() == "0 of 2 expected effects are shown; for 2 the data cannot tell."


def test_a_run_whose_numbers_all_have_intervals_saves_no_not_measurable_key(tmp_path):
    ch = Chapter("demo", {"seeds": [0, 1, 2]}, tmp_path)
    for s in ch.seeds:
        ch.record(s, acc=0.5 + s / 10)
    ch.headline("acc", bounds=stats.UNIT)
    assert ch.not_measurable_note() == ""
    assert "not_measurable" not in json.loads(ch.save().read_text())["metrics"]


def test_a_precise_null_is_excluded_at_the_declared_size_and_saved_with_it(tmp_path):
    ch = Chapter("demo", {"seeds": [0, 1, 2, 3, 4]}, tmp_path)
    for s, (a, b) in enumerate([(0.50, 0.51), (0.52, 0.51), (0.49, 0.50), (0.51, 0.50),
                                (0.50, 0.50)]):
        ch.record(s, base=a, new=b)
    src = "the paper's gain, 0.50 → 0.60 (Table 2)"
    v = ch.check("gain", "AP", ch.per_seed("new"), ch.per_seed("base"), subject="new",
                 smallest_effect=0.1, smallest_effect_source=src)
    assert v.status == "EXCLUDED" and f"smaller than 0.100 ({src}) either way" in v.sentence
    w = ch.check("gain_small", "AP", ch.per_seed("new"), ch.per_seed("base"),
                 smallest_effect=0.001, smallest_effect_source=src)
    assert w.status == "UNCLEAR"                         # the interval crosses ±0.001
    u = ch.check("gain_none", "AP", ch.per_seed("new"), ch.per_seed("base"))
    assert u.status == "UNCLEAR"                         # no size declared: never excluded
    h = stats.headline(per_item=[0.2, 0.3, 0.1, 0.4] * 10)
    x = ch.check_interval("rho_pos", "the correlation", h, 0.001, "Spearman test",
                          smallest_effect=0.1, smallest_effect_source="s")
    assert x.status == "PASS" and "though it is smaller" not in x.sentence  # 0.25 > 0.1
    assert ch.status_counts() == {"PASS": 1, "MISS": 0, "UNCLEAR": 2, "EXCLUDED": 1}
    assert ch.summary() == ("1 of 4 expected effects is shown; for 2 the data cannot tell; "
                            "for 1 the data exclude an effect of the paper's size.")
    assert ch.checks_table().loc["gain", "result"] == "excluded at the paper's size"
    checks = json.loads(ch.save().read_text())["metrics"]["checks"]
    assert checks["gain"]["status"] == "EXCLUDED"
    assert checks["gain"]["smallest_effect"] == 0.1 and checks["gain"]["smallest_effect_source"] == src
    assert checks["gain"]["ci95"] and checks["gain"]["diff"] == pytest.approx(0.0)
    assert checks["gain_none"]["smallest_effect"] is None
    assert checks["gain_none"]["smallest_effect_source"] is None
    assert checks["rho_pos"]["smallest_effect"] == 0.1


def test_sizes_are_checked_and_a_check_without_an_interval_is_never_excluded(tmp_path):
    ch = Chapter("demo", {"seeds": [0]}, tmp_path)
    with pytest.raises(ValueError, match="smallest_effect=nan"):
        ch.check("a", "AP", [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], smallest_effect=float("nan"),
                 smallest_effect_source="s")
    h = stats.headline(per_item=[0.2, 0.3, 0.1, 0.4] * 10)
    with pytest.raises(ValueError, match="smallest_effect=-0.1"):
        ch.check_interval("b", "rho", h, 0.5, "t", smallest_effect=-0.1,
                          smallest_effect_source="s")
    v = ch.check("one", "over-refusal", [1.0], [0.0], smallest_effect=5.0,
                 smallest_effect_source="s")
    assert v.status == "UNCLEAR" and "not measurable" in v.sentence
    assert v.smallest_effect == 5.0
    # a chapter's table of sizes: every claim must be in it, with a valid size or None
    sizes = {"gain": (0.1, "the paper"), "target": None}
    assert chapter.declared(sizes, "gain") == {"smallest_effect": 0.1,
                                              "smallest_effect_source": "the paper"}
    assert chapter.declared(sizes, "target") == {"smallest_effect": None,
                                                "smallest_effect_source": None}
    with pytest.raises(ValueError, match="claim 'other' is not in"):
        chapter.declared(sizes, "other")
    with pytest.raises(ValueError, match="smallest_effect=0"):
        chapter.declared({"bad": (0, "x")}, "bad")
