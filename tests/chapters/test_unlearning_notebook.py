"""The unlearning chapter runs under papermill with the fast parameters."""
import pytest

from kbnb.eval.verdicts import STATUSES


@pytest.mark.slow
def test_unlearning_notebook(tmp_path, organism, run_notebook):
    doc = run_notebook("unlearning", tmp_path)
    m = doc["metrics"]
    assert doc["params"]["seeds"] == [0, 1]
    methods = doc["params"]["methods"]
    for method in methods:
        for k in ("forget_quality", "model_utility", "forget_truth_ratio", "forget_rouge",
                  "privleak"):
            assert f"{k}_{method}" in m["headline"], (method, k)
            assert m["methods"][method][k] is not None
    assert m["retain"]["forget_quality"] == 1.0
    assert m["untouched"]["forget_quality"] < 1.0
    assert set(m["targets"]) >= {"retain_fq_self_is_1", "untouched_fq_below_001"}
    assert all(c["status"] in STATUSES for c in m["checks"].values())
    # every check says its smallest effect that matters (None when it declares none)
    assert all("smallest_effect" in c and "smallest_effect_source" in c for c in m["checks"].values())
    # issue 23: each method's setting was chosen on validation rows, from its grid
    for method in methods:
        t = m["tuning"][method]
        assert len(t["points"]) == (1 if method == "lunar" else 2)  # tune_lrs: two rates
        assert m["settings"][method] == t["points"][t["chosen"]]["setting"]
    assert m["validation"]["n"]["forget"] == m["n_sets"]["forget"]
    assert 0 < m["validation"]["untouched"]["utility"] <= 1
