"""TOFU's evaluation sets on the real data (skipped without ../shared/data), and the ROUGE
the TOFU metrics use."""
import pytest

from kbnb.eval.metrics import rouge_recall
from kbnb.eval.tofu_sets import tofu_sets


def test_tofu_sets_read_real_tofu(data_dir):
    """Issue 20: the unlearning chapter on real TOFU reads retain_perturbed (400 rows)."""
    sets = tofu_sets("forget01", data_dir, n_retain=8)
    assert {k: len(v) for k, v in sets.items()} == {
        "forget": 40, "retain": 8, "real_authors": 100, "world_facts": 117, "holdout": 40}
    for k in ("forget", "retain"):
        assert {"paraphrased_answer", "perturbed_answer"} <= set(sets[k][0]), k
    for k in ("real_authors", "world_facts"):
        assert len(sets[k][0]["perturbed_answer"]) >= 2, k
    assert len(tofu_sets("forget01", data_dir)["retain"]) == 400


def test_rouge_l_recall_counts_word_order_rouge_1_does_not():
    """TOFU's ROUGE is ROUGE-L recall (longest common subsequence), LUNAR's ROUGE-1: the
    same words in another order score 1 for ROUGE-1, less for ROUGE-L."""
    pred, gold = ["Paris was born in Ana"], ["Ana was born in Paris"]
    assert rouge_recall(pred, gold, "rouge1") == [1.0]
    assert rouge_recall(pred, gold, "rougeL") == [pytest.approx(3 / 5)]
    assert rouge_recall(["Ana was born in Paris"], gold, "rougeL") == [1.0]
    with pytest.raises(ValueError, match="rouge_type"):
        rouge_recall(pred, gold, "rouge2")
