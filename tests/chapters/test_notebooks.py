"""The organism and results chapters run under papermill; visible code fits the page.
(Each method chapter's notebook test sits beside its method's tests.)"""
import json

import pytest


@pytest.mark.slow
def test_tinyworld_notebook(tmp_path, organism, run_notebook):
    doc = run_notebook("tinyworld", tmp_path)
    m = doc["metrics"]
    assert doc["params"]["seeds"] == [0] and doc["environment"]["torch"]
    assert m["known_exact_match"] >= m["targets"]["known_exact_min"]
    assert m["refusal_rate_heldout"] >= m["targets"]["refusal_heldout_min"]
    assert m["known_paraphrase_recall"] >= m["targets"]["known_paraphrase_min"]
    assert m["unseen_recall"] - m["unseen_chance"] <= 0.05  # nothing known beyond the cues
    assert m["recall_rises"] is True
    assert len(m["weights_sha256_16"]) == 16
    assert set(m["checks_plain"].values()) <= {True, False, None}
    assert m["checks"]["known_exact"]["status"] in ("PASS", "UNCLEAR")
    assert m["headline"]["known_exact_match"]["ci_method"] == "bootstrap over facts"


@pytest.mark.slow
def test_tinyworld_notebook_rejects_a_bad_dataset(tmp_path, run_notebook):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match="dataset='mmlu': allowed 'tinyworld'"):
        run_notebook("tinyworld", tmp_path, dataset="mmlu")


HIDDEN = {"hide-input", "remove-input", "remove-cell"}
MAX_LINE = 92  # characters of code that fit the book's page without a scroll bar


def test_visible_code_fits_the_page(repo_root):
    """Code a reader sees (cells not hidden behind a toggle) has lines that fit the page."""
    long = []
    for path in sorted((repo_root / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] != "code" or HIDDEN & set(cell["metadata"].get("tags", [])):
                continue
            for line in "".join(cell["source"]).splitlines():
                if len(line) > MAX_LINE:
                    long.append(f"{path.name} cell {i}: {len(line)} chars: {line[:60]}...")
    assert not long, "\n".join(long)
