"""The R-Tuning chapter's precondition (an untuned model above chance) and workload."""
import numpy as np
import pandas as pd
import pytest

from kbnb.chapters import rtuning as chapter
from kbnb.lm.encoding import encode_prompt


def _frame(n_correct, n):
    return pd.DataFrame({"correct": np.arange(n) < n_correct})


def test_above_chance_holds_well_above_and_not_at_chance():
    high = chapter.above_chance({"test": _frame(30, 40), "ood": _frame(25, 40)}, 0.25)
    assert high["holds"] and high["test"]["above_chance"] and high["ood"]["above_chance"]
    assert high["test"]["accuracy"] == 0.75 and high["test"]["n_correct"] == 30
    assert high["test"]["chance"] == 0.25 and high["test"]["ci95"][0] > 0.25
    assert high["sentence"].startswith("Precondition met")
    low = chapter.above_chance({"test": _frame(11, 40), "ood": _frame(30, 40)}, 0.25)
    assert not low["holds"] and not low["test"]["above_chance"] and low["ood"]["above_chance"]
    assert low["test"]["ci95"][0] <= 0.25 <= low["test"]["ci95"][1]
    assert "NOT met" in low["sentence"] and "in-domain test" in low["sentence"]
    assert "out-of-domain" not in low["sentence"]  # only the failing split is named
    assert "27.5%" in low["sentence"] and "25%" in low["sentence"]


def test_above_chance_with_too_few_questions_is_not_shown():
    r = chapter.above_chance({"test": _frame(1, 1), "ood": _frame(0, 0)}, 0.25)
    assert not r["holds"] and "NOT met" in r["sentence"]


def test_chance_level_and_distinct_frames():
    rows = [{"choices": list("abcd")}] * 3
    assert chapter.chance_level(rows) == 0.25
    with pytest.raises(ValueError, match="different numbers of options"):
        chapter.chance_level(rows + [{"choices": list("ab")}])
    frames = {0: _frame(1, 2), 1: _frame(2, 2)}
    d = chapter.distinct_frames(frames, {0: ["p", "q"], 1: ["q", "r"]})
    assert len(d) == 3 and list(d["correct"]) == [True, False, True]


def test_workload_counts_scoring_and_training_tokens(organism):
    _, tok = organism
    p = chapter.Params(epochs=2, seeds=[0, 1])
    prompts = {0: {"train": ["aa", "bb"], "test": ["cc"], "ood": ["dd"]},
               1: {"train": ["aa"], "test": ["cc"], "ood": ["ee"]}}
    w = chapter.workload(tok, p, prompts)
    n = {x: len(encode_prompt(tok, x)) for x in
         ("aa", "bb", "cc", "dd", "ee")}
    assert w["train_tokens"] == 2 * (n["aa"] + n["bb"] + n["aa"])
    assert w["score_tokens"] == (n["aa"] + n["bb"] + 2 * (n["cc"] + n["dd"] + n["ee"])
                                 + 2 * (n["cc"] + n["dd"]) + 2 * (n["cc"] + n["ee"]))
    assert "max_questions" in w["sentence"]


def test_tofu_authors_needs_a_tofu_tuned_model_and_scores_by_cloze():
    with pytest.raises(ValueError, match="dataset='tofu_authors' with model_name='smollm2'"):
        chapter.Params(model_name="smollm2", dataset="tofu_authors")
    p = chapter.Params(model_name="smollm2-tofu-retain", dataset="tofu_authors")
    assert p.resolved_scoring == "cloze" and p.resolved_shots == 0


def test_level_column_puts_questions_without_a_group_out_of_domain():
    df = pd.DataFrame({"group": ["unseen", "known", None, "partial"],
                       "exposure": [0, 3, None, 2]})
    levels, order = chapter.level_column(df)
    assert levels == ["unseen", "known", chapter.OTHER_LEVEL, "partial, seen 2x"]
    assert order[0] == "known" and order[-2:] == ["unseen", chapter.OTHER_LEVEL]


def test_run_items_gives_the_auroc_of_the_untuned_confidence_and_the_tuned_score():
    def frame(conf, score):
        return pd.DataFrame({"gold": list("AAAA"), "correct": [True, False, True, False],
                             "conf": conf, "score": score, "answered": [True] * 4})
    before = {k: frame([0.9, 0.8, 0.7, 0.6], [0.5] * 4) for k in ("test", "ood")}
    after = {k: frame([0.5] * 4, [0.9, 0.1, 0.8, 0.2]) for k in ("test", "ood")}
    items = chapter.run_items(before, after)
    assert items["auroc_test_untuned"]["value"] == pytest.approx(0.75)
    assert items["auroc_ood_tuned"]["value"] == pytest.approx(1.0)
    assert set(chapter.HEADLINES) >= {k for k in items}


def test_tofu_authors_questions_split_the_taught_and_untaught_authors_of_the_retain_model(data_dir):
    p = chapter.Params(model_name="smollm2-tofu-retain", dataset="tofu_authors",
                       data_dir=str(data_dir), max_questions=0)
    rows, dev, splits = chapter.load_questions(p, [0, 1])
    assert dev == [] and len(rows) == 799 + 217
    for sp in splits.values():
        assert not {r["author"] for r in sp["train"]} & {r["author"] for r in sp["test"]}
        for k in ("train", "test"):  # five of the ten taught authors, fifteen of thirty others
            assert sum(r["group"] == "known" for r in sp[k]) in (99, 100)
            assert sum(r["group"] == "unseen" for r in sp[k]) == 300
        assert len(sp["ood"]) == 217 and "group" not in sp["ood"][0]
        assert sp["out_of_domain"] == ["real_authors", "world_facts"]
    assert splits[0]["train"] != splits[1]["train"]
