"""TOFU's evaluation sets on the real data (skipped without ../shared/data)."""
from kbnb.eval.tofu import tofu_sets


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
